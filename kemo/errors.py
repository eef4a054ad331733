"""Exceptions raised by kemo.

Every kemo error derives from :class:`KemoError`, so ``except kemo.KemoError`` catches them all;
each also derives from the matching built-in exception (``FileNotFoundError``, ``ValueError``...)
so code written against the built-ins keeps working. Messages name the input at fault and what
to do.
"""


class KemoError(Exception):
    """Base class of every error kemo raises on purpose."""


class DataNotFoundError(KemoError, FileNotFoundError):
    """A data set, video or file that was asked for is not where it was looked for."""


class VideoReadError(KemoError, OSError):
    """A video cannot be opened or decoded (missing, empty, truncated or not a video)."""


class NoFaceError(KemoError):
    """No face was found where one was required (a whole video, or an image)."""


class WeightsError(KemoError):
    """A weights file is missing, fails its sha256 check, or does not fit the architecture."""


class InputError(KemoError, ValueError):
    """An argument has the wrong shape, dtype or values (NaN, inf, unknown label...)."""


class BackendError(KemoError, RuntimeError):
    """A component needs another Keras backend than the active one (mtcnn needs tensorflow)."""


class VideoWriteError(KemoError, OSError):
    """A video file cannot be written (missing folder, or a codec OpenCV lacks)."""


def one_line(error, source=None):
    """The message of ``error`` on one line, led by ``source`` unless it already names it.

    Args:
        error: an exception or a message.
        source: what failed (a file path...), or None.

    Returns:
        str: e.g. ``"clip.avi: no face found in any of the 15 frames read"``, the path once.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    if source is None or str(source) in text:
        return text
    return f"{source}: {text}"
