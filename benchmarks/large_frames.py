"""Face detection on one 8K frame: FacePreprocessor's default max_side=1920 against full size.

A real face photo (``faces/fr_obama.jpg`` from the data folder) is pasted into a 7680x4320
frame; each setting runs twice after a warm-up on a small frame, in the same process, and the
best time is printed with the ratio.

Usage:
    python benchmarks/large_frames.py --data ../shared/data
"""

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("KEMO_DATA"), help="data root")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    from kemo.faces import FacePreprocessor

    face = cv2.imread(str(Path(args.data) / "faces" / "fr_obama.jpg"))[:, :, ::-1]
    frame = np.full((1, 4320, 7680, 3), 90, np.uint8)
    frame[0, 2000:2000 + face.shape[0], 5000:5000 + face.shape[1]] = face
    FacePreprocessor(out_size=48).fit().transform([frame[:, :480, :640]])  # warm-up
    best = {}
    for _ in range(args.repeats):
        for max_side in (1920, None):
            prep = FacePreprocessor(out_size=48, max_side=max_side).fit()
            started = time.perf_counter()
            found = prep.transform([frame])[0]
            seconds = time.perf_counter() - started
            best[max_side] = min(best.get(max_side, np.inf), seconds)
            print(f"max_side={max_side}: {seconds:.2f} s, {len(found)} face(s), box "
                  f"{found.boxes[0].round().tolist() if len(found) else None}")
    print(f"one 7680x4320 frame: {best[1920]:.2f} s with max_side=1920 (default), "
          f"{best[None]:.2f} s at full size: {best[None] / best[1920]:.1f}x")


if __name__ == "__main__":
    main()
