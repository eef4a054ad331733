"""Shared fixtures: where the real data lives, skipping cleanly when it does not."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

# Tests may read the read-only shared data next to the checkout; the library
# itself never looks there (users pass paths or set KEMO_DATA).
SHARED_DATA = Path(
    os.environ.get("KEMO_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test, excluded by default")


@pytest.fixture(scope="session")
def shared_data():
    """Path of the shared real data, or skip when this machine has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set KEMO_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def reproduce():
    """``benchmarks/reproduce.py`` imported as a module (it is a script, not a package)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"
    spec = importlib.util.spec_from_file_location("reproduce", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
