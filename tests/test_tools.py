"""tools/: FER2013 packed for a lent GPU machine and unpacked there, without a pixel lost."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kemo.datasets import load_fer2013

PACK = Path(__file__).resolve().parents[1] / "tools" / "fer2013_pack.py"


def _run(*args):
    return subprocess.run([sys.executable, str(PACK), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def subset(shared_data, tmp_path_factory):
    """300 real faces of each usage with their FER+ votes, as a fer2013 folder."""
    folder = tmp_path_factory.mktemp("fer2013")
    with np.load(shared_data / "fer2013" / "fer2013.npz") as data:
        keep = np.concatenate([np.flatnonzero(data["usage"] == u)[:300]
                               for u in ("Training", "PublicTest")])
        np.savez(folder / "fer2013.npz", **{k: data[k][keep] for k in
                                            ("pixels", "labels", "usage", "fer_row")})
    (folder / "fer2013new.csv").write_bytes(
        (shared_data / "fer2013" / "fer2013new.csv").read_bytes())
    return folder


def test_pack_and_unpack_give_back_every_pixel(subset, tmp_path):
    done = _run("pack", subset, "--out", tmp_path / "packed", "--parts", "3")
    assert done.returncode == 0, done.stderr
    parts = sorted((tmp_path / "packed").iterdir())
    assert [p.name for p in parts] == ["part0", "part1", "part2"], parts
    raw = (subset / "fer2013.npz").stat().st_size
    packed = sum(f.stat().st_size for p in parts for f in p.glob("*.webp"))
    assert packed < 0.85 * raw, f"mosaics {packed} bytes against {raw} raw"
    done = _run("unpack", *reversed(parts), "--out", tmp_path / "fer")
    assert done.returncode == 0 and "checksum verified" in done.stdout, done.stderr
    before = load_fer2013(subset, ferplus=True)
    after = load_fer2013(tmp_path / "fer", ferplus=True)
    np.testing.assert_array_equal(after.images, before.images)
    np.testing.assert_array_equal(after.labels, before.labels)
    np.testing.assert_array_equal(after.usage, before.usage)
    np.testing.assert_array_equal(after.ferplus, before.ferplus, err_msg="FER+ votes travel")


def test_unpack_refuses_a_missing_part_or_changed_pixels(subset, tmp_path):
    assert _run("pack", subset, "--out", tmp_path, "--parts", "2").returncode == 0
    done = _run("unpack", tmp_path / "part0", "--out", tmp_path / "fer")
    assert done.returncode != 0 and "pass every part folder" in done.stderr, done.stderr
    import cv2

    mosaic = tmp_path / "part1" / "fer2013.1.webp"
    image = cv2.imread(str(mosaic), cv2.IMREAD_GRAYSCALE)
    image[0, 0] ^= 0xFF
    cv2.imwrite(str(mosaic), image, [cv2.IMWRITE_WEBP_QUALITY, 101])
    done = _run("unpack", tmp_path / "part0", tmp_path / "part1", "--out", tmp_path / "fer")
    assert done.returncode != 0 and "sha256 mismatch" in done.stderr, done.stderr
