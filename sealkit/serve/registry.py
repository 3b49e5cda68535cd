"""Tasks served from one seal: each task is an adapter file, all of them share the seal's backbone.

    seal = open_seal("model.seal", key="keys/seal.key")
    registry = Registry(seal, "adapters/")
    registry.scan()                          # load every *.adapter in the folder
    registry.get("sentiment").runtime.classify(["a great film"], "text")

Loading N tasks opens the backbone once: every TaskRuntime holds the same Seal, whose sessions and
weights are created once per tower and graph; a task adds only its adapter arrays (kilobytes to a
few MB). An adapter trained for another seal, or a corrupt file, is refused with its reason kept
in `refused`; the tasks already loaded keep working. Never imports torch.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sealkit.adapters.file import parse_adapter_bytes, read_adapter_file
from sealkit.errors import AdapterError, ServeError
from sealkit.fileio import atomic_write_bytes
from sealkit.runtime.seal import Seal
from sealkit.runtime.task import TaskRuntime
from sealkit.serve.errors import TaskNotFoundError

log = logging.getLogger("sealkit.serve")

ADAPTER_SUFFIX = ".adapter"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_uids = itertools.count(1)


def check_task_name(name: str) -> str:
    """Task names are URL path segments: letters, digits, '.', '_' and '-', at most 128 characters."""
    if not NAME_PATTERN.match(name or "") or name.endswith(ADAPTER_SUFFIX):
        raise AdapterError(f"task name {name!r} is not allowed; use letters, digits, '.', '_' and '-' (at most 128, not ending in {ADAPTER_SUFFIX})")
    return name


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


@dataclass
class ServedTask:
    """A task the server holds: its name, its runtime, the file it came from and that file's (mtime, size) when loaded."""

    name: str
    runtime: TaskRuntime
    path: Path
    stamp: tuple[int, int] | None
    uid: int = field(default_factory=lambda: next(_uids))  # new for every (re)load: batch keys and indexes use it
    loaded_at: float = field(default_factory=time.time)

    @property
    def modalities(self) -> list[str]:
        towers = self.runtime.seal.manifest.towers
        return sorted({towers[t].modality for t in self.runtime.towers})

    @property
    def uses_entries(self) -> bool:
        return any(self.runtime.entries(t) for t in self.runtime.towers)

    def describe(self) -> dict[str, Any]:
        rt, meta = self.runtime, self.runtime.meta
        return {
            "name": self.name,
            "task": rt.spec.task,
            "method": rt.method,
            "modality": rt.query_modality,
            "modalities": self.modalities,
            "head": rt.spec.head,
            "classes": rt.class_names,
            "towers": rt.towers,
            "embedding_dim": int(meta.get("out_dim") or 0) or None,
            "entries": self.uses_entries,
            "file": self.path.name,
            "metrics": meta.get("metrics"),
            "loaded_at": self.loaded_at,
        }


@dataclass
class ScanReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # file name -> reason, only files refused by this scan

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.refused)

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "updated": self.updated, "removed": self.removed, "refused": self.refused}


