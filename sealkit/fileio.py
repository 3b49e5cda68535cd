"""Atomic file writes: a crash or Ctrl-C never leaves a half-written seal, adapter or checkpoint.

Write to a temporary file in the same folder, flush it to disk, then `os.replace` it over the target.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def check_output_path(path: str | Path, flag: str) -> Path:
    """Fail now, with one line, if `path` could not be written later (a folder, under a file, read-only).

    Long work (training, compiling) checks its outputs first, so it never ends with nothing saved.
    """
    from sealkit.errors import OutputPathError

    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag} {path} is a folder; give a file name")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"{flag} {path} cannot be created: {ancestor} is a file, not a folder")
    try:  # the real test: create (and remove) a file where the output will go
        fd, probe = tempfile.mkstemp(prefix=".sealkit-probe.", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"{flag} {path} cannot be written ({exc.strerror or exc} in {ancestor}); choose another location") from None
    return path


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove temp files that a killed writer (kill -9) left next to `path`; returns what was removed."""
    path = Path(path)
    removed = []
    for stale in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else []:
        try:
            stale.unlink()
            removed.append(stale)
        except OSError:
            pass
    return removed
