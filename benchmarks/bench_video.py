"""End-to-end video emotion recognition, kemo against fer: frames/s, faces found, peak memory.

Measures, in one run, kemo's per-frame pipeline (what ``kemo predict`` does: read the video,
find and align the face with :class:`kemo.FacePreprocessor`, classify each face with the shipped
FER2013 model, :class:`kemo.FaceEmotionClassifier`, and average the probabilities over the
frames) in three modes:

* ``every frame``: MTCNN on every frame (the paper's way);
* ``tracked k=K``: MTCNN every K-th frame, the face carried by optical flow between (k=5 is
  what :class:`kemo.VideoEmotionRecognizer` and ``kemo predict`` do by default);
* ``N sampled``: N frames sampled uniformly per video, MTCNN on each.

and, when the ``fer`` package can be run (importable here, or ``--fer-python`` names a Python
that has it), the same video files through ``fer.classes.Video.analyze`` with its MTCNN
(facenet-pytorch) and its Haar detector, every frame, each with fer's mini-Xception classifier.

Clip sets: the 40 CK+ clips (640x490, 684 frames, still heads), and a 640x480 and a 1280x720
clip composed from a real CK+ face moving over a textured background (``scenes.py``, the scenes
``bench_faces.py`` uses), written as XVID files with :func:`kemo.video.write_video`.

Every measurement runs in a fresh Python process, so peak resident memory (``VmHWM``) is its
own; models are loaded and warmed up before the clock starts. Columns:

* ``video fr/s``: frames of video covered per wall-clock second (all frames of the clips
  divided by the time), the figure that says how fast a video gets its label; ``cpu fr/s``: the
  same per CPU second of the process (steadier on a shared machine; a process using several
  cores gets less than its wall figure); ``analysed``: frames actually examined (fewer than the
  video's in ``N sampled`` mode);
* ``face rate``: examined frames in which a face was found (kemo: detected or tracked);
* ``peak MB``: peak resident memory of the process; ``+MB``: its growth while processing, after
  the models were loaded and warmed up;
* ``CK+ acc``: clips whose mean-probability label is the CK+ label (6 emotions, 40 clips);
* ``x fer MTCNN``, ``x fer Haar``: wall and CPU ratios of video fr/s over fer's on the same
  clips (> 1: faster than fer).

A second table runs kemo's tracked mode on composed 640x480 clips of growing length: peak memory
should not grow with the length (frames are streamed; only the 48x48 faces are kept).

Without fer, the ratios are taken against the reference figures in the project's DESIGN.md
(fer 25.10.3 on this kind of machine: 21.0 frames/s with MTCNN and 42.7 with Haar on a 640x360
clip), clearly marked as such: they are not from the same run.

fer on OpenCV 5 and CPU-only PyTorch: OpenCV 5 keeps Haar cascades in the contrib package and
no longer ships ``cv2.data`` cascade files, so fer's Haar mode gets fer's own bundled cascade
file (``FER(cascade_file=...)``); headless OpenCV has no GUI, so ``cv2.waitKey`` (which fer calls
after every frame for its optional display window) is replaced by a no-op; and when
torchvision's compiled operators cannot load (the PyPI torchvision wheel is built for CUDA
PyTorch), facenet-pytorch's non-maximum suppression runs through a vectorised PyTorch
replacement of ``torchvision::nms``. The run prints which of these applied.

Threads: on a machine shared by other jobs, PyTorch's OpenMP threads spin while they wait and
slow fer's MTCNN many-fold (measured here: 7 s per CK+ frame at load 10 on 2 cores, 0.46 s with
one thread). ``--threads N`` gives every measured process, kemo's and fer's alike, N threads in
TensorFlow, PyTorch, OpenCV and OpenMP.

Usage:
    nice -n 10 python benchmarks/bench_video.py --data ../shared/data \\
        [--fer-python /path/to/venv-with-fer/bin/python] [--every 5] [--samples 16]
        [--frames 90] [--lengths 300 1200 4800] [--repeats 1] [--threads N] [--quick]

``--data`` (or the ``KEMO_DATA`` environment variable) names the folder holding
``ckplus_emopy/videos/*.avi``. A Python for fer can also be named by ``KEMO_FER_PYTHON``.
"""

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# CK+ emotion in the clip names -> FER2013 class id; fer's emotion keys in FER2013 order.
CK_LABELS = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5}
FER_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# DESIGN.md, "Reference figures for the peers": fer 25.10.3, frames/s on a 640x360 clip.
REFERENCE_FPS = {"fer MTCNN": 21.0, "fer Haar": 42.7}


