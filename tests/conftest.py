"""Shared fixtures: where the real data lives, skipping cleanly when it does not."""

import os
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
