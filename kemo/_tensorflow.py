"""TensorFlow started without its start-up chatter on the terminal.

TensorFlow's C++ runtime writes notices to file descriptor 2 while it loads and first looks for
devices ("Could not find cuda drivers", "failed call to cuInit: ... (303)" on a machine without
a GPU, oneDNN notices), before its own logging is set up and whatever
``TF_CPP_MIN_LOG_LEVEL`` says. They would bury kemo's messages, and a "failed call" reads like
a fault when nothing is wrong: TensorFlow runs on the CPU. :func:`import_quietly` captures them
while TensorFlow starts and shows them only if starting fails; it also sets
``TF_CPP_MIN_LOG_LEVEL=2`` (unless set), so later C++ info and warning lines stay off (errors
still show). Every kemo module that loads Keras or mtcnn calls it first; the command line calls
it up front. Set ``KEMO_DEBUG=1`` to see everything.
"""

import os
import sys
import tempfile


def import_quietly():
    """Import TensorFlow (when Keras will run on it) with its start-up log lines captured.

    Does nothing when TensorFlow is already imported, when ``KERAS_BACKEND`` names another
    backend, or when ``KEMO_DEBUG`` is set. If the import or the device lookup fails, the
    captured lines are written to standard error before the exception propagates.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if ("tensorflow" in sys.modules or os.environ.get("KEMO_DEBUG")
            or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow"):
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 to redirect (embedded interpreters)
        return
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # where the cuInit error is printed
        except BaseException as exc:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode("utf-8", "replace"))
            # Without TensorFlow, Keras runs on another backend or says itself what is missing.
            if not isinstance(exc, ModuleNotFoundError) or exc.name != "tensorflow":
                raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
