"""Replacing a file so that a crash never leaves it half-written: the engine's one way to write one.

The new contents go to a temp file beside the target (`.<name>.<random>.part`), are fsynced, and
the temp file is renamed over the target; then the directory is fsynced, so that the rename itself
is durable. A crash at any point leaves the old file (or the new one) and at worst a stray
`.part` file, which `remove_partial_writes` deletes. Checkpoints (checkpoint.py), the run
directory's JSON files (runstore.py, examples.py) and stored sweeps all write through it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PARTIAL_GLOB = ".*.part"  # the temp files of writes a crash interrupted


def _fsync_dir(path: Path) -> None:
    # the rename itself is durable only once the directory entry is on disk
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path, *, previous: Path | None = None) -> Iterator[Path]:
    """A temp file beside `path` for the caller to write. On a clean exit it is fsynced and renamed
    over `path` (with `previous`, the file it replaces is first renamed there, kept as a fallback),
    and the directory fsynced; on an error it is removed and `path` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2).encode())


def remove_partial_writes(folder: Path) -> list[Path]:
    """Delete the temp files of writes that a crash interrupted; only their writer may call this."""
    stray = list(folder.glob(PARTIAL_GLOB)) if folder.is_dir() else []
    for p in stray:
        p.unlink(missing_ok=True)
    return stray
