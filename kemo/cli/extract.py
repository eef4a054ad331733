"""``kemo faces`` and ``kemo features``: what the pipeline extracts from videos, written out."""

from __future__ import annotations

import io
from pathlib import Path

from kemo._files import write_atomic
from kemo.cli.common import (
    BATCH_ERRORS,
    check_file,
    check_videos,
    check_weights,
    cluster_map,
    csv_text,
    face_options,
    progress_bar,
    recognizer_for,
    report_failures,
    show_bars,
    unique_stems,
    write_line,
)
from kemo.errors import InputError, one_line


def run_faces(args):
    """Run ``kemo faces``: aligned face crops as PNG files and a ``faces.csv`` index."""
    import cv2

    from kemo import parallel
    from kemo.errors import NoFaceError
    from kemo.faces import FacePreprocessor

    # every face is tracked, also for 'main', so that the main face is the one seen longest
    # and keeps the track id kemo predict gives it
    prep = FacePreprocessor(detect_every=5, out_size=args.size, grayscale=args.gray,
                            select="all")
    prep = face_options(prep, args).fit()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, failures = [], []
    stems = unique_stems(args.videos)  # two videos of one name in different folders
    remote = cluster_map(parallel.transform_faces, parallel.portable_faces(prep),
                         {i: v for i, v in enumerate(args.videos) if Path(v).is_file()},
                         setup=parallel.fit)
    videos = progress_bar(args.videos, not show_bars(args) or len(args.videos) == 1,
                          desc="videos", unit="video")
    for i, (video, stem) in enumerate(zip(videos, stems, strict=True)):
        try:
            check_file(video)
            found = remote.result(i) if remote is not None else prep.transform([video])[0]
            if not found.has_faces:
                raise NoFaceError(f"no face found in any of the {found.frames_read} frames")
            if args.tracks == "main":
                found = found.subset(found.track_rows()[0])
        except BATCH_ERRORS as exc:
            failures.append(one_line(exc, video))
            continue
        for face, frame, track, box, conf in zip(found.faces, found.frame_indices,
                                                 found.track_ids, found.boxes,
                                                 found.confidences, strict=True):
            name = f"{stem}_f{int(frame):06d}_t{int(track)}.png"
            image = face if face.ndim == 2 else cv2.cvtColor(face, cv2.COLOR_RGB2BGR)
            ok, data = cv2.imencode(".png", image)
            if not ok:
                raise OSError(f"{out / name}: PNG encoding failed")
            write_atomic(out / name, data.tobytes())
            rows.append([name, video, int(frame), int(track),
                         *(f"{v:.1f}" for v in box), f"{conf:.4f}"])
        write_line(f"{video}: {len(found)} faces from {found.frames_read} frames")
    header = ["file", "video", "frame", "track", "x", "y", "w", "h", "confidence"]
    write_atomic(out / "faces.csv", csv_text(header, rows))
    print(f"{len(rows)} faces written to {out} (index: {out / 'faces.csv'})")
    return report_failures(failures, len(args.videos))


def check_features(args):
    """Check ``--out``, the videos and the model before any work."""
    if not args.out.endswith(".npz"):
        raise InputError(f"--out must name an .npz file, got {args.out!r}")
    check_videos(args)
    check_weights(args)


def run_features(args):
    """Run ``kemo features``: frame and aggregated features in one ``.npz``."""
    import numpy as np

    from kemo import parallel
    from kemo.aggregation import Aggregator

    rec = recognizer_for(args)
    names = list(rec.features or (rec.weights,))
    done, failures = [], []
    remote = cluster_map(parallel.frame_features, parallel.portable_recognizer(rec),
                         {i: v for i, v in enumerate(args.videos) if Path(v).is_file()})
    videos = progress_bar(args.videos, not show_bars(args) or len(args.videos) == 1,
                          desc="videos", unit="video")
    for i, video in enumerate(videos):
        try:
            check_file(video)
            done.append((video, remote.result(i) if remote is not None
                         else rec.frame_features([video])[0]))
        except BATCH_ERRORS as exc:
            failures.append(one_line(exc, video))
    if done:
        per_net = [[feats[n] for _, feats in done] for n in names]
        arrays = {"paths": np.array([v for v, _ in done]),
                  "networks": np.array([str(n) for n in names]),
                  "aggregated": Aggregator().fit_transform(per_net).astype(np.float32),
                  "offsets": np.concatenate([[0], np.cumsum([len(f[names[0]])
                                                             for _, f in done])])}
        for name, videos in zip(names, per_net, strict=True):
            # a face model file (--weights) is named by its file name, without its folders
            arrays[f"frame_{Path(name).name}"] = np.concatenate(videos).astype(np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(args.out, buffer.getvalue())
        print(f"{len(done)} videos: aggregated features {arrays['aggregated'].shape} written "
              f"to {args.out}")
    return report_failures(failures, len(args.videos))
