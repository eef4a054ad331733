"""kemo.datasets: FER2013 in its three forms, AFEW layout, CK+, data location and errors."""

import re

import cv2
import numpy as np
import pytest

from kemo.datasets import CLASS_NAMES, data_home, load_afew, load_ckplus, load_fer2013
from kemo.errors import DataNotFoundError, InputError
from kemo.video import Video, write_video

# Per-class counts from fer2013/README.md (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral).
FER_COUNTS = {
    "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "PublicTest": [467, 56, 496, 895, 653, 415, 607],
}
CK_NAME_TO_ID = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5}


@pytest.fixture(scope="module")
def fer(shared_data):
    return load_fer2013(shared_data / "fer2013" / "fer2013.npz")


def test_class_names_match_the_data_files(shared_data):
    assert CLASS_NAMES == ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"), (
        f"CLASS_NAMES {CLASS_NAMES}")
    with np.load(shared_data / "fer2013" / "fer2013.npz") as npz:
        assert tuple(npz["class_names"].tolist()) == CLASS_NAMES, "npz class order differs"


# ------------------------------------------------------------------ FER2013, shared npz


def test_fer2013_npz_counts(fer):
    assert fer.images.shape == (28709 + 3589, 48, 48), f"shape {fer.images.shape}"
    assert fer.images.dtype == np.uint8, f"dtype {fer.images.dtype}"
    assert fer.labels.dtype == np.int64, f"labels dtype {fer.labels.dtype}"
    assert fer.class_names == list(CLASS_NAMES), f"class_names {fer.class_names}"
    for usage, counts in FER_COUNTS.items():
        got = np.bincount(fer.labels[fer.usage == usage], minlength=7).tolist()
        assert got == counts, f"{usage}: per-class counts {got} != README {counts}"
    assert "28709" in fer.DESCR and "fer2013.npz" in fer.DESCR, f"DESCR {fer.DESCR!r}"


@pytest.mark.parametrize("usage", ["Training", "PublicTest"])
def test_fer2013_subset(shared_data, fer, usage):
    part = load_fer2013(shared_data / "fer2013", subset=usage)
    assert set(part.usage.tolist()) == {usage}, f"usage values {set(part.usage.tolist())}"
    assert len(part.labels) == sum(FER_COUNTS[usage]), f"{usage}: {len(part.labels)} images"
    assert np.array_equal(part.images, fer.images[fer.usage == usage]), "subset rows differ"


def test_fer2013_subset_list_and_root_via_env(shared_data, fer, monkeypatch):
    monkeypatch.setenv("KEMO_DATA", str(shared_data))
    both = load_fer2013(subset=["PublicTest", "Training"])
    assert np.array_equal(both.labels, fer.labels), "KEMO_DATA root load differs from the file"


def test_fer2013_subset_absent_from_data(shared_data):
    with pytest.raises(InputError, match="PrivateTest.*Training"):
        load_fer2013(shared_data / "fer2013", subset="PrivateTest")


@pytest.mark.parametrize("subset", ["train", "Validation", [], ["Training", "test"], 3])
def test_fer2013_unknown_subset(shared_data, subset):
    with pytest.raises(InputError, match="unknown subset"):
        load_fer2013(shared_data, subset=subset)


# ------------------------------------------------------------------ FER2013, files the tests make


def make_records():
    """(usage, label, name, 48x48 image) records: 2 per class per usage, smooth images."""
    rng = np.random.default_rng(0)
    ramp = np.add.outer(np.arange(48), np.arange(48)).astype(float)
    records = []
    for usage in ("Training", "PublicTest", "PrivateTest"):
        for label in range(7):
            for k in range(2):
                image = np.clip(ramp * rng.uniform(0.5, 2.5) + rng.integers(0, 60), 0, 255)
                records.append((usage, label, f"{usage}_{label}{k}", image.astype(np.uint8)))
    return records


def sort_key(record):
    usage, label, name, _ = record
    return (usage != "Training", label, name)  # train/ before test/, then class, then name


def write_csv(path, records, header="emotion,pixels,Usage"):
    lines = [header]
    for usage, label, _, image in records:
        lines.append(f'{label},"{" ".join(map(str, image.ravel()))}",{usage}')
    path.write_text("\n".join(lines) + "\n")
    return path


