"""The no-torch harness shared by test_no_torch.py and test_deploy.py.

Each check runs in a fresh interpreter, because the test process itself has torch loaded already.
A meta-path hook records where torch was first imported from, and sys.modules is checked at the end.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WATCH_TORCH = """
import sys, traceback
_torch_import = []
class _WatchTorch:
    def find_spec(self, name, path=None, target=None):
        if (name == "torch" or name.startswith("torch.")) and not _torch_import:
            _torch_import.append("".join(traceback.format_stack(limit=15)))
        return None  # only watch: an optional `import torch` in a dependency must still be seen
sys.meta_path.insert(0, _WatchTorch())
"""
CHECK = """
assert "torch" not in sys.modules, "torch was imported on the device path:\\n" + "".join(_torch_import)
print("NO-TORCH-OK")
"""


def run_without_torch(body: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `body` (Python source; argv in sys.argv[1:]) from the repository root under the watch."""
    code = WATCH_TORCH + textwrap.dedent(body) + CHECK
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    """The body ran to the end and torch was never imported."""
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("NO-TORCH-OK"), result.stdout[-2000:]
