"""pytest --nbmake runs the tutorials; without their data they are skipped, with the reason.

The notebooks find their data the same way this file does: the ``KEMO_DATA`` environment
variable when set, else ``shared/data`` next to the clone (``<repo>/../shared/data``). On a
fresh clone without the data, ``pytest`` reports every notebook as skipped (``-rs`` prints the
reason) instead of failing; where the data is present (as in CI) they run, in QUICK mode.
"""

import os
from pathlib import Path

import pytest

#: The data sets the tutorials read, as folders of the data folder (see tutorial 01).
NEEDED = ("fer2013", "ckplus_emopy", "ckplus48", "faces")


def data_folder():
    """Where the notebooks look for data: ``KEMO_DATA``, else ``<repo>/../shared/data``."""
    env = os.environ.get("KEMO_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def missing_data():
    """Why the notebooks cannot run here (a sentence), or None when the data is there."""
    folder = data_folder()
    source = "KEMO_DATA" if os.environ.get("KEMO_DATA") else "the shared data next to the clone"
    if not folder.is_dir():
        return (f"tutorial data not found: {folder} ({source}) is not a folder; set KEMO_DATA "
                f"to a folder holding {', '.join(n + '/' for n in NEEDED)}")
    absent = [name for name in NEEDED if not (folder / name).exists()]
    if absent:
        return (f"tutorial data incomplete: {folder} ({source}) has no "
                f"{', '.join(n + '/' for n in absent)}")
    return None


def pytest_collection_modifyitems(config, items):
    """Mark the notebook items (collected by nbmake) skipped when their data is missing."""
    notebooks = [item for item in items if item.path.suffix == ".ipynb"]
    reason = missing_data() if notebooks else None
    if reason:
        for item in notebooks:
            item.add_marker(pytest.mark.skip(reason=reason))
