"""What a recogniser reports: a video's analysis, each face's result, each failed video.

:class:`VideoAnalysis` is what :meth:`kemo.recognizer.VideoEmotionRecognizer.analyze` returns
for a video, with a :class:`TrackResult` per face; :class:`VideoFailure` is a video a batch
skipped (``errors="skip"``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from kemo.errors import InputError

__all__ = ["TrackResult", "VideoAnalysis", "VideoFailure"]


@dataclasses.dataclass(frozen=True)
class VideoFailure:
    """A video a batch could not process (with ``errors="skip"``).

    Attributes:
        index: position of the video in the batch.
        source: its path, or ``None`` for an array.
        error: the error message, on one line.
        kind: the exception's class name (e.g. ``"VideoReadError"``).
    """

    index: int
    source: str | None
    error: str
    kind: str


@dataclasses.dataclass(frozen=True)
class TrackResult:
    """The emotion of one tracked face of a video.

    Attributes:
        track_id: the tracker's id of the face.
        frame_indices: int64 (n,): the frames where the face was found.
        boxes: float32 (n, 4): ``[x, y, w, h]`` of the face in each of those frames.
        frame_probabilities: float32 (n, 7): the pretrained face model's probabilities of each
            frame (classes :attr:`VideoAnalysis.timeline_class_names`).
        probabilities: float (K,): the recogniser's probabilities for this face over the video.
        label: the most probable class name.
        segments: the :class:`kemo.timeline.Segment` s of the face's smoothed timeline (start
            and end in seconds, emotion, mean probability), in time order.
    """

    track_id: int
    frame_indices: np.ndarray
    boxes: np.ndarray
    frame_probabilities: np.ndarray
    probabilities: np.ndarray
    label: str
    segments: tuple = ()


@dataclasses.dataclass(frozen=True)
class VideoAnalysis:
    """What :meth:`VideoEmotionRecognizer.analyze` found in one video.

    The video-level result is the main face's (the face tracked in the most frames); ``tracks``
    holds every face analysed (only the main one unless all were asked for).

    Attributes:
        source: the video's path (``None`` for a frame array).
        class_names: names of the columns of ``probabilities``.
        probabilities: float (K,): the video's class probabilities.
        label: the most probable class name.
        frames_read: frames examined.
        faces_found: faces found in all frames (all tracks analysed).
        tracks: one :class:`TrackResult` per face analysed, the main face first.
        timeline_class_names: names of the columns of the frame probabilities (the pretrained
            face model's classes).
        fps: the video's frame rate, which turns frame indices into seconds (30 when the
            video reports none, e.g. a frame array).
    """

    source: str | None
    class_names: tuple
    probabilities: np.ndarray
    label: str
    frames_read: int
    faces_found: int
    tracks: tuple
    timeline_class_names: tuple
    fps: float = 30.0

    @property
    def main(self):
        """TrackResult: the main face."""
        return self.tracks[0]

    @property
    def frame_indices(self):
        """int64 (n,): frames of the main face (the timeline's x axis)."""
        return self.main.frame_indices

    @property
    def frame_probabilities(self):
        """float32 (n, 7): per-frame probabilities of the main face (the timeline)."""
        return self.main.frame_probabilities

    @property
    def boxes(self):
        """float32 (n, 4): the main face's box in each of its frames."""
        return self.main.boxes

    def to_dict(self, timeline=False):
        """Plain Python values (JSON-friendly).

        Args:
            timeline: add each track's ``timeline``: one entry per frame with the face, its
                ``frame`` index, ``time`` in seconds, ``box`` and ``probabilities`` (what
                ``kemo predict --timeline`` adds to the JSON).

        Returns:
            dict with ``path``, ``label``, ``probabilities`` ({class: p}), ``frames_read``,
            ``faces_found``, ``fps`` (frame indices over ``fps`` are seconds) and ``tracks``:
            a list of the same per face, the main face first and marked ``"main": true``,
            with its ``track`` id, ``frames``, ``start`` and ``end`` (seconds from the first
            frame with the face to one frame after the last) and ``segments`` (``start`` and
            ``end`` seconds, ``label``, mean ``probability``, ``first_frame`` and
            ``last_frame``).
        """

        def probs(values, names):
            return {name: round(float(p), 6) for name, p in zip(names, values, strict=True)}

        fps = float(self.fps)
        tracks = []
        for i, track in enumerate(self.tracks):
            frames = np.asarray(track.frame_indices)
            item = {"track": track.track_id, "main": i == 0, "label": track.label,
                    "frames": len(track.boxes),
                    "start": round(float(frames.min()) / fps, 6) if len(frames) else None,
                    "end": round((float(frames.max()) + 1) / fps, 6) if len(frames) else None,
                    "probabilities": probs(track.probabilities, self.class_names),
                    "segments": [segment.to_dict() for segment in track.segments]}
            if timeline:
                item["timeline"] = [
                    {"frame": int(f), "time": round(int(f) / fps, 6),
                     "box": [round(float(v), 2) for v in box],
                     "probabilities": probs(p, self.timeline_class_names)}
                    for f, box, p in zip(track.frame_indices, track.boxes,
                                         track.frame_probabilities, strict=True)
                ]
            tracks.append(item)
        return {"path": self.source, "label": self.label,
                "probabilities": probs(self.probabilities, self.class_names),
                "frames_read": self.frames_read, "faces_found": self.faces_found,
                "fps": round(fps, 6), "tracks": tracks}

    def annotate(self, path, fps=None):
        """Write a copy of the video with each face's box and emotion drawn on it.

        Every frame of the source is written. Each face gets a box in its track's colour and a
        label ``#<track> <emotion> <probability>`` of that frame, on a filled background; the
        top-left corner holds the whole video's label, ``video: <emotion> <probability>``.
        Text and lines scale with the frame height (text 1/32 of it, 12 pixels at least), and
        labels that would cover each other are moved apart. The file is written under a
        temporary name and renamed, so a half-written file never has the final name; its
        folder is created.

        Args:
            path: output file (``.mp4``, ``.avi``, ``.mov`` or ``.mkv``; see
                :func:`kemo.video.write_video`).
            fps: frame rate; default: the source's (30 when it reports none).

        Returns:
            pathlib.Path: the written file.

        Raises:
            InputError: the analysis came from a frame array, or ``path`` has another ending.
            kemo.errors.VideoReadError, kemo.errors.VideoWriteError: reading or writing failed.
        """
        from kemo._drawing import draw_frame, style_for
        from kemo._files import atomic_path
        from kemo.errors import VideoWriteError
        from kemo.video import WRITE_SUFFIXES, Video, write_video

        if self.source is None:
            raise InputError("annotate needs the video file; this analysis came from an array")
        path = Path(path)
        if path.suffix.lower() not in WRITE_SUFFIXES:
            raise InputError(f"{path}: cannot write a {path.suffix or 'suffix-less'} video; "
                             f"name a {', '.join(WRITE_SUFFIXES)} file")
        marks = {}
        for track in self.tracks:
            for frame, box, p in zip(track.frame_indices, track.boxes,
                                     track.frame_probabilities, strict=True):
                name = self.timeline_class_names[int(np.argmax(p))]
                text = f"#{track.track_id} {name} {p.max():.2f}"
                marks.setdefault(int(frame), []).append((track.track_id, box, text))
        headline = f"video: {self.label} {float(np.max(self.probabilities)):.2f}"

        def frames(video, style):
            for index, frame in video.frames():
                image = np.ascontiguousarray(frame)
                draw_frame(image, marks.get(index, ()), headline, style)
                yield image

        with Video(self.source) as video, atomic_path(path, path.suffix) as tmp:
            try:
                write_video(tmp, frames(video, style_for(video.size[1])),
                            fps=fps or video.fps or 30.0)
            except VideoWriteError as exc:  # name the user's file, not the temporary one
                raise VideoWriteError(str(exc).replace(str(tmp), str(path))) from exc
        return path
