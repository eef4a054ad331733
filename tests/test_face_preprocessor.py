"""FacePreprocessor: videos to stacks of aligned faces, its scikit-learn contract and its cache."""

import shutil
import time
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from kemo.errors import InputError, VideoReadError
from kemo.faces import FacePreprocessor, NoFaceWarning, VideoFaces, eye_shift

# mtcnn runs on the tensorflow Keras backend only (FaceDetector raises BackendError elsewhere).
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="mtcnn needs KERAS_BACKEND=tensorflow"
)

CLIPS = ("S052_001_surprise.avi", "S111_006_anger.avi")


@pytest.fixture(scope="module")
def clips(shared_data):
    return [shared_data / "ckplus_emopy" / "videos" / name for name in CLIPS]


@pytest.fixture(scope="module")
def sampled(clips):
    """4 frames per clip, 48x48 grey faces: the default-settings run the tests compare with."""
    prep = FacePreprocessor(n_frames=4, out_size=48, grayscale=True).fit()
    return prep.transform(clips)


def test_sampled_faces_shapes_and_indices(sampled, clips):
    from kemo.video import Video

    assert len(sampled) == 2, f"one result per video, got {len(sampled)}"
    for result, path in zip(sampled, clips, strict=True):
        assert isinstance(result, VideoFaces), f"got {type(result).__name__}"
        assert result.faces.shape == (4, 48, 48), f"{path.name}: {result.faces.shape}"
        assert result.faces.dtype == np.uint8, f"{path.name}: {result.faces.dtype}"
        with Video(path) as video:
            indices, _ = video.sample(4)
        assert result.frame_indices.tolist() == indices.tolist(), (
            f"{path.name}: frame indices {result.frame_indices} vs Video.sample {indices}"
        )
        assert result.frames_read == 4 and result.n_missing == 0, f"{path.name}: {result!r}"
        assert result.keypoints.shape == (4, 5, 2) and result.boxes.shape == (4, 4), "geometry"
        assert result.detected.all(), "detect_every=1: every face comes from a detection"
        assert result.source == str(path), f"source {result.source}"
        assert result.faces.std() > 20, "the faces have content, not a blank crop"


def test_arrays_equal_paths(sampled, clips):
    from kemo.video import read_frames

    _, frames = read_frames(clips[0])
    result = FacePreprocessor(n_frames=4, out_size=48, grayscale=True).fit_transform([frames])[0]
    assert np.array_equal(result.frame_indices, sampled[0].frame_indices), "same indices"
    assert np.array_equal(result.faces, sampled[0].faces), "same faces from an array as a path"
    assert result.source is None, "arrays have no source path"


def test_tracked_every_frame_colour(clips):
    result = FacePreprocessor(out_size=64, detect_every=5).fit_transform(clips[:1])[0]
    assert result.faces.shape[1:] == (64, 64, 3), f"RGB faces, got {result.faces.shape}"
    assert result.frame_indices.tolist() == list(range(result.frames_read)), "every frame"
    assert result.detected.tolist() == [i % 5 == 0 for i in range(result.frames_read)], (
        "full detection on every 5th frame"
    )
    kps = result.keypoints
    jitter = [eye_shift(kps[i + 1], kps[i]) for i in range(len(kps) - 1)]
    assert np.mean(jitter) < 3.0, f"eye jitter {np.mean(jitter):.2f} crop px"


def test_video_without_face_is_reported_not_fatal(clips):
    blank = np.full((6, 120, 160, 3), 90, np.uint8)
    prep = FacePreprocessor(n_frames=3, out_size=48).fit()
    with pytest.warns(NoFaceWarning, match=r"X\[0\]"):
        results = prep.transform([blank, clips[0]])
    assert results[0].faces.shape == (0, 48, 48, 3), f"empty stack, got {results[0].faces.shape}"
    assert results[0].n_missing == 3 and not results[0].has_faces, f"{results[0]!r}"
    assert results[0].missing_frames.tolist() == [0, 2, 5], f"{results[0].missing_frames}"
    assert len(results[1]) == 3, "the next video of the batch is still processed"


