"""`sealkit demo`, the README's main job, at a tiny budget: both tasks' flows run to the verdict line.

The real default run (MiniLM on Rotten Tomatoes, 150 lga steps, about 5 minutes) is measured in the
README; here the image task runs at 32 px on a few hundred digits, which exercises the same calls
(export, inspect, output, lga from it, the torch-free test pass, predictions) in about a minute.
"""

from __future__ import annotations

import pytest

from tests.cli_harness import sealkit

pytestmark = pytest.mark.slow


def test_demo_runs_to_the_verdict(demo_run):
    """The first run (conftest's demo_run, from a fresh folder) writes the keys and exports the seal."""
    result, out = demo_run["result"], demo_run["out"]
    assert result.returncode == 0, result.stderr[-3000:]
    stdout = result.stdout
    assert "mnist test (60 digits)" in stdout
    assert "lga - output" in stdout or "lga beats output" in stdout or "lga is below output" in stdout
    assert (out / "mnist-output.adapter").is_file() and (out / "mnist-lga.adapter").is_file()
    assert len(list((out / "samples").glob("test-*.png"))) == 5
    assert "residual entries reveal" in stdout
    assert "seal.key, sign.key, sign.pub" in stdout and "using the existing" not in stdout  # keys written, the seal exported

    again = sealkit(*demo_run["args"], timeout=600)  # a second run reuses the keys and the seal
    assert again.returncode == 0, again.stderr[-3000:]
    assert "using the existing" in again.stdout and "using the keys in" in again.stdout


def test_an_unknown_demo_task_is_a_usage_error():
    result = sealkit("demo", "--task", "cifar", timeout=60)
    assert result.returncode == 2
    assert "cifar" in result.stderr and "rt-sentiment" in result.stderr
