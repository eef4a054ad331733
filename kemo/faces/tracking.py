"""Following faces through a video: full detection every k-th frame, cheap carrying between.

A full MTCNN detection runs its three networks over an image pyramid. In a video the face moves
little from one frame to the next, so :class:`FaceTracker` runs the full detector only on every
``detect_every``-th frame (and whenever a tracked face is lost) and carries each face's box and
landmarks to the frames in between, in one of two ways:

* ``"flow"`` (default): move the five landmarks with pyramidal Lucas-Kanade optical flow
  (``cv2.calcOpticalFlowPyrLK``) inside a window around the face, checked forward and backward;
  a similarity transform fitted to the landmarks that track moves the box too. The face is lost
  (and a full detection runs) when fewer than three landmarks track.
* ``"hold"``: re-use the last landmarks unchanged: cheapest, but blind to motion and to loss.

Flow notices a lost face only when its landmarks stop tracking (a cut, occlusion, fast motion,
a flat background); a face that vanishes in front of a still, textured background is carried
until the next scheduled detection, at most k - 1 frames.

A third way was measured and dropped: re-running only MTCNN's last network (ONet) on the previous
box gave fresh landmarks but 1.5x the eye jitter of per-frame detection and more eye-position
error than either mode above on the CK+ clips, at a higher cost than optical flow.

Faces keep a ``track_id`` across frames: on each full detection, new faces are matched to the
tracked ones by box overlap (IoU).
"""

from __future__ import annotations

import numpy as np

from kemo.errors import InputError
from kemo.faces.alignment import DEFAULT_EYE_DIST, DEFAULT_SIZE, eye_centres
from kemo.faces.detection import KEYPOINT_NAMES, FaceDetector, as_uint8_image, box_iou

SELECT_MODES = ("largest", "most_confident", "all")
# track() reads ahead at most this many bytes of frames to batch the scheduled detections.
_READ_AHEAD_BYTES = 128 * 2**20
CARRY_MODES = ("flow", "hold")


def select_faces(records, select="largest"):
    """Pick the faces to keep from one frame's detection records.

    Args:
        records: detection records (see :mod:`kemo.faces.detection`).
        select: ``"largest"`` (box area), ``"most_confident"``, or ``"all"``.

    Returns:
        list[dict]: one record (or none) for the single-face modes, all records for ``"all"``.

    Raises:
        InputError: for an unknown ``select``.
    """
    if select not in SELECT_MODES:
        raise InputError(f"select must be one of {SELECT_MODES}, got {select!r}")
    if select == "all" or not records:
        return list(records)
    if select == "largest":
        return [max(records, key=lambda r: r["box"][2] * r["box"][3])]
    return [max(records, key=lambda r: r["confidence"])]


def eye_shift(eyes, reference, size=DEFAULT_SIZE, eye_dist=DEFAULT_EYE_DIST):
    """Distance between two estimates of a face's eye centres, in pixels of the aligned crop.

    The mean distance of the two eyes, divided by the reference's eye distance and multiplied
    by the eye distance in an aligned ``size`` crop: how far apart the two estimates put the
    eyes once the face is aligned. Used to measure tracking error (tracked against detected
    eyes) and jitter (eyes of consecutive frames).

    Args:
        eyes: keypoints in any form :func:`~kemo.faces.eye_centres` accepts.
        reference: the same for the reference estimate.
        size: side of the aligned crop.
        eye_dist: eye distance in the crop as a fraction of ``size``.

    Returns:
        float: the shift in crop pixels.
    """
    eyes, reference = eye_centres(eyes), eye_centres(reference)
    scale = eye_dist * size / np.hypot(*(reference[1] - reference[0]))
    return float(np.linalg.norm(eyes - reference, axis=1).mean() * scale)