def peak_mb():
    """Peak resident memory of this process so far, MB.

    Linux's ``VmHWM`` belongs to the process image and starts afresh at ``exec``, whereas
    ``ru_maxrss`` keeps the high-water mark of the parent that forked it (the parent here holds
    TensorFlow and MTCNN while composing the clips), so ``VmHWM`` is read where it exists.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --------------------------------------------------------------------------- child processes


def run_kemo(job):
    """Run kemo's per-frame pipeline over the job's videos; return the measurements."""
    import warnings

    from kemo.classifier import FaceEmotionClassifier
    from kemo.faces import FacePreprocessor, NoFaceWarning
    from kemo.video import Video

    warnings.simplefilter("ignore", NoFaceWarning)
    prep = FacePreprocessor(
        out_size=48, grayscale=True, detect_every=job["detect_every"], n_frames=job["n_frames"]
    ).fit()
    clf = FaceEmotionClassifier().fit()
    # Warm-up: build MTCNN and trace its functions for this frame size, load the classifier.
    with Video(job["paths"][0]) as video:
        frame = next(video.frames())[1]
    prep.detector_.detect_batch([frame] * prep.batch_size)
    prep.detector_.detect(frame)
    clf.predict_proba(np.zeros((2, 48, 48), np.uint8))
    ready = peak_mb()
    analysed = with_face = 0
    predictions = []
    wall, cpu = time.perf_counter(), time.process_time()
    for path in job["paths"]:
        faces = prep.transform([path])[0]
        proba = clf.predict_proba(faces.faces)
        analysed += faces.frames_read
        with_face += faces.frames_read - faces.n_missing
        predictions.append(int(proba.mean(axis=0).argmax()) if len(proba) else -1)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall": wall, "cpu": cpu, "analysed": analysed, "with_face": with_face,
            "predictions": predictions, "ready_mb": ready, "peak_mb": peak_mb(), "notes": []}


def _torchvision_nms():
    """Give torchvision a working ``nms`` when its compiled operators cannot load.

    The PyPI torchvision wheel is built against CUDA PyTorch; with a CPU-only PyTorch its
    ``_C`` library does not load and importing torchvision fails. facenet-pytorch (fer's MTCNN)
    needs only ``torchvision.ops.batched_nms``, so register ``torchvision::nms`` as a
    vectorised PyTorch kernel (IoU matrix, greedy keep) and skip the registrations of the other
    operators. Returns a list of notes saying what was done.
    """
    import glob

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        return []
    libraries = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))
    try:
        for library in libraries:
            torch.ops.load_library(library)
        return []
    except OSError as err:
        reason = str(err).splitlines()[0]
    import types

    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations")
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

    def nms(boxes, scores, threshold):
        order = scores.argsort(descending=True)
        x1, y1, x2, y2 = boxes[order].unbind(1)
        areas = (x2 - x1) * (y2 - y1)
        w = (torch.minimum(x2[:, None], x2) - torch.maximum(x1[:, None], x1)).clamp(min=0)
        h = (torch.minimum(y2[:, None], y2) - torch.maximum(y1[:, None], y1)).clamp(min=0)
        inter = w * h
        over = (inter / (areas[:, None] + areas - inter) > threshold).numpy()
        removed = np.zeros(len(order), bool)
        keep = []
        for i in range(len(order)):
            if not removed[i]:
                keep.append(i)
                removed |= over[i]
        return order[torch.as_tensor(keep, dtype=torch.long)]

    lib.impl("nms", nms, "CPU")
    _torchvision_nms.library = lib
    import torchvision.extension

    torchvision.extension._has_ops = lambda: True
    return [f"torchvision ops could not load ({reason}); fer's MTCNN ran its NMS through a "
            "PyTorch replacement of torchvision::nms"]


def run_fer(job):
    """Run fer's video analysis over the job's videos; return the measurements."""
    import logging

    import cv2

    notes = []
    if not hasattr(cv2, "CascadeClassifier"):
        raise SystemExit("this OpenCV has no CascadeClassifier: fer needs opencv-contrib-python")
    # fer calls cv2.waitKey(1) after every frame for its optional display window; headless
    # OpenCV has no GUI and raises there.
    try:
        cv2.waitKey(1)
    except cv2.error:
        cv2.waitKey = lambda delay=0: -1
        notes.append("headless OpenCV: cv2.waitKey replaced by a no-op")
    if job["detector"] == "mtcnn":
        notes += _torchvision_nms()
    import fer
    from fer.classes import Video as FerVideo
    from fer.fer import FER

    logging.getLogger("fer").setLevel(logging.WARNING)
    if job["detector"] == "mtcnn":
        detector = FER(mtcnn=True)
    else:
        cascade = Path(fer.__file__).parent / "data" / "haarcascade_frontalface_default.xml"
        detector = FER(cascade_file=str(cascade))
    capture = cv2.VideoCapture(job["paths"][0])
    ok, frame = capture.read()
    capture.release()
    detector.detect_emotions(frame)
    ready = peak_mb()
    analysed = with_face = 0
    predictions = []
    with tempfile.TemporaryDirectory() as outdir:
        wall, cpu = time.perf_counter(), time.process_time()
        for path in job["paths"]:
            video = FerVideo(str(path), outdir=outdir)
            table = video.analyze(detector, display=False, output="pandas", save_frames=False,
                                  save_video=False, annotate_frames=False, zip_images=False)
            analysed += video.frameCount
            with_face += len(table)
            predictions.append(int(np.argmax(table[list(FER_EMOTIONS)].mean().to_numpy()))
                               if len(table) else -1)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    notes.append(f"fer {fer.__version__}")
    return {"wall": wall, "cpu": cpu, "analysed": analysed, "with_face": with_face,
            "predictions": predictions, "ready_mb": ready, "peak_mb": peak_mb(), "notes": notes}


def limit_threads(n):
    """Use ``n`` threads in TensorFlow, PyTorch and OpenCV (OpenMP/MKL: the environment)."""
    import cv2
    import tensorflow as tf

    cv2.setNumThreads(n)

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(n)


def child(job_file, kemo=run_kemo, fer=run_fer):
    """Run one job (``kemo`` or ``fer`` by its tool) and print its result for :func:`measure`."""
    job = json.loads(Path(job_file).read_text())
    if job.get("threads"):
        limit_threads(job["threads"])
    result = kemo(job) if job["tool"] == "kemo" else fer(job)
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- parent


def measure(python, job, tmp, script=__file__):
    """Run one job in a fresh process of ``python`` running ``script --child``; return its
    result dict (or raise)."""
    job_file = Path(tmp) / "job.json"
    job_file.write_text(json.dumps(job))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    if job.get("threads"):
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(job["threads"])
    done = subprocess.run([python, script, "--child", str(job_file)], capture_output=True,
                          text=True, env=env)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{job['tool']} run failed (exit {done.returncode}):\n{tail}")
    return json.loads(lines[-1][len("RESULT "):])


def fer_python(requested):
    """The Python that runs fer: ``requested``, this one when fer imports here, or None."""
    if requested:
        return requested
    if importlib.util.find_spec("fer") is not None:
        return sys.executable
    return None


def ck_label(path):
    return CK_LABELS[Path(path).stem.rsplit("_", 1)[1]]


def write_scenes(ck_paths, args, tmp):
    """Compose the moving-face clips; return ({name: path}, {length: path})."""
    from scenes import face_crops, moving_face

    from kemo.video import read_frames, write_video

    clips = [read_frames(p)[1] for p in ck_paths]
    crops = face_crops(max(clips, key=len))  # the longest clip gives the moving face
    scenes = {}
    for size in ((640, 480), (1280, 720)):
        path = Path(tmp) / f"scene_{size[0]}x{size[1]}.avi"
        scenes[f"{size[0]}x{size[1]}"] = write_video(path, moving_face(crops, size, args.frames))
    lengths = {}
    for n in args.lengths:
        path = Path(tmp) / f"long_{n}.avi"
        lengths[n] = write_video(path, moving_face(crops, (640, 480), n, seed=1))
    return scenes, lengths


def table_row(cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def ratio_cells(row, results, key):
    """``wall / cpu`` ratios of a result over fer's in the same clip set (or the references)."""
    out = []
    for peer in ("fer MTCNN", "fer Haar"):
        same = results.get((key[0], peer))
        mine = results[key]
        if same:
            out.append(f"{mine['video_fps'] / same['video_fps']:.2f} / "
                       f"{mine['cpu_fps'] / same['cpu_fps']:.2f}")
        else:
            out.append(f"{mine['video_fps'] / REFERENCE_FPS[peer]:.2f} (ref)")
    return row + out


def best_of(runs):
    """Merge repeated runs of one measurement: the fastest wall and CPU times, the largest peak."""
    best = dict(runs[0])
    best["wall"] = min(r["wall"] for r in runs)
    best["cpu"] = min(r["cpu"] for r in runs)
    best["peak_mb"] = max(r["peak_mb"] for r in runs)
    best["ready_mb"] = max(r["ready_mb"] for r in runs)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("KEMO_DATA"),
                        help="folder holding ckplus_emopy/videos (default: $KEMO_DATA)")
    parser.add_argument("--fer-python", default=os.environ.get("KEMO_FER_PYTHON"),
                        help="a Python interpreter with fer installed (default: this one, "
                             "when it has fer; $KEMO_FER_PYTHON)")
    parser.add_argument("--every", type=int, default=5, help="K of the tracked mode")
    parser.add_argument("--samples", type=int, default=16, help="N of the sampled mode")
    parser.add_argument("--frames", type=int, default=90, help="frames per composed clip")
    parser.add_argument("--lengths", type=int, nargs="+", default=[300, 1200, 4800],
                        help="lengths of the memory-vs-length clips (640x480)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each measurement, interleaved; the fastest is kept")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for TensorFlow, PyTorch, OpenCV and OpenMP in every measured "
                             "process (default: the libraries' own); 1 on an oversubscribed "
                             "machine, where OpenMP's spinning threads slow PyTorch many-fold")
    parser.add_argument("--quick", action="store_true",
                        help="5 CK+ clips, 60-frame composed clips, lengths 60 240")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    if args.data is None:
        raise SystemExit("name the data folder: --data DIR or KEMO_DATA=DIR")
    ck_paths = sorted((Path(args.data) / "ckplus_emopy" / "videos").glob("*.avi"))
    if not ck_paths:
        raise SystemExit(f"no CK+ clips under {args.data}/ckplus_emopy/videos")
    if args.quick:
        ck_paths, args.frames, args.lengths = ck_paths[::8], 60, [60, 240]
    fer_py = fer_python(args.fer_python)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kemo_bench_") as tmp:
        scenes, long_clips = write_scenes(ck_paths, args, tmp)
        from kemo.video import Video

        clip_sets = [(f"CK+ {len(ck_paths)} clips 640x490", [str(p) for p in ck_paths])]
        clip_sets += [(f"{name} moving face", [str(path)]) for name, path in scenes.items()]
        frame_counts = {}
        for _, paths in clip_sets:
            for p in paths:
                with Video(p) as video:
                    frame_counts[p] = video.frame_count
        methods = [
            ("kemo every frame", "kemo", {"detect_every": 1, "n_frames": None}),
            (f"kemo tracked k={args.every}", "kemo",
             {"detect_every": args.every, "n_frames": None}),
            (f"kemo {args.samples} sampled", "kemo",
             {"detect_every": 1, "n_frames": args.samples}),
        ]
        if fer_py:
            methods += [("fer MTCNN", "fer", {"detector": "mtcnn"}),
                        ("fer Haar", "fer", {"detector": "haar"})]
        print(f"kemo: {sys.executable}; fer: {fer_py or 'not installed'}; threads per "
              f"process: {args.threads or 'library defaults'}")
        runs, notes = {}, set()
        for repeat in range(args.repeats):  # interleaved, so load changes hit every method
            for set_name, paths in clip_sets:
                for method, tool, options in methods:
                    job = {"tool": tool, "paths": paths, "threads": args.threads, **options}
                    try:
                        r = measure(fer_py if tool == "fer" else sys.executable, job, tmp)
                    except RuntimeError as err:
                        print(f"{set_name} / {method}: {err}", file=sys.stderr)
                        continue
                    notes.update(r["notes"])
                    runs.setdefault((set_name, method), []).append(r)
                    print(f"  run {repeat + 1}: {set_name} / {method}: "
                          f"{sum(frame_counts[p] for p in paths) / r['wall']:.1f} video fr/s",
                          file=sys.stderr, flush=True)
        results = {}
        for (set_name, method), rs in runs.items():
            paths = dict(clip_sets)[set_name]
            r = best_of(rs)
            r["total"] = sum(frame_counts[p] for p in paths)
            r["video_fps"] = r["total"] / r["wall"]
            r["cpu_fps"] = r["total"] / r["cpu"]
            if set_name.startswith("CK+"):
                hits = sum(int(a == ck_label(p))
                           for a, p in zip(r["predictions"], paths, strict=True))
                r["acc"] = f"{hits}/{len(paths)}"
            results[set_name, method] = r
        header = ["clips", "method", "video frames", "analysed", "video fr/s", "cpu fr/s",
                  "face rate", "peak MB", "+MB", "CK+ acc", "x fer MTCNN", "x fer Haar"]
        print()
        print(table_row(header))
        print(table_row(["---"] * len(header)))
        for key, r in results.items():
            row = [*key, r["total"], r["analysed"], f"{r['video_fps']:.1f}",
                   f"{r['cpu_fps']:.1f}", f"{r['with_face'] / max(1, r['analysed']):.1%}",
                   f"{r['peak_mb']:.0f}", f"{r['peak_mb'] - r['ready_mb']:.0f}",
                   r.get("acc", "")]
            print(table_row(ratio_cells(row, results, key)))
        print(f"\nvideo fr/s: frames of video covered per wall-clock second; cpu fr/s: per CPU "
              f"second of the process; analysed: frames examined; face rate: examined frames "
              f"with a face; +MB: peak memory growth after the models were loaded; best of "
              f"{args.repeats} run(s).")
        if not fer_py:
            print("fer is not installed here (nor named by --fer-python): the 'x fer' ratios "
                  "divide kemo's video fr/s by the REFERENCE figures in DESIGN.md, not by a "
                  "same-run measurement: fer 25.10.3 video analysis of a 640x360 clip, 21.0 "
                  "frames/s with MTCNN and 42.7 frames/s with Haar, measured earlier on this "
                  "kind of machine.")
        else:
            print("x fer MTCNN / x fer Haar: 'wall / cpu' ratios of video fr/s over fer's on the "
                  "same clips in this run (> 1: faster than fer).")
        for note in sorted(notes):
            print(f"note: {note}")

        print(f"\nMemory against video length: kemo tracked k={args.every}, composed 640x480 "
              "clips, each length in a fresh process")
        print(table_row(["frames", "peak MB", "+MB while processing", "video fr/s"]))
        print(table_row(["---"] * 4))
        peaks = []
        for n, path in long_clips.items():
            r = measure(sys.executable, {"tool": "kemo", "paths": [str(path)],
                                         "detect_every": args.every, "n_frames": None,
                                         "threads": args.threads}, tmp)
            peaks.append((n, r["peak_mb"]))
            print(table_row([n, f"{r['peak_mb']:.0f}", f"{r['peak_mb'] - r['ready_mb']:.0f}",
                             f"{n / r['wall']:.1f}"]), flush=True)
        (n0, p0), (n1, p1) = peaks[0], peaks[-1]
        frame_mb = 640 * 480 * 3 / 2**20
        print(f"peak memory grew {p1 - p0:+.0f} MB from {n0} to {n1} frames; holding the "
              f"{n1 - n0} extra decoded frames would take {(n1 - n0) * frame_mb:.0f} MB")
    print(f"\ntotal {time.perf_counter() - start:.0f} s; machine: {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
