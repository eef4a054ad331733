"""The public API, pinned: kemo's names, the documented import paths, and the size of modules.

A name added to or removed from ``kemo`` fails here until ``PUBLIC`` is updated on purpose; a
module moved without its old import path kept fails here too.
"""

import importlib
import inspect
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import kemo

# Every public name of ``kemo`` (``kemo.__all__``), sorted.
PUBLIC = [
    "Aggregator", "BackendError", "BiResidualLSTM", "C3D", "CLASS_NAMES", "ClipFeatureExtractor",
    "DataNotFoundError", "EvaluationReport", "FaceDetector", "FaceEmotionClassifier",
    "FacePreprocessor", "FaceTracker", "FrameFeatureExtractor", "FusionClassifier", "InputError",
    "KEYPOINT_NAMES", "KemoError", "LinearSVMClassifier", "LiveFace", "LiveResult", "LiveStream",
    "NoFaceError", "NoFaceWarning", "ResNet10", "SequenceClassifier", "TrackResult", "VGGFace",
    "Video", "VideoAnalysis", "VideoEmotionRecognizer", "VideoFaces", "VideoFailure",
    "VideoReadError", "VideoWriteError", "Views", "WeightsError", "WeightsInfo", "aggregation",
    "align_face", "alignment_matrix", "classifier", "classifiers", "clip_windows", "compare",
    "data_home", "datasets", "errors", "evaluate", "evaluation", "eye_targets", "face_classifier",
    "faces", "features", "fit_faces", "fusion", "held_out_proba", "live", "load_afew",
    "load_ckplus", "load_fer2013", "models", "plotting", "protocols", "read_frames", "recognizer",
    "select_view", "splits_for", "svm", "temporal", "timeline", "to_sequences", "training",
    "video", "weights", "write_video",
]

# Import paths that README.md, docs/ and the tutorials use, or that older kemo code relies on:
# module -> names it must give.
DOCUMENTED = {
    "kemo.recognizer": ["VideoEmotionRecognizer", "VideoAnalysis", "TrackResult",
                        "VideoFailure"],
    "kemo.face_classifier": ["FaceEmotionClassifier", "DEFAULT_WEIGHTS"],
    "kemo.svm": ["LinearSVMClassifier"],
    "kemo.classifier": ["FaceEmotionClassifier", "DEFAULT_WEIGHTS"],  # the old name
    "kemo.classifiers": ["LinearSVMClassifier"],  # the old name
    "kemo.cli": ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE",
                 "EXIT_INTERRUPTED", "EXIT_TERMINATED"],
    "kemo.datasets": ["CLASS_NAMES", "load_afew", "load_ckplus", "load_fer2013"],
    "kemo.faces": ["eye_shift", "transform_points"],
    "kemo.features": ["fit_faces"],
    "kemo.models": ["ResNet10", "VGGFace", "clip_windows"],
    "kemo.parallel": ["using"],
    "kemo.plotting": ["plot_class_balance", "plot_detections", "plot_history", "plot_per_class",
                      "plot_segments", "plot_timeline", "show_faces"],
    "kemo.protocols": ["cross_validate", "held_out_proba", "splits_for"],
    "kemo.temporal": ["ClipFeatureExtractor", "SequenceClassifier", "to_sequences"],
    "kemo.timeline": ["find_segments", "pool"],
    "kemo.training": ["RECIPES", "Recipe", "evaluate_images", "export_weights",
                      "fit_classifier", "train_fer2013"],
    "kemo.video": ["Video"],
    "kemo.weights": ["get", "names", "register", "search_dirs"],
}

# What ``kemo.recognizer`` gave when it was one module and other code still imports from it
# (kemo's own modules, tests, benchmarks): kept reachable by the package.
RECOGNIZER_INTERNALS = [
    "C3D_DEFAULTS", "FINETUNED_FILE", "FINETUNE_DEFAULTS", "LSTM_DEFAULTS", "MANIFEST",
    "_LinearModel", "_TAPS", "_checksum", "_face_classifier", "_names_of", "_params_from_json",
    "_params_to_json", "_sha256", "_video_fps", "calibration_shortfall", "check_model_folder",
    "check_save_folder",
]