def test_select_all_keeps_two_tracks(shared_data):
    bgr = cv2.imread(str(shared_data / "faces" / "fr_two_people.jpg"))
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    video = np.stack([np.roll(image, 2 * t, axis=1) for t in range(3)])
    result = FacePreprocessor(select="all", out_size=48).fit_transform([video])[0]
    assert len(result) == 6, f"two faces in each of 3 frames, got {len(result)}"
    assert result.frame_indices.tolist() == [0, 0, 1, 1, 2, 2], f"{result.frame_indices}"
    assert sorted(result.track_ids.tolist()) == [0, 0, 0, 1, 1, 1], f"{result.track_ids}"


def test_cache_is_reused_without_detection(tmp_path, clips):
    settings = {"n_frames": 3, "out_size": 48, "cache_dir": tmp_path / "cache"}
    first = FacePreprocessor(**settings).fit()
    before = first.transform(clips)
    assert first.detector_.calls == 6, f"3 frames x 2 videos detected, {first.detector_.calls}"
    files = sorted((tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(f.suffix == ".npz" for f in files), f"cache files {files}"
    second = FacePreprocessor(**settings).fit()
    after = second.transform(clips)
    assert second.detector_.calls == 0, "the rerun must read the cache, not run the detector"
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(a.faces, b.faces), "cached faces differ"
        assert np.array_equal(a.keypoints, b.keypoints), "cached keypoints differ"
        assert a.source == b.source and a.frames_read == b.frames_read, "cached metadata"
    other = FacePreprocessor(**{**settings, "out_size": 64}).fit()
    other.transform(clips[:1])
    assert other.detector_.calls == 3, "other settings, other key: detection runs"
    assert len(list((tmp_path / "cache").iterdir())) == 3, "one more file, no temporary left"


def test_cache_hit_names_the_video_asked_for(tmp_path, clips):
    # the key is the content, so a copy under another name reads the same cache file
    settings = {"n_frames": 2, "out_size": 48, "cache_dir": tmp_path / "cache"}
    FacePreprocessor(**settings).fit().transform(clips[:1])
    copy = tmp_path / f"copy{Path(clips[0]).suffix}"
    shutil.copyfile(clips[0], copy)
    prep = FacePreprocessor(**settings).fit()
    (found,) = prep.transform([copy])
    assert prep.detector_.calls == 0, "the copy must hit the cache"
    assert found.source == str(copy), f"a cache hit must name the video asked for: {found.source}"


def test_unreadable_cache_file_is_recomputed(tmp_path, clips):
    settings = {"n_frames": 2, "out_size": 48, "cache_dir": tmp_path}
    FacePreprocessor(**settings).fit_transform(clips[:1])
    (cached,) = tmp_path.glob("*.npz")
    cached.write_bytes(b"truncated")
    prep = FacePreprocessor(**settings).fit()
    with pytest.warns(RuntimeWarning, match="unreadable cache"):
        result = prep.transform(clips[:1])[0]
    assert len(result) == 2 and prep.detector_.calls == 2, "recomputed after a bad cache file"
    assert VideoFaces.load(cached).faces.shape == (2, 48, 48, 3), "and the file was rewritten"


def test_sklearn_contract():
    name = "FacePreprocessor"
    check_parameters_default_constructible(name, FacePreprocessor())
    check_no_attributes_set_in_init(name, FacePreprocessor())
    check_get_params_invariance(name, FacePreprocessor())
    check_set_params(name, FacePreprocessor())
    prep = FacePreprocessor(out_size=48, detect_every=3)
    copy = clone(prep)
    assert copy.get_params() == prep.get_params() and copy is not prep, "clone keeps params"
    with pytest.raises(NotFittedError):
        prep.transform([np.zeros((1, 32, 32, 3), np.uint8)])
    assert prep.fit([]) is prep, "fit returns self"
    assert prep.set_params(out_size=64).out_size == 64, "set_params"


def test_pipeline_feeds_frame_features(clips):
    import keras

    from kemo.features import FrameFeatureExtractor

    inputs = keras.Input((48, 48, 1))
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(inputs)
    model = keras.Model(inputs, outputs)
    pipe = Pipeline(
        [
            ("faces", FacePreprocessor(n_frames=3, out_size=48, grayscale=True)),
            ("features", FrameFeatureExtractor(model=model, layer="pool")),
        ]
    )
    features = pipe.fit_transform(clips)
    faces = pipe.named_steps["faces"].transform(clips)
    assert [f.shape for f in features] == [(3, 1), (3, 1)], f"{[f.shape for f in features]}"
    assert np.allclose(features[0][:, 0], faces[0].faces.mean(axis=(1, 2)), atol=1e-3), (
        "the features are the mean pixel of each aligned face"
    )
    assert np.asarray(faces[0]).shape == (3, 48, 48), "np.asarray(VideoFaces) is the stack"


def test_pipeline_composes(clips):
    count_faces = FunctionTransformer(lambda results: np.array([[len(r)] for r in results]))
    pipe = Pipeline([("faces", FacePreprocessor(n_frames=2, out_size=48)), ("count", count_faces)])
    assert pipe.fit_transform(clips[:1]).tolist() == [[2]], "pipeline output"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 4}, "size"),
        ({"out_size": 2}, "out_size"),
        ({"detect_every": 0}, "detect_every"),
        ({"n_frames": 0}, "n_frames"),
        ({"select": "one"}, "select"),
        ({"carry": "jump"}, "carry"),
        ({"grayscale": "yes"}, "grayscale"),
        ({"min_face_size": 2}, "min_face_size"),
        ({"cache_dir": 3}, "cache_dir"),
    ],
)
def test_bad_settings_fail_in_fit(kwargs, message):
    prep = FacePreprocessor(**kwargs)  # __init__ only stores
    with pytest.raises(InputError, match=message):
        prep.fit()


