"""Faces: MTCNN detection, eye alignment, tracking through a video, FacePreprocessor.

The face stage of the pipeline (frames -> faces -> features): :class:`FaceDetector` finds faces
and five landmarks, :func:`align_face` levels the eyes and crops, :class:`FaceTracker` follows
faces between full detections, and :class:`FacePreprocessor` does it all for lists of videos.
"""

from kemo.faces.alignment import (
    align_face,
    alignment_matrix,
    eye_centres,
    eye_targets,
    transform_points,
)
from kemo.faces.detection import KEYPOINT_NAMES, FaceDetector, box_iou
from kemo.faces.preprocessor import FacePreprocessor, NoFaceWarning, VideoFaces
from kemo.faces.tracking import FaceTracker, eye_shift, select_faces

__all__ = [
    "KEYPOINT_NAMES",
    "FaceDetector",
    "FacePreprocessor",
    "FaceTracker",
    "NoFaceWarning",
    "VideoFaces",
    "align_face",
    "alignment_matrix",
    "box_iou",
    "eye_centres",
    "eye_shift",
    "eye_targets",
    "select_faces",
    "transform_points",
]
