"""Keep a training graph's first run from fragmenting the heap (glibc only; a no-op elsewhere).

Training sessions run without onnxruntime's arena. From its second run on, a session allocates its
working memory as one planned block (the memory pattern, kept per input shape); its first run
allocates every intermediate tensor separately. Under glibc those allocations of up to 32 MiB come
from the heap, and as a backward pass goes towards the input its tensors grow, so each one lands
in fresh heap memory and the freed holes stay resident: EfficientNet-Lite0's first backward at
batch 8 peaked 166 MiB above its later runs. During a first run, large allocations are mapped
(and unmapped when freed) instead; afterwards the threshold is fixed at 32 MiB, the ceiling glibc's
own adaptive threshold moves towards, because mapping every large tensor on every run costs time
(EfficientNet-Lite0's backward took about twice as long with every run mapped).
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

_mallopt = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _mallopt = getattr(_libc, "mallopt", None)
    except OSError:
        _mallopt = None
    if _mallopt is not None:
        _mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        _mallopt.restype = ctypes.c_int


def mmap_threshold_supported() -> bool:
    """Whether this process's C library lets sealkit set the threshold (glibc on Linux)."""
    return _mallopt is not None


@contextlib.contextmanager
def mapped_allocations() -> Iterator[None]:
    """Within the block, allocations from 256 KiB up are mapped, so freeing them returns the memory."""
    if _mallopt is None:
        yield
        return
    _mallopt(M_MMAP_THRESHOLD, FIRST_RUN_THRESHOLD)
    try:
        yield
    finally:
        _mallopt(M_MMAP_THRESHOLD, STEADY_THRESHOLD)
