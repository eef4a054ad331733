"""Small faces at 1080p: faces found per frame and frames/s, kemo against fer, in one run.

A 1920x1080 scene holds six copies of a real group photo (``faces/facenet_multiface.jpg``,
six people) at three scales, so that its 36 faces are 15-35 pixels wide, drifting two pixels per
frame. Each tool analyses every frame of the same video file in its own process:

* ``kemo``: ``VideoEmotionRecognizer.analyze(video, tracks="all")`` with the default face stage
  (MTCNN every 5th frame, optical flow between) and the shipped face model; once with the
  default second look for small faces (``small_face_size=20``) and once without it
  (``small_face_size=None``, kemo before this option);
* ``fer``: ``FER(mtcnn=True).detect_emotions`` on every frame (facenet-pytorch's MTCNN, which
  looks for faces down to 20 pixels, and fer's classifier), when fer can be run: importable
  here, or a Python that has it named by ``--fer-python`` (or ``KEMO_FER_PYTHON``).

Faces per frame counts the faces each tool reports in each frame (kemo: the rows of all its
tracks); "found" counts the 36 true faces (boxes known from the photo) matched in the median
frame by a box of intersection over union >= 0.3; "false" counts reported boxes that match none.

Usage:
    nice -n 10 python benchmarks/small_faces.py --data ../shared/data [--frames 30]
        [--fer-python /path/to/python-with-fer] [--threads N]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_video import _torchvision_nms, child, fer_python, measure

SCALES = ((0.22, 20), (0.28, 300), (0.36, 560))  # (scale, top row) of each pair of copies
COLUMNS = (0, 960)


def scene_frames(photo, n, drift=2):
    """Yield ``n`` RGB 1080p frames of the photo's copies, and each frame's true boxes."""
    import cv2

    from kemo import FaceDetector

    boxes = [r["box"] for r in FaceDetector().detect(photo)]
    copies = [(cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), s, y)
              for s, y in SCALES]
    for t in range(n):
        frame = np.full((1080, 1920, 3), 90, np.uint8)
        truth = []
        for image, s, y in copies:
            for x in COLUMNS:
                x0 = x + drift * t
                frame[y:y + image.shape[0], x0:x0 + image.shape[1]] = image
                truth += [[x0 + b[0] * s, y + b[1] * s, b[2] * s, b[3] * s] for b in boxes]
        yield frame, truth


def write_scene(data, n, path):
    """Write the scene video to ``path``; return every frame's true boxes."""
    import cv2

    photo = cv2.imread(str(Path(data) / "faces" / "facenet_multiface.jpg"))[:, :, ::-1]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (1920, 1080))
    truths = []
    for frame, truth in scene_frames(np.ascontiguousarray(photo), n):
        writer.write(frame[:, :, ::-1])
        truths.append(truth)
    writer.release()
    return truths


def run_kemo(job):
    """Analyse the scene with kemo; return the boxes of every frame and the seconds taken."""
    from kemo import FacePreprocessor, VideoEmotionRecognizer

    # The shipped face model's input: 48x48 grey faces, as the recogniser's default face stage.
    faces = FacePreprocessor(detect_every=5, out_size=48, grayscale=True,
                             small_face_size=job["small_face_size"])
    rec = VideoEmotionRecognizer(faces=faces)
    rec.analyze(_first_frames(job["video"], min(5, job["frames"])), tracks="all")  # warm-up
    started = time.perf_counter()
    analysis = rec.analyze(job["video"], tracks="all")
    seconds = time.perf_counter() - started
    boxes = [[] for _ in range(job["frames"])]
    for track in analysis.tracks:
        for index, box in zip(track.frame_indices, track.boxes, strict=True):
            boxes[int(index)].append([float(v) for v in box])
    return {"boxes": boxes, "seconds": seconds}


def _first_frames(video, n):
    """The first ``n`` frames of ``video``, RGB, as one array."""
    import cv2

    capture = cv2.VideoCapture(video)
    frames = [capture.read()[1][:, :, ::-1] for _ in range(n)]
    capture.release()
    return np.stack(frames)


def run_fer(job):
    """Analyse the scene with fer's MTCNN on every frame; same result layout as kemo's."""
    import cv2

    notes = _torchvision_nms()
    from fer.fer import FER

    detector = FER(mtcnn=True)
    capture = cv2.VideoCapture(job["video"])
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    detector.detect_emotions(frames[0])  # warm-up
    started = time.perf_counter()
    boxes = [[[float(v) for v in face["box"]] for face in detector.detect_emotions(frame)]
             for frame in frames]
    return {"boxes": boxes, "seconds": time.perf_counter() - started, "notes": notes}


def score(boxes, truths):
    """Faces per frame, true faces found and false boxes in the median frame."""
    from kemo.faces.detection import box_iou

    t = len(truths) // 2
    found = sum(any(box_iou(b, true) >= 0.3 for b in boxes[t]) for true in truths[t])
    false = sum(all(box_iou(b, true) < 0.3 for true in truths[t]) for b in boxes[t])
    return float(np.mean([len(b) for b in boxes])), found, false


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("KEMO_DATA"), help="data root")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--fer-python", default=os.environ.get("KEMO_FER_PYTHON"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, run_kemo, run_fer)
    if not args.data:
        parser.error("--data (or KEMO_DATA) must name the data root")
    runs = [("kemo, small_face_size=20 (default)", sys.executable, {"small_face_size": 20}),
            ("kemo, small_face_size=None", sys.executable, {"small_face_size": None})]
    fer_py = fer_python(args.fer_python)
    if fer_py:
        runs.append(("fer, MTCNN", fer_py, {"tool": "fer"}))
    else:
        print("fer cannot be run here (not importable, no --fer-python): kemo rows only")
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "scene.avi"
        truths = write_scene(args.data, args.frames, video)
        print(f"scene: 1920x1080, {args.frames} frames, {len(truths[0])} faces of "
              f"{min(min(b[2:]) for b in truths[0]):.0f}-{max(max(b[2:]) for b in truths[0]):.0f}"
              " px; threads: " + (str(args.threads) if args.threads else "default"))
        results = {}
        for name, python, extra in runs:
            job = {"tool": "kemo", "video": str(video), "frames": args.frames,
                   "threads": args.threads, **extra}
            results[name] = measure(python, job, tmp, script=__file__)
    base = args.frames / results[runs[0][0]]["seconds"]
    print(f"\n| run | faces/frame | true faces found (of {len(truths[0])}) | false boxes | "
          "frames/s | x first row |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        per_frame, found, false = score(result["boxes"], truths)
        fps = args.frames / result["seconds"]
        print(f"| {name} | {per_frame:.1f} | {found} | {false} | {fps:.2f} | "
              f"{fps / base:.2f} |")
        for note in result.get("notes", []):
            print(f"  note ({name}): {note}")


if __name__ == "__main__":
    main()