def write_tree(root, records, suffix, prefix=True):
    for i, (usage, label, name, image) in enumerate(records):
        folder = root / ("train" if usage == "Training" else "test") / CLASS_NAMES[label].lower()
        folder.mkdir(parents=True, exist_ok=True)
        stem = name if prefix else f"{i:05d}"
        params = [cv2.IMWRITE_JPEG_QUALITY, 100] if suffix == ".jpg" else []
        cv2.imwrite(str(folder / f"{stem}{suffix}"), image, params)
    return root


@pytest.fixture(scope="module")
def records():
    return sorted(make_records(), key=sort_key)


@pytest.fixture(scope="module")
def expected(records):
    return (np.stack([r[3] for r in records]), np.array([r[1] for r in records]),
            np.array([r[0] for r in records]))


def assert_bunch(data, images, labels, usage, what):
    assert data.images.dtype == np.uint8, f"{what}: images dtype {data.images.dtype}"
    assert data.labels.dtype == np.int64, f"{what}: labels dtype {data.labels.dtype}"
    assert np.array_equal(data.images, images), f"{what}: images differ"
    assert np.array_equal(data.labels, labels), f"{what}: labels differ"
    assert np.array_equal(data.usage, usage), f"{what}: usage differs"
    assert data.class_names == list(CLASS_NAMES), f"{what}: class_names"


def test_fer2013_csv_and_png_tree_load_alike(tmp_path, records, expected):
    from_csv = load_fer2013(write_csv(tmp_path / "fer2013.csv", records))
    from_tree = load_fer2013(write_tree(tmp_path / "tree", records, ".png"))
    assert_bunch(from_csv, *expected, "csv")
    assert_bunch(from_tree, *expected, "png tree")
    for key in ("images", "labels", "usage"):
        assert np.array_equal(from_csv[key], from_tree[key]), f"csv and tree differ in {key}"


def test_fer2013_csv_found_in_folder_and_root(tmp_path, records, expected, monkeypatch):
    write_csv((tmp_path / "fer2013").mkdir() or tmp_path / "fer2013" / "fer2013.csv", records)
    assert_bunch(load_fer2013(tmp_path / "fer2013"), *expected, "csv folder")
    monkeypatch.setenv("KEMO_DATA", str(tmp_path))
    assert_bunch(load_fer2013(), *expected, "KEMO_DATA root")


def test_fer2013_csv_icml_header_variant(tmp_path, records, expected):
    # icml_face_data.csv: other column order, spaces after the commas of the header
    lines = ["emotion, Usage, pixels"]
    lines += [f'{r[1]},{r[0]},"{" ".join(map(str, r[3].ravel()))}"' for r in records]
    (tmp_path / "icml.csv").write_text("\n".join(lines) + "\n")
    assert_bunch(load_fer2013(tmp_path / "icml.csv"), *expected, "icml csv")


def test_fer2013_jpg_tree_like_kaggle(tmp_path, records, expected):
    data = load_fer2013(write_tree(tmp_path, records, ".jpg"), subset=["PublicTest", "Training"])
    keep = expected[2] != "PrivateTest"
    assert np.array_equal(data.labels, expected[1][keep]), "jpg tree labels"
    assert np.array_equal(data.usage, expected[2][keep]), "jpg tree usage from file prefixes"
    error = np.abs(data.images.astype(int) - expected[0][keep]).mean()
    assert error < 2, f"jpg tree pixels differ by {error:.2f} grey levels on average"


def test_fer2013_tree_without_prefixes_gives_test_usage(tmp_path, records):
    data = load_fer2013(write_tree(tmp_path, records, ".png", prefix=False))
    assert sorted(set(data.usage.tolist())) == ["Test", "Training"], f"{set(data.usage)}"
    assert (data.usage == "Test").sum() == 28, "2 x 7 x 2 test images"
    assert len(load_fer2013(tmp_path, subset="Test").labels) == 28, "subset Test"


def test_fer2013_npz_written_by_user(tmp_path, expected):
    images, labels, usage = expected
    np.savez(tmp_path / "mine.npz", pixels=images, labels=labels.astype(np.int8), usage=usage)
    assert_bunch(load_fer2013(tmp_path / "mine.npz"), *expected, "user npz")


# ------------------------------------------------------------------ FER2013 errors


def test_fer2013_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError, match=re.escape(str(missing))):
        load_fer2013(missing)


def test_fer2013_folder_without_data(tmp_path):
    with pytest.raises(DataNotFoundError, match="(?s)FER2013.*layout"):
        load_fer2013(tmp_path)