@pytest.mark.parametrize(
    ("X", "message"),
    [
        ("clip.avi", "single path"),
        (np.zeros((3, 32, 32, 3), np.uint8), "wrap"),
        ([42], r"X\[0\]"),
        ([np.zeros((3, 32), np.uint8)], r"X\[0\]"),
        ([np.zeros((2, 32, 32, 3), np.float32)], "dtype"),
    ],
)
def test_bad_videos(X, message):
    with pytest.raises(InputError, match=message):
        FacePreprocessor().fit().transform(X)


@pytest.mark.parametrize("cached", [False, True])
def test_missing_video_file(tmp_path, cached):
    # with a cache the file is hashed first: the same error, not open()'s FileNotFoundError
    prep = FacePreprocessor(cache_dir=tmp_path / "cache" if cached else None).fit()
    with pytest.raises(VideoReadError, match="missing.avi' does not exist"):
        prep.transform([tmp_path / "missing.avi"])


@pytest.mark.slow
def test_all_ckplus_clips_have_a_face_in_99_percent_of_frames(shared_data):
    """All 40 CK+ clips (684 frames), detection on every frame, then tracked at k=5."""
    paths = sorted((shared_data / "ckplus_emopy" / "videos").glob("*.avi"))
    assert len(paths) == 40, f"expected 40 CK+ clips, found {len(paths)}"
    start = time.perf_counter()
    results = FacePreprocessor(out_size=48, grayscale=True).fit_transform(paths)
    seconds = time.perf_counter() - start
    frames = sum(r.frames_read for r in results)
    found = sum(r.frames_read - r.n_missing for r in results)
    assert frames == 684, f"684 frames expected, read {frames}"
    assert found / frames >= 0.99, f"a face in {found}/{frames} frames"
    jitter = [
        eye_shift(r.keypoints[i + 1], r.keypoints[i])
        for r in results
        for i in range(len(r.keypoints) - 1)
    ]
    tracked = FacePreprocessor(out_size=48, grayscale=True, detect_every=5).fit_transform(paths)
    errors = []
    for rt, rd in zip(tracked, results, strict=True):
        detected = dict(zip(rd.frame_indices.tolist(), rd.keypoints, strict=True))
        errors += [
            eye_shift(kp, detected[i])
            for i, kp in zip(rt.frame_indices.tolist(), rt.keypoints, strict=True)
            if i in detected
        ]
    print(
        f"\nCK+ 40 clips: face in {found}/{frames} frames ({found / frames:.2%}) in "
        f"{seconds:.1f} s; eye jitter between consecutive frames (128 crop px): mean "
        f"{np.mean(jitter):.2f}, median {np.median(jitter):.2f}, p95 "
        f"{np.percentile(jitter, 95):.2f}; tracked k=5 vs per-frame eye error: mean "
        f"{np.mean(errors):.2f}, p95 {np.percentile(errors, 95):.2f}"
    )
    assert sum(r.frames_read - r.n_missing for r in tracked) >= 0.99 * frames, "tracked rate"
    assert np.mean(errors) < 2.0, f"tracked eye error {np.mean(errors):.2f} crop px"


