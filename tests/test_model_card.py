"""``benchmarks/fer2013_model_card.py``: the card's commands rebuild the run they describe."""

import dataclasses
import importlib.util
import shlex
import sys
from pathlib import Path

import pytest

from kemo.cli.parser import build_parser
from kemo.cli.train import recipe_from_args


@pytest.fixture(scope="module")
def card():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fer2013_model_card.py"
    sys.path.insert(0, str(path.parent))  # the script imports its neighbours
    spec = importlib.util.spec_from_file_location("fer2013_model_card", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(path.parent))


def _parsed(command):
    words = shlex.split(command, comments=True)
    assert words[:3] == ["kemo", "train", "fer2013"], command
    return build_parser().parse_args(words[1:])


@pytest.mark.parametrize("options", [
    [],
    ["--width", "0.5", "--stem", "full", "--warp", "single"],
    ["--shift", "0", "--zoom", "0", "--erasing", "0.25", "--ema", "0.999"],
    ["--mixup", "0.2", "--cutmix", "1.0", "--warp", "single", "--seed", "3"],
    ["--recipe", "finetune", "--init", "runs/first/best.keras", "--zoom", "0.05"],
])
def test_card_command_rebuilds_the_run(card, options):
    """Every option that changes training comes back from the card's command line."""
    argv = ["train", "fer2013", "--data", "DATA", "--epochs", "12", "--precision",
            "mixed_bfloat16", "--out", "runs/this", *options]
    args = build_parser().parse_args(argv)
    recipe = recipe_from_args(args)
    state = {"epochs": 12, "precision": "mixed_bfloat16", "seed": args.seed,
             "recipe": dataclasses.asdict(recipe)}
    if args.init:
        state["init"] = args.init
    shape = {key: value for key, value in (("width", args.width), ("stem", args.stem))
             if value != build_parser().parse_args(argv[:4]).__dict__[key]}
    again = _parsed(card._command(state, Path("runs/this"), shape))
    assert recipe_from_args(again) == recipe, card._command(state, Path("runs/this"), shape)
    for key in ("epochs", "precision", "seed", "init", "width", "stem", "out"):
        assert getattr(again, key) == getattr(args, key), key


def test_card_command_flags_soft_targets_it_cannot_spell(card):
    state = {"epochs": 4, "precision": "float32", "seed": 0,
             "recipe": dataclasses.asdict(recipe_from_args(
                 build_parser().parse_args(["train", "fer2013", "--data", "D"]))),
             "targets": "0123456789abcdef"}
    command = card._command(state, Path("runs/soft"), {})
    assert "--teacher" in command and "0123456789ab" in command, command


def test_card_command_spells_recorded_soft_targets(card):
    """A run that records its FER+ and teacher options gets them back in the card's command."""
    argv = ["train", "fer2013", "--data", "DATA", "--out", "runs/soft", "--ferplus", "0.2",
            "--teacher", "fer2013_resnet10", "runs/v2/best.keras", "--teacher-weight", "0.4"]
    args = build_parser().parse_args(argv)
    state = {"epochs": args.epochs, "precision": "float32", "seed": 0,
             "recipe": dataclasses.asdict(recipe_from_args(args)), "targets": "0123456789abcdef",
             "soft_targets": {"ferplus": 0.2, "teachers": ["fer2013_resnet10",
                                                           "runs/v2/best.keras"],
                              "teacher_weight": 0.4}}
    command = card._command(state, Path("runs/soft"), {})
    again = _parsed(command)
    assert "#" not in command, command
    for key in ("ferplus", "teacher", "teacher_weight", "out"):
        assert getattr(again, key) == getattr(args, key), (key, command)