# The old module names that stay as aliases, and the module each one re-exports.
RENAMED = {"kemo.classifier": "kemo.face_classifier", "kemo.classifiers": "kemo.svm"}

MAX_LINES = 800


def test_public_names_are_pinned():
    assert sorted(kemo.__all__) == PUBLIC, (
        f"kemo's public names changed: added {sorted(set(kemo.__all__) - set(PUBLIC))}, "
        f"removed {sorted(set(PUBLIC) - set(kemo.__all__))}; update PUBLIC if on purpose")


@pytest.mark.parametrize("name", sorted(kemo._EXPORTS))
def test_export_is_the_object_of_its_module(name):
    module = importlib.import_module(kemo._EXPORTS[name])
    value = getattr(kemo, name)
    assert value is getattr(module, name), f"kemo.{name} is not {module.__name__}.{name}"
    if inspect.isclass(value) or inspect.isfunction(value):
        home = value.__module__
        assert home == module.__name__ or home.startswith(module.__name__ + "."), (
            f"kemo.{name} is defined in {home}, outside {module.__name__}, which _EXPORTS names")


@pytest.mark.parametrize("name", sorted(kemo._SUBMODULES))
def test_submodule_resolves(name):
    assert getattr(kemo, name) is importlib.import_module(f"kemo.{name}"), (
        f"kemo.{name} is not the module kemo.{name}")


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_documented_import_path(module):
    loaded = importlib.import_module(module)
    missing = [name for name in DOCUMENTED[module] if not hasattr(loaded, name)]
    assert not missing, f"from {module} import ... no longer gives {missing}"
    for name in DOCUMENTED[module]:
        if name in kemo._EXPORTS:
            assert getattr(loaded, name) is getattr(kemo, name), (
                f"{module}.{name} is another object than kemo.{name}")


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_old_module_names_give_the_same_objects(old):
    module, new = importlib.import_module(old), importlib.import_module(RENAMED[old])
    assert module.__all__, f"{old} re-exports nothing"
    for name in module.__all__:
        assert getattr(module, name) is getattr(new, name), f"{old}.{name} is not {new}.{name}"
    assert RENAMED[old] in module.__doc__, f"{old}'s docstring should name {RENAMED[old]}"


def test_recognizer_package_keeps_the_names_others_import():
    recognizer = importlib.import_module("kemo.recognizer")
    missing = [name for name in RECOGNIZER_INTERNALS if not hasattr(recognizer, name)]
    assert not missing, f"kemo.recognizer lost {missing}"


def test_command_entry_points():
    scripts = entry_points(group="console_scripts", name="kemo")
    if not scripts:
        pytest.skip("kemo is not installed (no console script to check)")
    from kemo.cli import main

    assert next(iter(scripts)).load() is main, "the kemo command is not kemo.cli:main"
    for module in ("kemo", "kemo.cli"):
        done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.startswith("kemo "), (
            f"python -m {module} --version: {done.returncode} {done.stdout} {done.stderr}")


def long_modules(root, limit=MAX_LINES):
    """``{path: lines}`` of the ``.py`` files under ``root`` longer than ``limit`` lines."""
    sizes = {path: len(path.read_text(encoding="utf-8").splitlines())
             for path in sorted(Path(root).rglob("*.py"))}
    return {str(path.relative_to(root)): n for path, n in sizes.items() if n > limit}


def test_no_module_is_too_long():
    too_long = long_modules(Path(kemo.__file__).parent)
    assert not too_long, (f"files over {MAX_LINES} lines: {too_long}; split them by what "
                          f"they hold")


def test_long_module_check_finds_a_long_file(tmp_path):
    (tmp_path / "short.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert long_modules(tmp_path) == {"pkg/long.py": MAX_LINES + 1}, "the check misses files"
