"""Run the `sealkit` command as a user does (a subprocess, stdout/stderr piped) and check its errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli_env() -> dict[str, str]:
    """The environment `sealkit` runs in: without the caller's key, debug or colour settings, offline, one thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "SEALKIT_KEY", "SEALKIT_DEBUG", "TTY_COMPATIBLE")}
    env.update(HF_HUB_OFFLINE="1", NO_COLOR="1", COLUMNS="200", OMP_NUM_THREADS="1")
    return env


def sealkit_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "sealkit", *map(str, args)]


def sealkit(*args: object, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m sealkit ARGS` from the repository root, in `cli_env()`."""
    return subprocess.run(sealkit_command(*args), cwd=cwd or ROOT, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-3000:]}"


def assert_one_line_error(result: subprocess.CompletedProcess, family: type, *fragments: str) -> str:
    """Exit with the error family's code, one `error:` line on stderr, no traceback; returns the message."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert result.returncode == family.exit_code != 0, f"exit {result.returncode}, expected {family.__name__} ({family.exit_code}): {result.stderr[-2000:]}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"stderr has {len(lines)} lines:\n{result.stderr[-3000:]}"
    assert lines[0].startswith("error: "), lines[0]
    assert "\x1b[" not in lines[0], "colour codes written to a pipe"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]
