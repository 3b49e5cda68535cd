"""Micro-batching of backbone calls across concurrent requests and tasks.

Each request runs its task's input adapters itself (numpy), then submits one `BackboneCall`: the
tower inputs for its items. A worker thread groups pending calls by key and runs each group as
one backbone call, then hands every request its rows back; the request runs its task's output
adapter and head itself.

The key is (tower, graph, owner):
  - plain graph (output/dga tasks): owner None, so requests of *different tasks* on the same tower
    share a batch, since the backbone is the same function for all of them;
  - entries graph (lga tasks): the entry-point tensors are the task's own, so the owner is the
    task's load id and only that task's requests share a batch.
Text inputs of different lengths are padded at the end to the batch's longest sequence with zero
token embeddings and a zero mask; the mask hides them, so each row's output equals its unbatched
output (tests/test_serve.py checks this).

A group is run when it holds `max_batch` rows, when its oldest call has waited `max_wait_ms`, or
when no other request is on its way (being prepared, announced with `expect`), whichever is
first: a lone request never waits, a burst fills a batch. At most `max_queue` calls wait at once; more are refused with QueueFullError
(HTTP 503) so a burst cannot grow memory without bound. If a batch fails (say one request has a
text too long for the model), its calls are rerun one by one so only the bad one gets the error.

With batching off, `run` executes each call at once in the caller's thread (still counted against
`max_queue`): the baseline benchmarks/serve_load.py compares with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sealkit.runtime.seal import Tower
from sealkit.serve.errors import QueueFullError

log = logging.getLogger("sealkit.serve")


@dataclass
class BackboneCall:
    """One request's backbone work: tower inputs for `rows` items, and the task's entry tensors (lga)."""

    tower: Tower
    feeds: dict[str, np.ndarray]
    entries: dict[str, np.ndarray] | None = None
    owner: Hashable | None = None  # the task's load id when `entries` is set
    task: str | None = None  # the task's name, for statistics only
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple:
        return (self.tower.name, "entries", self.owner) if self.entries else (self.tower.name, "plain", None)

    @property
    def rows(self) -> int:
        return int(next(iter(self.feeds.values())).shape[0])


def pad_and_stack(calls: list[BackboneCall]) -> dict[str, np.ndarray]:
    """Concatenate the calls' feeds on the batch axis, padding sequence axes (axis 1 of 2D+ inputs
    other than images) at the end with zeros: zero embeddings under a zero mask."""
    names = list(calls[0].feeds)
    if len(calls) == 1:
        return dict(calls[0].feeds)
    out: dict[str, np.ndarray] = {}
    for name in names:
        arrays = [c.feeds[name] for c in calls]
        if arrays[0].ndim >= 2 and len({a.shape[1:] for a in arrays}) > 1:
            if any(a.shape[2:] != arrays[0].shape[2:] for a in arrays):
                raise ValueError(f"input '{name}' differs beyond the sequence axis: {[a.shape for a in arrays]}")
            length = max(a.shape[1] for a in arrays)
            arrays = [np.pad(a, [(0, 0), (0, length - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) if a.shape[1] < length else a for a in arrays]
        out[name] = np.concatenate(arrays, axis=0)
    return out


def _resolve(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Set a future's outcome unless its request went away (a client that disconnected cancels it)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


class Batcher:
    """Collects BackboneCalls and runs them in batches on a worker thread (or directly when disabled)."""

    def __init__(self, max_batch: int = 32, max_wait_ms: float = 5.0, max_queue: int = 256, enabled: bool = True):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be at least 1, max_wait_ms at least 0")
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.enabled = enabled
        self._pending: OrderedDict[tuple, deque[BackboneCall]] = OrderedDict()
        self._count = 0  # calls waiting (batching) or running (direct)
        self._expected = 0  # requests being prepared that will submit a call soon
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.stats = {"calls": 0, "batches": 0, "rows": 0, "refused": 0, "max_batch_rows": 0}

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Batcher:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="sealkit-batcher", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def queued(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count >= self.max_queue

    # --- submitting ---------------------------------------------------------------------------
    def _admit(self) -> None:
        if self._closed:
            raise QueueFullError("the server is shutting down; retry on another instance")
        if self._count >= self.max_queue:
            self.stats["refused"] += 1
            raise QueueFullError(f"the backbone queue is full ({self.max_queue} requests waiting); retry shortly")
        self._count += 1

    def expect(self, delta: int) -> None:
        """Announce (+1) a request that is preparing a call, or (-1) that it submitted it or failed.
        The worker waits for announced requests (up to max_wait), never for ones that may not come."""
        with self._cond:
            self._expected += delta
            self._cond.notify_all()

    def submit(self, call: BackboneCall, expected: bool = False) -> Future:
        """Queue a call; its future gets the tower output rows. Raises QueueFullError when full.
        `expected`: this call was announced with expect(+1); the announcement ends here."""
        if not self.enabled:
            raise RuntimeError("batching is off; use run()")
        with self._cond:
            if expected:
                self._expected -= 1
            try:
                self._admit()
            except QueueFullError:
                self._cond.notify_all()  # the worker may be waiting for this call
                raise
            self._pending.setdefault(call.key, deque()).append(call)
            self.stats["calls"] += 1
            self._cond.notify_all()
        return call.future

    def run(self, call: BackboneCall) -> np.ndarray:
        """Batching on: submit and wait. Off: run this call alone, now, in this thread."""
        if self.enabled:
            return self.submit(call).result()
        with self._cond:
            self._admit()
            self.stats["calls"] += 1
        try:
            out = call.tower.forward(call.feeds, call.entries, chunk=self.max_batch)
            with self._cond:
                self._record(call.rows)
            return out
        finally:
            with self._cond:
                self._count -= 1

    # --- the worker ---------------------------------------------------------------------------
    def _rows(self, key: tuple) -> int:
        return sum(c.rows for c in self._pending.get(key, ()))

    def _take(self) -> list[BackboneCall] | None:
        """Under the lock: wait for work, pick the group whose oldest call is oldest, wait for it to fill."""
        while not self._pending:
            if self._closed:
                return None
            self._cond.wait()
        key = min(self._pending, key=lambda k: self._pending[k][0].arrived)
        deadline = self._pending[key][0].arrived + self.max_wait
        while not self._closed and self._expected > 0 and self._rows(key) < self.max_batch:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self._cond.wait(left)
        queue = self._pending[key]
        batch = [queue.popleft()]
        rows = batch[0].rows
        while queue and rows + queue[0].rows <= self.max_batch:
            rows += queue[0].rows
            batch.append(queue.popleft())
        if not queue:
            del self._pending[key]
        self._count -= len(batch)
        return batch

    def _loop(self) -> None:
        while True:
            with self._cond:
                batch = self._take()
            if batch is None:
                return
            self._execute(batch)

    def execute(self, batch: list[BackboneCall]) -> None:
        """Run calls of one key as one backbone call now, in this thread, resolving their futures
        (a failing batch is rerun call by call). The Ray engine's backbone replicas use this."""
        self._execute(batch)

    def _execute(self, batch: list[BackboneCall]) -> None:
        first = batch[0]
        try:
            feeds = pad_and_stack(batch)
            out = first.tower.forward(feeds, first.entries, chunk=self.max_batch)
        except Exception as exc:
            if len(batch) > 1:  # find the call that failed; the others still get their rows
                for call in batch:
                    self._execute([call])
                return
            _resolve(first.future, error=exc)
            return
        with self._cond:
            self._record(out.shape[0])
        start = 0
        for call in batch:
            _resolve(call.future, out[start : start + call.rows])
            start += call.rows

    def _record(self, rows: int) -> None:
        self.stats["batches"] += 1
        self.stats["rows"] += rows
        self.stats["max_batch_rows"] = max(self.stats["max_batch_rows"], rows)

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            stats = dict(self.stats)
            stats.update(queued=self._count, enabled=self.enabled, max_batch=self.max_batch, max_wait_ms=self.max_wait * 1000, max_queue=self.max_queue)
        stats["mean_batch_rows"] = round(stats["rows"] / stats["batches"], 2) if stats["batches"] else 0.0
        return stats
