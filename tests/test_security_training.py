"""Issue 12, items 5, 7, 9 and 10 on the device's commands: bad numbers and paths are one-line errors
before any work, training stops cleanly on divergence or a bad file, signals checkpoint, a killed
writer's temp files are cleaned up, and silent nonsense (one class, indistinguishable class names)
is refused or reported.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic import permuted_colour_dataset, permuted_colour_texts, write_png_table
from typer.testing import CliRunner

from sealkit.adapters.file import read_adapter_file
from sealkit.cli import app
from sealkit.data.dataset import Dataset, Example
from sealkit.data.images import image_file_problem
from sealkit.errors import DataError, OutputPathError, SealkitError, TrainingError
from sealkit.train.api import adapt
from sealkit.train.checkpoint import load_checkpoint
from sealkit.train.loop import TrainConfig
from sealkit.train.objectives import ClassifyObjective

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SEALKIT = str(Path(sys.executable).with_name("sealkit"))


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_png_table(permuted_colour_dataset(2, seed=1), tmp_path_factory.mktemp("data"), "train.csv")


def invoke(*args) -> BaseException | None:
    """Run the CLI in-process; return the SealkitError it raised (main() prints it as one line)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exception


# --- item 9 and 10: numbers, templates, files ------------------------------------------------------
@pytest.mark.parametrize(
    "flags, phrase",
    [
        (["--batch", "0"], "--batch must be at least 1, got 0"),
        (["--lr", "-0.01"], "--lr must be a positive finite number"),
        (["--lr", "nan"], "--lr must be a positive finite number, got nan"),
        (["--lr", "inf"], "--lr must be a positive finite number"),
        (["--image-lr", "0"], "--image-lr must be a positive finite number"),
        (["--text-rank", "-1"], "--text-rank must be at least 1"),
        (["--template", "{0}{1}"], "must contain exactly one '{}'"),
        (["--template", "a {"], "is not a valid template"),
        (["--eval-every", "-1"], "--eval-every must be at least 0"),
        (["--val-limit", "0"], "--val-limit must be at least 1"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--epochs", "0"], "--epochs must be a positive finite number"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_adapt_numbers_are_one_line_errors_before_any_work(flags, phrase, tmp_path):
    missing_seal = tmp_path / "no.seal"  # never opened: the flags are checked first
    error = invoke("adapt", missing_seal, "--train", tmp_path / "no.csv", "--out", tmp_path / "x.adapter", *flags)
    assert isinstance(error, SealkitError) and phrase in str(error), error


def test_bad_predict_and_eval_arguments(tmp_path):
    assert "--top-k must be at least 1" in str(invoke("predict", tmp_path / "no.seal", "x", "--adapter", tmp_path / "a.adapter", "--top-k", "0"))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    error = invoke("predict", tmp_path / "no.seal", bad, "--adapter", tmp_path / "a.adapter")
    assert isinstance(error, DataError) and "is not UTF-8 text" in str(error)
    assert "--limit must be at least 1" in str(invoke("eval", tmp_path / "no.seal", "--data", "x.csv", "--limit", "0"))


# --- item 7: outputs are checked before the work -----------------------------------------------------
def test_unwritable_outputs_are_refused_before_training_or_compiling(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, phrase in ((folder, "is a folder"), (a_file / "task.adapter", "is a file, not a folder")):
        error = invoke("adapt", tmp_path / "no.seal", "--train", "no.csv", "--out", out)
        assert isinstance(error, OutputPathError) and phrase in str(error)
        error = invoke("export", "tests/recipes/tiny_vit.py", "--out", out, "--no-encrypt")
        assert isinstance(error, OutputPathError) and phrase in str(error)
        assert isinstance(invoke("eval", tmp_path / "no.seal", "--data", "x.csv", "--json-out", out), OutputPathError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_training(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    error = invoke("adapt", tmp_path / "no.seal", "--train", "no.csv", "--out", folder / "task.adapter")
    assert isinstance(error, OutputPathError) and "cannot be written" in str(error)


def test_a_truncated_jpeg_is_a_bad_file_when_read_not_at_its_step(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: int(len(buffer.getvalue()) * 0.9)])
    assert "not a readable image" in image_file_problem(path)


# --- training: divergence, errors at a step, signals, temp files -------------------------------------
def test_a_diverging_run_stops_with_a_training_error_and_never_writes_a_nan_adapter(pair_seal, tmp_path):
    out = tmp_path / "task.adapter"
    data = permuted_colour_dataset(2, seed=1)
    with pytest.raises(TrainingError, match=r"training diverged; .*lower the learning rate"):
        adapt(pair_seal, data, data, out, method="output", config=TrainConfig(steps=20, batch=6, lr=1e30, output_lr=1e30, probe=False, eval_every=1), progress=False, zero_shot=False)
    if out.exists():  # the best adapter written before it diverged is a valid, finite one
        assert all(np.isfinite(v).all() for v in read_adapter_file(out).tensors.values())


def test_an_error_at_a_step_checkpoints_the_steps_done_first(pair_seal, tmp_path, monkeypatch):
    original, calls = ClassifyObjective.loss, {"n": 0}

    def failing(self, pack, examples):
        if calls["n"] == 3:
            raise DataError("images/x.jpg: not a readable image")
        calls["n"] += 1
        return original(self, pack, examples)

    monkeypatch.setattr(ClassifyObjective, "loss", failing)
    out = tmp_path / "task.adapter"
    data = permuted_colour_dataset(2, seed=1)
    config = TrainConfig(steps=10, batch=6, eval_every=100, checkpoint_every=100, probe=False)  # the fit would call the loss too
    with pytest.raises(DataError):
        adapt(pair_seal, data, data, out, method="output", config=config, progress=False, zero_shot=False)
    assert load_checkpoint(out.with_name("task.adapter.ckpt"), {})["step"] == 3


def test_one_class_is_refused_and_indistinguishable_class_names_are_reported(text_seal, tmp_path):
    one = Dataset([Example(text=f"a red {o}", label="red") for o in ("cat", "dog", "car")], name="one", class_names=["red"])
    with pytest.raises(DataError, match="needs at least 2 classes"):
        adapt(text_seal, one, one, tmp_path / "one.adapter", method="output", config=TrainConfig(steps=1, batch=3), progress=False, zero_shot=False)
    texts = permuted_colour_texts(1, seed=0)
    unknown = Dataset([Example(text=e.text, label={"red": "qzxv", "green": "vxzq"}.get(e.label, e.label)) for e in texts.examples], name="unk",
                      class_names=["qzxv", "vxzq", *texts.class_names[2:]])  # fmt: skip
    result = adapt(text_seal, unknown, unknown, tmp_path / "unk.adapter", method="output", config=TrainConfig(steps=1, batch=6), progress=False, zero_shot=False)
    assert any("'qzxv' and 'vxzq' tokenize identically" in w for w in result.extra["warnings"])


def test_sigterm_checkpoints_and_stale_temp_files_are_removed(tiny_pair_seal, keys, table, tmp_path):
    out = tmp_path / "task.adapter"
    stale = tmp_path / ".task.adapter.k9dead.tmp"  # what kill -9 during a write leaves
    stale.write_bytes(b"half")
    env = dict(os.environ, HF_HUB_OFFLINE="1", NO_COLOR="1", COLUMNS="300", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [SEALKIT, "adapt", str(tiny_pair_seal), "--method", "output", "--train", str(table), "--image-col", "image", "--label-col", "label",
         "--steps", "100000", "--batch", "4", "--eval-every", "1", "--val-limit", "4", "--out", str(out), "--key", str(keys["key"])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        checkpoint = out.with_name("task.adapter.ckpt")
        deadline = time.monotonic() + 240
        while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert checkpoint.exists(), process.stdout.read() if process.poll() is not None else "no checkpoint in time"
        assert not stale.exists()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output
    assert "interrupted at step" in output and "continue with --resume" in output
    assert load_checkpoint(checkpoint, {})["step"] >= 1
