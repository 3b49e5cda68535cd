"""Issue 12, item 1: a checkpoint is data only. A planted pickle next to the adapter is refused
without being unpickled: its `__reduce__` (which would write a marker file) never runs, through the
library and through `sealkit adapt --resume` (a one-line error).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from synthetic import permuted_colour_dataset, write_png_table

from sealkit.errors import CheckpointError
from sealkit.train.api import adapt
from sealkit.train.checkpoint import load_checkpoint
from sealkit.train.loop import TrainConfig

SEALKIT = str(Path(sys.executable).with_name("sealkit"))
QUICK = TrainConfig(steps=2, batch=6, lr=1e-2, seed=0, eval_every=2)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class Planted:
    """Unpickling this writes the marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path, zip_format: bool) -> Path:
    payload = {"version": 1, "identity": {}, "pack": Planted(marker)}
    if zip_format:  # what sealkit's own torch.save checkpoints were
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path.write_bytes(buffer.getvalue())
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


def test_the_planted_pickle_would_run_code_if_unpickled(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(plant(tmp_path / "probe.ckpt", marker, zip_format=False).read_bytes())
    assert marker.exists()  # so the marker's absence below means the file was not unpickled


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch-save", "raw-pickle"])
def test_resume_refuses_a_pickle_checkpoint_without_running_it(pair_seal, tmp_path, zip_format):
    marker = tmp_path / "ran"
    out = tmp_path / "task.adapter"
    plant(tmp_path / "task.adapter.ckpt", marker, zip_format)
    with pytest.raises(CheckpointError, match=r"is a pickle .* never loaded .*delete it and start fresh"):
        adapt(pair_seal, permuted_colour_dataset(2, seed=1), None, out, method="output", config=QUICK, resume=True, progress=False, zero_shot=False)
    assert not marker.exists()
    assert not out.exists()


def test_cli_resume_with_a_planted_pickle_is_a_one_line_error(tiny_pair_seal, keys, tmp_path):
    marker = tmp_path / "ran"
    train = write_png_table(permuted_colour_dataset(2, seed=1), tmp_path, "train.csv")
    out = tmp_path / "task.adapter"
    plant(tmp_path / "task.adapter.ckpt", marker, zip_format=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", NO_COLOR="1", COLUMNS="300", OMP_NUM_THREADS="1")
    env.pop("SEALKIT_DEBUG", None)
    result = subprocess.run(
        [SEALKIT, "adapt", str(tiny_pair_seal), "--method", "output", "--train", str(train), "--image-col", "image", "--label-col", "label",
         "--steps", "2", "--batch", "6", "--out", str(out), "--key", str(keys["key"]), "--resume"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == CheckpointError.exit_code, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pickle" in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not marker.exists()


def test_a_checkpoint_is_safetensors_plus_json(pair_seal, tmp_path):
    out = tmp_path / "task.adapter"
    result = adapt(pair_seal, permuted_colour_dataset(2, seed=1), None, out, method="output", config=QUICK, progress=False, zero_shot=False)
    data = result.checkpoint_path.read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    meta = json.loads(header["__metadata__"]["sealkit_checkpoint"])
    assert meta["format"] == "sealkit-checkpoint" and meta["step"] == QUICK.steps
    assert header["torch_rng"]["dtype"] == "U8" and any(k.startswith("optimizer/") for k in header)
    state = load_checkpoint(result.checkpoint_path, {})
    assert state["step"] == QUICK.steps and state["torch_rng"].dtype == torch.uint8
