"""Keep training runs' peak memory down under glibc (Linux); no-ops with other C libraries.

Training sessions run without onnxruntime's arena, so their tensors come from malloc, and between
runs torch (adapters, loss, optimizer) allocates from the same heap. Two things inflated the peak
of a training step (EfficientNet-Lite0, batch 8):

- A session's first run has no planned memory block yet (onnxruntime plans one per input shape
  from the second run on) and allocates each intermediate tensor separately. glibc serves those of
  up to 32 MiB from the heap; as a backward pass moves towards the input its tensors grow, each
  lands in fresh heap memory and the freed holes stay resident: the first backward peaked 166 MiB
  above later ones. `mapped_allocations` maps large allocations during a first run instead (and
  unmaps them when freed); mapping on every run would double the backward's time, so afterwards
  the threshold is fixed at 32 MiB, where glibc's own adaptive threshold ends up.
- Memory that torch freed stays in the heap, resident, while a seal graph runs on top of it:
  `release_free_heap` hands it back to the system before each training run (malloc_trim): the
  training process's peak RSS went from 614-664 MiB (five identical runs) to 582-585 MiB (three).

Never imports torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
FIRST_RUN_THRESHOLD = 256 * 1024
STEADY_THRESHOLD = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None  # musl and other C libraries
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc


_libc = _glibc()


def heap_tuning_supported() -> bool:
    """Whether this process's C library lets sealkit tune the heap (glibc on Linux)."""
    return _libc is not None


@contextlib.contextmanager
def mapped_allocations() -> Iterator[None]:
    """Within the block, allocations from 256 KiB up are mapped, so freeing them returns the memory."""
    if _libc is None:
        yield
        return
    _libc.mallopt(M_MMAP_THRESHOLD, FIRST_RUN_THRESHOLD)
    try:
        yield
    finally:
        _libc.mallopt(M_MMAP_THRESHOLD, STEADY_THRESHOLD)


def release_free_heap() -> None:
    """Return the heap's free memory to the system, so a run's peak starts from live memory only."""
    if _libc is not None:
        _libc.malloc_trim(0)