class Registry:
    """The tasks of one seal, by name. Thread-safe; lookups never block on a load."""

    def __init__(self, seal: Seal, adapters_dir: str | Path | None = None):
        self.seal = seal
        self.dir = Path(adapters_dir) if adapters_dir is not None else None
        if self.dir is not None and not self.dir.is_dir():
            raise ServeError(f"the adapters folder {self.dir} does not exist; create it and put TASK{ADAPTER_SUFFIX} files in it")
        self._tasks: dict[str, ServedTask] = {}
        self._lock = threading.RLock()
        # files refused (file name -> (stamp, reason)): not retried until the file changes
        self._refused: dict[str, tuple[tuple[int, int] | None, str]] = {}
        # called as listener(event, task) with event "loaded", "updated" or "unloaded"
        self.listeners: list[Callable[[str, ServedTask], None]] = []

    # --- lookups ------------------------------------------------------------------------------
    def get(self, name: str) -> ServedTask:
        task = self._tasks.get(name)
        if task is None:
            known = ", ".join(sorted(self._tasks)) or "none loaded"
            raise TaskNotFoundError(f"no task named {name!r} (tasks: {known})")
        return task

    def __contains__(self, name: str) -> bool:
        return name in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def tasks(self) -> list[ServedTask]:
        return [self._tasks[n] for n in sorted(self._tasks)]

    @property
    def refused(self) -> dict[str, str]:
        return {name: reason for name, (_, reason) in sorted(self._refused.items())}

    # --- changes ------------------------------------------------------------------------------
    def load(self, path: str | Path, name: str | None = None) -> ServedTask:
        """Load (or replace) a task from an adapter file. Raises AdapterError (AdapterMismatchError for another seal)."""
        path = Path(path)
        name = check_task_name(name or path.name.removesuffix(ADAPTER_SUFFIX))
        stamp = _stamp(path)
        file = read_adapter_file(path, seal_id=self.seal.seal_id)  # refuses another seal's adapter before any work
        task = ServedTask(name, TaskRuntime(self.seal, file, name=name), path, stamp)
        with self._lock:
            event = "updated" if name in self._tasks else "loaded"
            self._tasks = {**self._tasks, name: task}  # copy-on-write: readers keep a consistent dict
            self._refused.pop(path.name, None)
        self._notify(event, task)
        log.info("%s task %s from %s (%s, %s)", event, name, path.name, task.runtime.spec.task, task.runtime.method)
        return task

    def unload(self, name: str) -> ServedTask:
        with self._lock:
            task = self.get(name)
            self._tasks = {k: v for k, v in self._tasks.items() if k != name}
        self._notify("unloaded", task)
        log.info("unloaded task %s", name)
        return task

    def reload(self, name: str) -> ServedTask:
        """Read a task's file again (e.g. after it was retrained)."""
        task = self.get(name)
        return self.load(task.path, name)

    def install(self, name: str, data: bytes) -> ServedTask:
        """Write an uploaded adapter into the folder as NAME.adapter and load it; nothing is kept if it is refused."""
        name = check_task_name(name)
        if self.dir is None:
            raise ServeError("this server has no adapters folder to install into")
        final = self.dir / f"{name}{ADAPTER_SUFFIX}"
        with self._lock:
            # checked in memory first (messages name the file only), so a refused upload writes nothing;
            # then written through an exclusively created temp file (mkstemp: O_EXCL, no links followed)
            TaskRuntime(self.seal, parse_adapter_bytes(data, final.name, seal_id=self.seal.seal_id), name=name)
            atomic_write_bytes(final, data)
            return self.load(final, name)

    def retire(self, name: str) -> Path | None:
        """Unload a task; its file in the folder is renamed NAME.adapter.removed so scans do not load it again."""
        with self._lock:
            task = self.get(name)
            moved = None
            if self.dir is not None and task.path.parent == self.dir and task.path.exists():
                moved = task.path.with_name(task.path.name + ".removed")
                os.replace(task.path, moved)
            self.unload(name)
            return moved

    def scan(self) -> ScanReport:
        """Make the loaded tasks match the adapters folder: add new files, reload changed ones, drop missing ones.

        A file that cannot be loaded is refused (and logged once) until it changes; if it replaced a
        working version, that version keeps serving.
        """
        report = ScanReport()
        if self.dir is None:
            return report
        with self._lock:
            files = {p.name.removesuffix(ADAPTER_SUFFIX): p for p in sorted(self.dir.glob(f"*{ADAPTER_SUFFIX}")) if p.is_file()}
            for name, path in files.items():
                stamp = _stamp(path)
                current = self._tasks.get(name)
                if current is not None and current.path == path and current.stamp == stamp:
                    continue
                refused = self._refused.get(path.name)
                if refused is not None and refused[0] == stamp:
                    continue
                try:
                    self.load(path, name)
                except (AdapterError, ServeError) as exc:
                    reason = str(exc).replace(str(path), path.name)  # responses show file names, not server paths
                    self._refused[path.name] = (stamp, reason)
                    report.refused[path.name] = reason
                    log.warning("refused %s: %s", path.name, reason)
                    continue
                except Exception as exc:  # a bug must not stop the scan: refuse this file, keep serving the rest
                    reason = f"could not be loaded ({type(exc).__name__}); see the server log"
                    self._refused[path.name] = (stamp, reason)
                    report.refused[path.name] = reason
                    log.exception("refused %s", path.name)
                    continue
                (report.updated if current is not None else report.added).append(name)
            for name, task in list(self._tasks.items()):
                if task.path.parent == self.dir and name not in files:
                    self.unload(name)
                    report.removed.append(name)
            for file_name in list(self._refused):
                if not (self.dir / file_name).exists():
                    del self._refused[file_name]
        return report

    def _notify(self, event: str, task: ServedTask) -> None:
        for listener in list(self.listeners):
            try:
                listener(event, task)
            except Exception:  # a listener's bug must not break loading
                log.exception("task listener failed on %s %s", event, task.name)
