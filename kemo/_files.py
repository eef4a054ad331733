"""Files: atomic writes, and a file's stamp for in-memory caches.

Atomic writes: a temporary file next to the target, renamed over it once complete. A reader
sees either the old complete file or the new one, never half of one. A process killed while
writing leaves only its temporary file, named ``.{target name}.{pid}-{token}.tmp{suffix}``;
:func:`remove_stale` deletes the ones whose writer is gone, so caches and run folders do not
collect them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from pathlib import Path

#: A temporary file is stale when its process is gone and it is this old (seconds): the age
#: spares writers on other machines sharing the folder, whose process ids mean nothing here.
STALE_AFTER = 600.0

_TEMPORARY = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.tmp")


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path to write; it replaces ``path`` when the block ends without error.

    Args:
        path: the target file (its folder is created if needed).
        suffix: ending the temporary name needs, e.g. ``".keras"`` for ``model.save``.

    Yields:
        pathlib.Path: where to write. On an exception it is deleted and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path, data):
    """Write ``data`` (str, as UTF-8, or bytes) to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def remove_stale(folder):
    """Delete the temporary files that writers killed midway left in ``folder``.

    Only files named by :func:`atomic_path` whose process no longer runs on this machine and
    that were last written :data:`STALE_AFTER` seconds ago or earlier are removed.

    Returns:
        int: how many files were removed.
    """
    removed = 0
    now = time.time()
    for file in Path(folder).glob(".*.tmp*"):
        match = _TEMPORARY.match(file.name)
        if match is None or _running(int(match.group(1))):
            continue
        try:
            if now - file.stat().st_mtime >= STALE_AFTER:
                file.unlink()
                removed += 1
        except FileNotFoundError:  # another process removed it first
            pass
    return removed


def _running(pid):
    """Whether process ``pid`` exists on this machine (always assumed on Windows)."""
    if os.name == "nt":  # os.kill would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def file_stamp(path):
    """A file's identity for a cache key: ``(resolved path, modification time in ns, size)``.

    A file rewritten since gets another stamp, so what was cached from it is read again.

    Raises:
        OSError: the file cannot be examined (e.g. it is missing).
    """
    path = Path(path)
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size
