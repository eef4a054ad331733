"""Peak memory of ``kemo predict`` against the length of the video.

Composes 640x360 clips (30 frames/s) of a real CK+ face moving over a textured background
(``scenes.py``), one per length in ``--seconds``, and runs the real command line,
``kemo predict CLIP --json FILE``, on each in a fresh process, with its default settings.
Prints each run's peak resident memory (the largest ``ru_maxrss`` of the command's process,
read by a small Python parent that does nothing else), its wall time, frames read and faces
found, and the peak against the shortest clip's, the baseline measured in the same run
(with ``--repeats``: the largest peak and the shortest time of the runs of each clip).

Streaming keeps the frames out of memory; what still grows with the length is what kemo keeps
per frame. The goal of issue 17 is a 10-minute clip within 10 % of a 10-second one.
``--via python`` measures the Python API instead of the command line:
``VideoEmotionRecognizer().predict_proba([CLIP])``, the pretrained recogniser's probabilities.

``--record`` stores the table in ``docs/results.json`` (``benchmarks.predict_memory``, or
``benchmarks.predict_memory_python`` with ``--via python``) and ``docs/results.md``.

Usage (from the repository root)::

    nice -n 10 python benchmarks/predict_memory.py --data ../shared/data [--seconds 10 600] \
        [--record]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # scenes.py, reproduce.py

# Runs one command and prints the peak resident memory of its process tree, in KiB (Linux).
PARENT = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
          "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
          "done.returncode)")
FPS = 30
SIZE = (640, 360)


def frames(seconds):
    """The number of frames of a composed clip of ``seconds``."""
    return int(seconds * FPS)


def compose(ck_clip, seconds, folder):
    """Write a clip of ``seconds`` with the face of ``ck_clip`` moving; return its path."""
    from scenes import face_crops, moving_face

    from kemo.video import read_frames, write_video

    crops = face_crops(read_frames(ck_clip)[1], face_width=160)
    path = Path(folder) / f"moving_{seconds}s.avi"
    return write_video(path, moving_face(crops, SIZE, frames(seconds), seed=1), fps=FPS)


# --via python: the pretrained recogniser on one video, its result written like the command's,
# with the peak of what tracemalloc sees (Python objects and NumPy arrays, not TensorFlow's or
# OpenCV's own buffers): what kemo keeps, without the native noise of the resident peak
API = ("import json, sys, tracemalloc; from kemo import VideoEmotionRecognizer; "
       "rec = VideoEmotionRecognizer(); rec.face_preprocessor(); tracemalloc.start(); "
       "proba = rec.predict_proba([sys.argv[1]])[0]; "
       "traced = tracemalloc.get_traced_memory()[1] / 2**20; "
       "json.dump({'videos': [{'probabilities': proba.tolist(), 'traced_mb': traced}]}, "
       "open(sys.argv[2], 'w'))")
API_NAME = "`VideoEmotionRecognizer().predict_proba([clip])`"


def measure(clip, folder, via="cli"):
    """Run ``kemo predict`` (or the API) on ``clip``; return peak MB, wall seconds, JSON result."""
    out = Path(folder) / f"{clip.stem}.json"
    command = [sys.executable, "-m", "kemo", "predict", str(clip), "--json", str(out)]
    if via == "python":
        command = [sys.executable, "-c", API, str(clip), str(out)]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PARENT, *command], capture_output=True,
                          text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    wall = time.perf_counter() - started
    peak = [line.split() for line in done.stdout.splitlines() if line.startswith("PEAK ")]
    if not peak or peak[0][2] != "0":
        raise RuntimeError(f"kemo predict {clip} failed:\n{done.stderr[-2000:]}")
    video = json.loads(out.read_text())["videos"][0]
    return int(peak[0][1]) / 1024, wall, video


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("KEMO_DATA", "../shared/data"),
                        help="folder holding ckplus_emopy/videos (default: $KEMO_DATA)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 600],
                        help="clip lengths in seconds, the first is the baseline")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per clip; the largest peak and the shortest time are shown")
    parser.add_argument("--via", choices=["cli", "python"], default="cli",
                        help="the command line, or predict_proba of the pretrained recogniser")
    parser.add_argument("--record", action="store_true",
                        help="store the table in docs/results.json and docs/results.md")
    args = parser.parse_args(argv)

    clips = sorted(Path(args.data, "ckplus_emopy", "videos").glob("*.avi"))
    if not clips:
        parser.error(f"no CK+ clips in {args.data}/ckplus_emopy/videos")
    ck_clip = max(clips, key=lambda p: p.stat().st_size)  # the longest expression
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        for seconds in args.seconds:
            clip = compose(ck_clip, seconds, folder)
            runs = [measure(clip, folder, args.via) for _ in range(args.repeats)]
            peak, wall = max(r[0] for r in runs), min(r[1] for r in runs)
            video = runs[0][2]
            if args.via == "python":  # predict_proba does not tell the frames and faces
                counts = [str(frames(seconds)), f"{max(r[2]['traced_mb'] for r in runs):.1f}"]
            else:
                counts = [str(video["frames_read"]), str(video["faces_found"])]
            rows.append((seconds, counts, peak, wall))
            print(f"composed {seconds:g} s: peak {peak:.0f} MB, {wall:.0f} s", flush=True)
            clip.unlink()
    base = rows[0][2]
    middle = (["frames", "traced peak MB (Python and NumPy)"] if args.via == "python"
              else ["frames read", "faces found"])
    header = ["length", *middle, "peak MB", "against the first", "wall s"]
    cells = [[f"{seconds:g} s", *counts, f"{peak:.0f}", f"{peak / base - 1:+.1%}", f"{wall:.0f}"]
             for seconds, counts, peak, wall in rows]
    what = API_NAME if args.via == "python" else "`kemo predict`"
    print(f"\n{what} on composed {SIZE[0]}x{SIZE[1]} clips, {FPS} frames/s "
          f"(face from {ck_clip.name}); each run in a fresh process\n")
    for line in (header, ["---"] * len(header), *cells):
        print("| " + " | ".join(line) + " |")
    if args.record:
        record(header, cells, args)


def record(header, cells, args):
    """Store the table in docs/results.json (``benchmarks.predict_memory[_python]``), results.md."""
    from reproduce import ROOT, recorded_entry, update_results

    python = args.via == "python"
    key = "predict_memory_python" if python else "predict_memory"
    entry = recorded_entry(
        f"Peak memory of {API_NAME if python else 'kemo predict'} against the video's length",
        "nice -n 10 python benchmarks/predict_memory.py --data ../shared/data "
        f"--seconds {' '.join(f'{x:g}' for x in args.seconds)} --repeats {args.repeats}"
        + (" --via python" if python else "") + " --record",
        {"length": {"header": header, "rows": cells}})

    def store(results):
        results.setdefault("benchmarks", {})[key] = entry

    update_results(ROOT / "docs", store)
    print(f"recorded in docs/results.json (benchmarks.{key}) and docs/results.md")


if __name__ == "__main__":
    main()