class FaceTracker:
    """Detect faces every ``detect_every`` frames and carry them through the frames between.

    Feed frames in order with :meth:`track` (an iterable: it detects frames 0, k, 2k... in
    batches) or :meth:`update` (one frame at a time: it detects when k frames have passed since
    the last detection). Either way a full detection also runs on any frame where a tracked face
    is lost. While no face is found, detections keep to every k-th frame: a stretch without
    faces (an empty room, a cut to a landscape) costs one MTCNN call per k frames, not one per
    frame, and a face that comes into view is found within k - 1 frames, as a face that leaves
    in front of a still background is noticed within k - 1 frames (see the module docstring).

    Measured with ``python benchmarks/bench_faces.py`` (2 shared CPU cores, min_face_size=40),
    against detection on every frame; eye error is the mean (95th percentile) distance of the
    tracked eyes from the per-frame detected ones, in pixels of the 128x128 aligned crop:

    ======================  ===========  ===========  =========  ===========
    scene                   k, carry     face rate    CPU time   eye error
    ======================  ===========  ===========  =========  ===========
    40 CK+ clips, 684 fr.   5, flow      100 %        1 / 2.9    0.58 (1.51)
    40 CK+ clips            10, flow     100 %        1 / 3.5    0.81 (1.88)
    40 CK+ clips            5, hold      100 %        1 / 3.5    0.72 (1.91)
    moving face, 640x480    5, flow      100 %        1 / 3.8    0.80 (1.90)
    moving face, 640x480    10, flow     100 %        1 / 7.4    0.76 (1.34)
    moving face, 640x480    5, hold      100 %        1 / 4.6    12.5 (29.4)
    moving face, 1280x720   10, flow     100 %        1 / 8.3    0.74 (1.70)
    ======================  ===========  ===========  =========  ===========

    Per-frame detection itself moves the eyes by 0.63 crop pixels (mean) between consecutive
    CK+ frames, so optical flow at k = 5 to 10 loses no face and adds about one jitter's worth
    of eye error; holding the landmarks only works for still heads.

    Args:
        detector: a :class:`~kemo.faces.FaceDetector` (default: ``FaceDetector()``).
        detect_every: run the full detector on every k-th frame (1 = every frame, the paper).
        select: ``"largest"``, ``"most_confident"`` (one face per frame) or ``"all"``.
        carry: how faces move between detections: ``"flow"`` or ``"hold"``.
        iou_threshold: least box overlap for a new detection to keep a tracked face's id.

    Raises:
        InputError: for a bad argument, naming it and the value received.

    Example:
        >>> tracker = FaceTracker(detect_every=5)
        >>> for index, frame, records in tracker.track(frames):  # doctest: +SKIP
        ...     print(index, [r["track_id"] for r in records])
    """

    def __init__(
        self, detector=None, detect_every=1, select="largest", carry="flow", iou_threshold=0.3
    ):
        if detector is not None and not isinstance(detector, FaceDetector):
            raise InputError(f"detector must be a FaceDetector, got {type(detector).__name__}")
        if (
            isinstance(detect_every, bool)
            or not isinstance(detect_every, int | np.integer)
            or detect_every < 1
        ):
            raise InputError(f"detect_every must be an integer >= 1, got {detect_every!r}")
        if select not in SELECT_MODES:
            raise InputError(f"select must be one of {SELECT_MODES}, got {select!r}")
        if carry not in CARRY_MODES:
            raise InputError(f"carry must be one of {CARRY_MODES}, got {carry!r}")
        if not isinstance(iou_threshold, int | float) or not 0.0 <= iou_threshold <= 1.0:
            raise InputError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
        self.detector = FaceDetector() if detector is None else detector
        self.detect_every = int(detect_every)
        self.select = select
        self.carry = carry
        self.iou_threshold = float(iou_threshold)
        self.reset()

    def reset(self):
        """Forget all tracked faces (call between videos)."""
        self._tracks = []  # records of the faces tracked in the last frame
        self._since = 0  # frames since the last full detection
        self._next_id = 0
        self._prev_gray = None
        self.detections = 0  # frames that needed a full detection
        self.frames_seen = 0

    def update(self, frame, detections=None):
        """Process the next frame of the video.

        Args:
            frame: the frame (see :meth:`FaceDetector.detect`).
            detections: this frame's detection records if they were already computed (a full
                detection is then assumed); None lets the tracker decide.

        Returns:
            list[dict]: the faces in this frame: detection records with ``"track_id"`` (int) and
            ``"detected"`` (True when a full detection found it in this frame, False when it was
            carried) added.

        Raises:
            InputError: when ``frame`` is not an image.
        """
        self.frames_seen += 1
        flow = self.carry == "flow" and self.detect_every > 1
        gray = self._gray(frame) if flow else None
        if (detections is None and not self._tracks and self.detections
                and self._since < self.detect_every):
            # the last detection found no face: wait for the next one that is due
            self._since += 1
            self._prev_gray = gray
            return []
        carried = None
        if detections is None and self._tracks and self._since < self.detect_every:
            carried = self._carry_all(gray)
        if carried is not None:
            self._since += 1
            self._tracks = carried
        else:
            if detections is None:
                detections = self.detector.detect(frame)
            self.detections += 1
            self._since = 1
            self._tracks = self._assign_ids(select_faces(detections, self.select))
        self._prev_gray = gray
        return [dict(r) for r in self._tracks]

    def track(self, frames):
        """Track faces through an iterable of frames, batching the scheduled detections.

        The full detector runs on frames 0, k, 2k... of the iterable (k = ``detect_every``) and
        on any frame where a face is lost. MTCNN costs about 3x less per frame in batches of 8
        than one frame at a time (CPU time, 640x480), so the scheduled frames are detected
        together: frames are read ahead in chunks of up to ``detector.batch_size`` scheduled
        frames, holding at most about 128 MB of frames.

        Args:
            frames: iterable of frames, or of ``(index, frame)`` pairs as
                :meth:`kemo.video.Video.frames` yields them.

        Yields:
            tuple: ``(index, frame, records)`` for every frame, records as :meth:`update`
            returns them.
        """
        pairs = (
            item if isinstance(item, tuple) else (i, item) for i, item in enumerate(frames)
        )
        k = self.detect_every
        chunk, limit, position = [], None, 0
        for pair in pairs:
            if limit is None:  # frames per chunk, from the size of the first frame
                per_frame = max(1, np.asarray(pair[1]).nbytes)
                fits = _READ_AHEAD_BYTES // (k * per_frame)
                limit = k * max(1, min(self.detector.batch_size, fits))
            chunk.append(pair)
            if len(chunk) == limit:
                yield from self._run_chunk(chunk, position)
                position += len(chunk)
                chunk = []
        if chunk:
            yield from self._run_chunk(chunk, position)

    def _run_chunk(self, chunk, position):
        """Detect the scheduled frames of ``chunk`` in one batch, then update frame by frame."""
        scheduled = [i for i in range(len(chunk)) if (position + i) % self.detect_every == 0]
        found = self.detector.detect_batch([chunk[i][1] for i in scheduled])
        detections = dict(zip(scheduled, found, strict=True))
        for i, (index, frame) in enumerate(chunk):
            yield index, frame, self.update(frame, detections=detections.get(i))

    def _assign_ids(self, records):
        """Give each record the id of the tracked face it overlaps most, or a new id."""
        pairs = sorted(
            (
                (box_iou(r["box"], t["box"]), i, j)
                for i, r in enumerate(records)
                for j, t in enumerate(self._tracks)
            ),
            reverse=True,
        )
        ids = {}
        used = set()
        for iou, i, j in pairs:
            if iou < self.iou_threshold:
                break
            if i not in ids and j not in used:
                ids[i] = self._tracks[j]["track_id"]
                used.add(j)
        out = []
        for i, record in enumerate(records):
            if i not in ids:
                ids[i] = self._next_id
                self._next_id += 1
            out.append({**record, "track_id": ids[i], "detected": True})
        return out

    def _carry_all(self, gray):
        """Carry every tracked face into ``frame``; None when any of them is lost."""
        carried = []
        for track in self._tracks:
            if self.carry == "hold":
                record = dict(track)
            else:
                record = self._flow(track, gray)
            if record is None:
                return None
            record.update(track_id=track["track_id"], detected=False)
            carried.append(record)
        return carried

    @staticmethod
    def _gray(frame):
        import cv2

        image = as_uint8_image(frame, "frame")
        return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)

    def _flow(self, track, gray):
        """Move a face's landmarks and box by optical flow from the previous frame."""
        import cv2

        if self._prev_gray is None or self._prev_gray.shape != gray.shape:
            return None
        points = np.array([track["keypoints"][k] for k in KEYPOINT_NAMES], np.float64)
        # Flow only inside a window around the face: the image pyramids of a whole frame would
        # cost more than the flow itself. The margin allows half a face of motion per frame.
        x, y, w, h = track["box"]
        margin = 0.5 * max(w, h)
        height, width = gray.shape
        x1, y1 = int(max(0, x - margin)), int(max(0, y - margin))
        x2, y2 = int(min(width, x + w + margin)), int(min(height, y + h + margin))
        if x2 - x1 < 16 or y2 - y1 < 16:
            return None
        prev, cur = self._prev_gray[y1:y2, x1:x2], gray[y1:y2, x1:x2]
        start = (points - [x1, y1]).astype(np.float32)[:, None]
        # The window follows the face's scale: about a third of the eye distance.
        eye_dist = float(np.hypot(*(points[1] - points[0])))
        win = int(np.clip(round(eye_dist / 3) | 1, 11, 41))
        params = {
            "winSize": (win, win),
            "maxLevel": 3,
            "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
        }
        moved, ok, _ = cv2.calcOpticalFlowPyrLK(prev, cur, start, None, **params)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(cur, prev, moved, None, **params)
        # Forward-backward check: a point that does not come back to where it started is lost.
        error = np.linalg.norm(back[:, 0] - start[:, 0], axis=1)
        good = (ok[:, 0] == 1) & (ok_back[:, 0] == 1) & (error < max(1.0, 0.05 * eye_dist))
        if good.sum() < 3:
            return None
        matrix, _ = cv2.estimateAffinePartial2D(
            start[good, 0], moved[good, 0], method=cv2.LMEDS
        )
        if matrix is None:
            return None
        new_points = start[:, 0] @ matrix[:, :2].T + matrix[:, 2] + [x1, y1]
        scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
        cx, cy = matrix[:, :2] @ [x + w / 2 - x1, y + h / 2 - y1] + matrix[:, 2] + [x1, y1]
        w, h = w * scale, h * scale
        return {
            "box": [round(cx - w / 2), round(cy - h / 2), round(w), round(h)],
            "confidence": track["confidence"],
            "keypoints": {
                k: (float(p[0]), float(p[1]))
                for k, p in zip(KEYPOINT_NAMES, new_points, strict=True)
            },
        }
