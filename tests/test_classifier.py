"""FaceEmotionClassifier: the shipped FER2013 model, its card's accuracy, and a plain install."""

import json
import os
import site
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest

from kemo import weights as registry
from kemo.classifier import FaceEmotionClassifier
from kemo.datasets import CLASS_NAMES, load_fer2013
from kemo.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clf():
    return FaceEmotionClassifier()


@pytest.fixture(scope="module")
def publictest(shared_data):
    return load_fer2013(shared_data / "fer2013", subset="PublicTest")


def test_reproduces_model_card_publictest_accuracy(clf, publictest):
    card = registry.get("fer2013_resnet10").metrics
    predicted = clf.predict(publictest.images)
    accuracy = float(np.mean(predicted == publictest.labels))
    assert abs(accuracy - card["fer2013_publictest_accuracy"]) <= 0.005, (
        f"PublicTest accuracy {accuracy:.4f}, card says {card['fer2013_publictest_accuracy']}")


def test_probabilities_for_any_face_size_gray_or_rgb(clf, publictest):
    faces = publictest.images[:6]
    big_rgb = np.stack([np.repeat(np.kron(f, np.ones((3, 3), np.uint8))[..., None], 3, -1)
                        for f in faces])  # 144x144x3
    gray = clf.predict_proba(faces)
    rgb = clf.predict_proba(big_rgb)
    assert gray.shape == (6, 7) and np.allclose(gray.sum(1), 1, atol=1e-4), gray.sum(1)
    assert np.array_equal(gray.argmax(1), rgb.argmax(1)), (gray.argmax(1), rgb.argmax(1))
    assert clf.class_names_ == CLASS_NAMES, clf.class_names_


def test_transform_gives_fc1_features(clf, publictest):
    features = clf.transform(publictest.images[:4])
    assert features.shape == (4, 512), features.shape


@pytest.mark.parametrize("faces, message", [
    (np.full((2, 48, 48), np.nan), "finite"),
    (np.full((2, 48, 48), 300.0), "0..255"),
    (np.zeros((48, 48), np.uint8), "shape"),
])
def test_bad_faces_are_named(clf, faces, message):
    with pytest.raises(InputError, match=message):
        clf.predict_proba(faces)


def test_plain_install_loads_shipped_weights_offline(tmp_path, publictest):
    """`pip install .` (not editable) into a fresh environment, then predict from elsewhere."""
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # The dependencies come from this environment's site-packages, added as plain paths: the
    # .pth files there (the editable install of kemo among them) are not run, so kemo itself
    # can only come from what `pip install .` puts into the new environment.
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    target = subprocess.run([str(python), "-c", where], check=True, capture_output=True,
                            text=True).stdout.strip()
    Path(target, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    offline = {**os.environ, "PIP_NO_INDEX": "1", "PYTHONNOUSERSITE": "1"}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-build-isolation", str(ROOT)],
                   check=True, env=offline, cwd=tmp_path)
    np.save(tmp_path / "faces.npy", publictest.images[:32])
    script = textwrap.dedent("""
        import json, sys, numpy as np, kemo
        clf = kemo.FaceEmotionClassifier()
        proba = clf.predict_proba(np.load("faces.npy"))
        print(json.dumps({"file": kemo.__file__,
                          "weights": str(kemo.weights.fetch("fer2013_resnet10")),
                          "labels": proba.argmax(1).tolist()}))
    """)
    env = {k: v for k, v in offline.items() if k != "PYTHONPATH"}
    env.pop("KEMO_DATA", None)
    out = subprocess.run([str(python), "-c", script], check=True, env=env, cwd=tmp_path,
                         capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("file", "weights"):
        assert result[key].startswith(target), f"{key} came from {result[key]}, not the install"
    expected = FaceEmotionClassifier().predict(publictest.images[:32]).tolist()
    assert result["labels"] == expected, "the installed copy predicts differently"