def test_no_path_and_no_env(monkeypatch):
    monkeypatch.delenv("KEMO_DATA", raising=False)
    for loader in (load_fer2013, load_afew, load_ckplus):
        with pytest.raises(DataNotFoundError) as info:
            loader()
        message = str(info.value)
        assert "KEMO_DATA" in message and "path" in message, f"{loader.__name__}: {message}"
        assert "fer2013/fer2013.npz" in message, f"layout missing: {message}"


def test_env_pointing_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv("KEMO_DATA", str(tmp_path / "gone"))
    with pytest.raises(DataNotFoundError, match="KEMO_DATA.*gone"):
        data_home()


def test_data_home_explicit_path_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("KEMO_DATA", str(tmp_path))
    other = tmp_path / "other"
    other.mkdir()
    assert data_home(other) == other, "explicit path must win over KEMO_DATA"
    assert data_home() == tmp_path, "KEMO_DATA when no path is given"


@pytest.mark.parametrize(("text", "word"), [
    ("emotion,pixels\n0,\"1 2\"\n", "header"),
    ("emotion,pixels,Usage\n0,\"1 2 3\",Training\n", "line 2.*2304"),
    ("emotion,pixels,Usage\n0,\"" + "300 " * 2304 + "\",Training\n", "line 2.*0..255"),
    ("emotion,pixels,Usage\nx,\"" + "3 " * 2304 + "\",Training\n", "line 2"),
    ("emotion,pixels,Usage\n9,\"" + "3 " * 2304 + "\",Training\n", "label 9"),
    ("emotion,pixels,Usage\n1,\"" + "3 " * 2304 + "\",Train\n", "Usage values"),
])
def test_fer2013_bad_csv(tmp_path, text, word):
    path = tmp_path / "fer2013.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=word) as info:
        load_fer2013(path)
    assert str(path) in str(info.value), f"file not named: {info.value}"


def test_fer2013_bad_npz(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((2, 48, 48), np.uint8))
    with pytest.raises(InputError, match=r"lacks.*pixels"):
        load_fer2013(tmp_path / "a.npz")
    (tmp_path / "b.npz").write_bytes(b"not an archive")
    with pytest.raises(InputError, match="b.npz"):
        load_fer2013(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", pixels=np.zeros((2, 32, 32), np.uint8), labels=[0, 1],
             usage=["Training"] * 2)
    with pytest.raises(InputError, match=r"\(N, 48, 48\)"):
        load_fer2013(tmp_path / "c.npz")


def test_fer2013_bad_tree(tmp_path):
    folder = tmp_path / "train" / "happy"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), np.zeros((40, 40), np.uint8))
    with pytest.raises(InputError, match="a.png.*48x48"):
        load_fer2013(tmp_path)
    (folder / "a.png").write_bytes(b"broken")
    with pytest.raises(InputError, match="a.png.*not a readable image"):
        load_fer2013(tmp_path)
    (folder / "a.png").unlink()
    (tmp_path / "train" / "contempt").mkdir()
    with pytest.raises(InputError, match="contempt"):
        load_fer2013(tmp_path)


# ------------------------------------------------------------------ AFEW layout


@pytest.fixture(scope="module")
def afew_root(tmp_path_factory):
    """A fake AFEW 7.0 tree: tiny generated avi clips, plus entries the loader must ignore."""
    root = tmp_path_factory.mktemp("data") / "AFEW"
    clip = np.zeros((3, 16, 16, 3), np.uint8)
    layout = {"Train_AFEW": {"Angry": 2, "Happy": 1, "Neutral": 2, "Surprise": 1},
              "Val_AFEW": {"Sad": 1, "fear": 2, "Disgust": 1}}
    for subset, classes in layout.items():
        for emotion, n in classes.items():
            (root / subset / emotion).mkdir(parents=True)
            for k in range(n):
                write_video(root / subset / emotion / f"{k:06d}.avi", clip, fps=25)
            (root / subset / emotion / "notes.txt").write_text("not a clip")
    (root / "Train_AFEW" / "AlignedFaces_LBPTOP_Points").mkdir()
    return root


def test_load_afew(afew_root):
    afew = load_afew(afew_root)
    assert afew.class_names == list(CLASS_NAMES), "class names"
    assert afew.labels.tolist() == [0, 0, 3, 5, 6, 6, 1, 2, 2, 4], f"labels {afew.labels}"
    assert afew.subset.tolist() == ["Train"] * 6 + ["Val"] * 4, f"subset {afew.subset}"
    for path, label in zip(afew.paths, afew.labels, strict=True):
        assert f"/{CLASS_NAMES[label].lower()}/" in path.lower(), f"{path} labelled {label}"
        with Video(path) as video:
            assert video.frame_count == 3, f"{path}: {video.frame_count} frames"


