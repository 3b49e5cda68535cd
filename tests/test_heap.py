"""sealkit/runtime/heap.py: training runs map a first run's large allocations and release free heap memory."""

from __future__ import annotations

import pytest

from sealkit.runtime import heap


def test_mapped_allocations_sets_the_threshold_for_the_block_and_fixes_it_after(monkeypatch):
    if not heap.heap_tuning_supported():
        pytest.skip("not glibc")
    calls = []

    class Recorder:
        def mallopt(self, parameter, value):
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(heap, "_libc", Recorder())
    with pytest.raises(RuntimeError), heap.mapped_allocations():
        calls.append("inside")
        raise RuntimeError("a failed run still restores the threshold")
    assert calls == [(heap.M_MMAP_THRESHOLD, heap.FIRST_RUN_THRESHOLD), "inside", (heap.M_MMAP_THRESHOLD, heap.STEADY_THRESHOLD)]


def test_without_glibc_both_are_no_ops(monkeypatch):
    monkeypatch.setattr(heap, "_libc", None)
    with heap.mapped_allocations():
        pass
    heap.release_free_heap()
    assert not heap.heap_tuning_supported()
