"""The top-level namespace: every exported name resolves, lazily."""

import subprocess
import sys

import kemo


def test_every_exported_name_resolves():
    missing = [name for name in kemo.__all__ if getattr(kemo, name, None) is None]
    assert not missing, f"kemo.__all__ names that do not resolve: {missing}"


def test_import_kemo_loads_no_keras():
    code = "import sys, kemo; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], f"import kemo loaded: {out.stdout}"