def test_load_afew_subset_and_env_root(afew_root, monkeypatch):
    monkeypatch.setenv("KEMO_DATA", str(afew_root.parent))
    val = load_afew(subset="Val")
    assert val.labels.tolist() == [1, 2, 2, 4], f"Val labels {val.labels}"
    assert set(val.subset.tolist()) == {"Val"}, "Val only"


def test_load_afew_errors(tmp_path, afew_root):
    with pytest.raises(InputError, match="unknown subset"):
        load_afew(afew_root, subset="Test")
    with pytest.raises(DataNotFoundError, match="AFEW"):
        load_afew(tmp_path)
    (tmp_path / "Val_AFEW" / "Happy").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="no clips"):
        load_afew(tmp_path)
    with pytest.raises(InputError, match="Train_AFEW"):
        load_afew(tmp_path, subset="Train")


# ------------------------------------------------------------------ CK+


def test_load_ckplus_videos(shared_data):
    ck = load_ckplus(shared_data / "ckplus_emopy")
    assert len(ck.paths) == 40, f"{len(ck.paths)} clips"
    for path, label, subject, seq in zip(ck.paths, ck.labels, ck.subjects, ck.seq_ids,
                                         strict=True):
        stem = path.rsplit("/", 1)[1].removesuffix(".avi")
        assert CK_NAME_TO_ID[stem.rsplit("_", 1)[1]] == label, f"{path}: label {label}"
        assert stem.startswith(f"{seq}_") and seq.startswith(f"{subject}_"), f"{path}: ids"
    assert len(set(ck.subjects.tolist())) == 10, f"subjects {sorted(set(ck.subjects))}"
    assert np.bincount(ck.labels).tolist() == [4, 9, 5, 8, 5, 9], "sequences per class (README)"
    same = load_ckplus(shared_data / "ckplus_emopy" / "videos")
    assert np.array_equal(same.paths, ck.paths), "videos folder itself gives the same list"


def test_load_ckplus48(shared_data):
    ck48 = load_ckplus(shared_data / "ckplus48", kind="ckplus48")
    assert ck48.images.shape == (927, 48, 48), f"{ck48.images.shape} without contempt"
    assert ck48.images.dtype == np.uint8, "dtype"
    assert set(ck48.labels.tolist()) == set(range(6)), f"labels {set(ck48.labels)}"
    assert len(ck48.subjects) == len(ck48.seq_ids) == 927, "per-image ids"
    full = load_ckplus(shared_data, kind="ckplus48", include_contempt=True)
    assert full.images.shape == (981, 48, 48), f"{full.images.shape} with contempt"
    assert (full.labels == -1).sum() == 54, "54 contempt images"
    assert len(set(full.subjects.tolist())) == 118, "118 subjects"


def test_ckplus_clip_labels_agree_with_ckplus48(shared_data):
    clips = load_ckplus(shared_data, kind="videos")
    ck48 = load_ckplus(shared_data / "ckplus48" / "ckplus48.npz", kind="ckplus48")
    label_of = dict(zip(ck48.seq_ids.tolist(), ck48.labels.tolist(), strict=True))
    for seq, label in zip(clips.seq_ids, clips.labels, strict=True):
        assert label_of[seq] == label, f"{seq}: clip label {label}, CK+48 {label_of[seq]}"


def test_load_ckplus_errors(tmp_path, shared_data):
    with pytest.raises(InputError, match="unknown kind"):
        load_ckplus(shared_data, kind="frames")
    (tmp_path / "S001_002_joy.avi").write_bytes(b"x")
    with pytest.raises(InputError, match="S001_002_joy.avi"):
        load_ckplus(tmp_path)
    with pytest.raises(DataNotFoundError, match="CK\\+48"):
        load_ckplus(tmp_path, kind="ckplus48")


def test_load_ckplus_contempt_clip_kept_on_request(tmp_path):
    for name in ("S001_001_contempt.avi", "S001_002_happy.avi"):
        (tmp_path / name).write_bytes(b"x")
    assert load_ckplus(tmp_path).labels.tolist() == [3], "contempt dropped by default"
    kept = load_ckplus(tmp_path, include_contempt=True)
    assert kept.labels.tolist() == [-1, 3], f"labels {kept.labels}"