def test_detector_defaults_agree():
    """The flat detector settings of FacePreprocessor must default as FaceDetector does."""
    import inspect

    from kemo.faces import FaceDetector

    detector = inspect.signature(FaceDetector).parameters
    prep = inspect.signature(FacePreprocessor).parameters
    for name, parameter in detector.items():
        assert name in prep, f"FacePreprocessor lacks the detector setting {name}"
        assert prep[name].default == parameter.default, (
            f"{name}: FacePreprocessor default {prep[name].default!r}, "
            f"FaceDetector default {parameter.default!r}"
        )


def test_cropped_sequences_feed_the_recogniser(shared_data):
    """Real CK+48 sequences (48x48 apex crops) wrapped by ``VideoFaces.from_faces`` go through
    the pretrained recogniser as they are: its labels are mostly right, as on CK+48 faces."""
    from kemo.datasets import CLASS_NAMES, load_ckplus
    from kemo.recognizer import VideoEmotionRecognizer

    ck = load_ckplus(shared_data, kind="ckplus48")
    starts = np.sort(np.unique(ck.seq_ids, return_index=True)[1])
    happy = [s for s in starts if ck.labels[s] == CLASS_NAMES.index("Happy")][:4]
    surprise = [s for s in starts if ck.labels[s] == CLASS_NAMES.index("Surprise")][:4]
    videos = [VideoFaces.from_faces(ck.images[s:s + 3], source=ck.seq_ids[s])
              for s in happy + surprise]
    assert videos[0].faces.shape == (3, 48, 48) and list(videos[0].frame_indices) == [0, 1, 2]
    assert len(videos[0].track_rows()) == 1
    predicted = VideoEmotionRecognizer().predict(videos)
    truth = ck.labels[happy + surprise]
    assert np.mean(predicted == truth) >= 0.75, (predicted, truth)


@pytest.mark.parametrize("faces", [np.zeros((0, 48, 48), np.uint8),
                                   np.zeros((3, 48, 48), np.float32),
                                   np.zeros((3, 48, 48, 4), np.uint8),
                                   np.zeros((48, 48), np.uint8)])
def test_cropped_sequences_are_checked(faces):
    with pytest.raises(InputError, match="uint8 stack"):
        VideoFaces.from_faces(faces)


def test_chunks_join_into_the_whole_video(clips):
    prep = FacePreprocessor(out_size=48, grayscale=True, detect_every=5).fit()
    whole = prep.transform([clips[1]])[0]
    parts = list(prep.iter_chunks(clips[1], chunk_frames=4))
    assert [p.frames_read for p in parts[:-1]] == [4] * (len(parts) - 1), "4 frames a piece"
    assert len(parts) == -(-whole.frames_read // 4), f"{len(parts)} pieces"
    joined = VideoFaces.concatenate(parts)
    for name in VideoFaces._ARRAYS:
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name),
                                      err_msg=f"{name}: the pieces joined are the whole video")
    assert joined.frames_read == whole.frames_read and joined.source == whole.source


def test_without_faces_keeps_the_rest(shared_data):
    bgr = cv2.imread(str(shared_data / "faces" / "fr_two_people.jpg"))
    video = np.stack([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)] * 2)
    found = FacePreprocessor(select="all", out_size=48).fit_transform([video])[0]
    light = found.without_faces()
    assert light.faces.shape == (4, 0, 0, 3) and light.faces.nbytes == 0, light.faces.shape
    assert len(light) == 4 and light.has_faces, "the faces are still counted"
    assert [r.tolist() for r in light.track_rows()] == [r.tolist() for r in found.track_rows()]
    np.testing.assert_array_equal(light.boxes, found.boxes)


def test_chunks_are_checked(clips):
    prep = FacePreprocessor(out_size=48).fit()
    with pytest.raises(InputError, match="chunk_frames"):
        next(prep.iter_chunks(clips[0], chunk_frames=0))
    with pytest.raises(InputError, match="must be a video path"):
        next(prep.iter_chunks([clips[0]]))
    with pytest.raises(InputError, match="at least one"):
        VideoFaces.concatenate([])
