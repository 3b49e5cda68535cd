"""Wait for a server-side change (a folder scan, a reload) without sleeping a fixed time."""

from __future__ import annotations

import time


def wait_for(predicate, seconds: float = 15.0):
    """Poll until predicate() is truthy (bounded), returning its value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {seconds}s")
