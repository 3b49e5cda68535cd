"""Training progress: a tqdm bar in a terminal, one plain line per interval anywhere else.

In a pipe, a CI log or a file a redrawn bar becomes kilobytes of carriage returns; a line every
`interval` seconds (and one at the end) is what a log reader wants. Both expose the three calls
the training loop uses: set_postfix, update, close.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

DEFAULT_INTERVAL = 10.0  # seconds between lines outside a terminal; $SEALKIT_PROGRESS_INTERVAL overrides


class LineProgress:
    """Prints 'desc: step/total (pct%) key=value ...' at most once per interval, and at the end."""

    def __init__(self, total: int, initial: int, desc: str, interval: float, file: IO[str]):
        self.total, self.n, self.desc, self.interval, self.file = total, initial, desc, interval, file
        self.postfix: dict[str, Any] = {}
        self.last_time = time.monotonic()
        self.last_printed = initial

    def set_postfix(self, postfix: dict[str, Any]) -> None:
        self.postfix = dict(postfix)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last_time >= self.interval or self.n >= self.total:
            self._line()
            self.last_time = now

    def close(self) -> None:
        if self.n != self.last_printed:
            self._line()

    def _line(self) -> None:
        extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        share = 100.0 * self.n / max(1, self.total)
        print(f"{self.desc}: step {self.n}/{self.total} ({share:.0f}%) {extra}".rstrip(), file=self.file, flush=True)
        self.last_printed = self.n


def make_progress(total: int, initial: int, desc: str, file: IO[str] | None = None) -> Any:
    """tqdm when `file` (default stderr) is a terminal, else a LineProgress."""
    file = file or sys.stderr
    if file.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, file=file)
    interval = float(os.environ.get("SEALKIT_PROGRESS_INTERVAL", DEFAULT_INTERVAL))
    return LineProgress(total, initial, desc, interval, file)
