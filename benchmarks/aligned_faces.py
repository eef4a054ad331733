"""How much accuracy the face model keeps on faces cut by kemo's own detect-and-align path.

FER2013's faces come from another cropper; at inference kemo's faces come from MTCNN and
:func:`kemo.faces.align_face`. This script measures the gap on FER2013 itself: each 48x48
image is upscaled (bicubic, to ``--upscale`` pixels), re-detected by
:class:`kemo.faces.FaceDetector`, aligned and cut back to 48x48, and the face model
scores the raw images and the aligned crops of the same images (the images where a face
was found). With ``--grid`` it also scores a grid of eye geometries (``eye_y``,
``eye_dist`` of :func:`kemo.faces.align_face`): run it on Training images to choose the
geometry, then on PublicTest to report it.

Usage:
    python benchmarks/aligned_faces.py --data DATA/fer2013 --subset PublicTest --n 1200
    python benchmarks/aligned_faces.py --data DATA/fer2013 --subset Training --n 2000 --grid
"""

import argparse
import itertools
import time

import numpy as np

from kemo.weights import DEFAULT_WEIGHTS


def detect(images, upscale):
    """Upscaled images and the most confident detection of each (None where none)."""
    import cv2

    from kemo.faces import FaceDetector

    big = [cv2.resize(im, (upscale, upscale), interpolation=cv2.INTER_CUBIC) for im in images]
    detector = FaceDetector(batch_size=16)
    records = []
    for start in range(0, len(big), 64):
        for found in detector.detect_batch(big[start:start + 64]):
            records.append(found[0] if found else None)
    return big, records


def aligned(big, records, eye_y, eye_dist):
    from kemo.faces import align_face

    return np.stack([align_face(im, rec, out_size=48, grayscale=True, eye_y=eye_y,
                                eye_dist=eye_dist)
                     for im, rec in zip(big, records, strict=True) if rec is not None])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER2013 location (file or folder)")
    parser.add_argument("--subset", default="PublicTest", choices=("Training", "PublicTest"))
    parser.add_argument("--n", type=int, default=1200, help="first N images of the subset")
    parser.add_argument("--upscale", type=int, default=192, help="side of the upscaled images")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="face model")
    parser.add_argument("--grid", action="store_true", help="score a grid of eye geometries")
    args = parser.parse_args(argv)

    from kemo.classifier import FaceEmotionClassifier
    from kemo.datasets import load_fer2013
    from kemo.faces.alignment import DEFAULT_EYE_DIST, DEFAULT_EYE_Y

    split = load_fer2013(args.data, subset=args.subset)
    images, labels = split.images[:args.n], split.labels[:args.n]
    started = time.time()
    big, records = detect(images, args.upscale)
    found = np.array([r is not None for r in records])
    print(f"{args.subset}, first {len(images)} images upscaled to {args.upscale} px: a face "
          f"in {found.sum()} ({time.time() - started:.0f} s)")
    clf = FaceEmotionClassifier(weights=args.weights)

    def score(faces):
        return 100 * np.mean(clf.predict(faces) == labels[found])

    print(f"raw FER2013 crops:             {score(images[found]):.2f} %")
    print(f"kemo aligned (defaults {DEFAULT_EYE_Y}, {DEFAULT_EYE_DIST}): "
          f"{score(aligned(big, records, DEFAULT_EYE_Y, DEFAULT_EYE_DIST)):.2f} %")
    # Where the eyes of the raw images lie, in fractions of the side: the geometry of the
    # data set's own cropper.
    eyes = np.array([[r["keypoints"]["left_eye"], r["keypoints"]["right_eye"]]
                     for r in records if r is not None]) / args.upscale
    print(f"eyes in the raw crops (median): y {np.median(eyes[:, :, 1]):.3f}, distance "
          f"{np.median(np.hypot(*(eyes[:, 1] - eyes[:, 0]).T)):.3f}")
    if args.grid:
        print("eye_y  eye_dist  accuracy")
        for eye_y, eye_dist in itertools.product((0.32, 0.35, 0.38, 0.41),
                                                 (0.30, 0.33, 0.36, 0.40, 0.44)):
            accuracy = score(aligned(big, records, eye_y, eye_dist))
            print(f"{eye_y:5.2f}  {eye_dist:8.2f}  {accuracy:6.2f}")


if __name__ == "__main__":
    main()
