"""Checkpoints: a run interrupted by Ctrl-C and resumed ends exactly where an uninterrupted run ends,
and resuming refuses a missing, unreadable or different run's checkpoint with a CheckpointError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import permuted_colour_dataset

from sealkit.adapters.file import read_adapter_file
from sealkit.errors import CheckpointError
from sealkit.train.api import adapt
from sealkit.train.checkpoint import load_checkpoint
from sealkit.train.loop import TrainConfig
from sealkit.train.objectives import ClassifyObjective

STEPS, INTERRUPT_AT = 12, 6
CONFIG = TrainConfig(steps=STEPS, batch=8, lr=1e-2, seed=3, eval_every=4)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def data():
    return permuted_colour_dataset(3, seed=1), permuted_colour_dataset(2, seed=2)


def _adapt(seal, data, out, method="lga", config=CONFIG, resume=False):
    train, val = data
    return adapt(seal, train, val, out, method=method, task="classify", config=config, resume=resume, progress=False)


def _tensors(path):
    return read_adapter_file(path).tensors


def test_an_interrupted_and_resumed_run_matches_an_uninterrupted_one(pair_seal, data, tmp_path, monkeypatch):
    full = _adapt(pair_seal, data, tmp_path / "full.adapter")
    assert full.fit.steps_done == STEPS and not full.fit.interrupted

    # Same run, but Ctrl-C arrives while computing the loss of step INTERRUPT_AT (0-based).
    original = ClassifyObjective.loss
    calls = {"n": 0}

    def interrupting(self, pack, examples):
        if not pack.cached_backbone:  # the output-stage fit's short runs (on cached features) are not steps
            if calls["n"] == INTERRUPT_AT:
                raise KeyboardInterrupt
            calls["n"] += 1
        return original(self, pack, examples)

    monkeypatch.setattr(ClassifyObjective, "loss", interrupting)
    out = tmp_path / "run.adapter"
    part = _adapt(pair_seal, data, out)
    assert part.fit.interrupted and part.fit.steps_done == INTERRUPT_AT
    assert part.checkpoint_path == tmp_path / "run.adapter.ckpt" and part.checkpoint_path.is_file()
    # the best adapter so far (the start, evaluated at step 0, or step 4) is already on disk, marked incomplete
    left = read_adapter_file(out).meta
    assert left["complete"] is False and left["best_step"] == part.fit.best_step in (0, 4)
    assert [h["step"] for h in part.fit.history] == [0, 4]

    monkeypatch.setattr(ClassifyObjective, "loss", original)
    resumed = _adapt(pair_seal, data, out, resume=True)
    assert not resumed.fit.interrupted and resumed.fit.steps_done == STEPS
    assert read_adapter_file(out).meta["complete"] is True

    # the kept (best) adapters are the same tensors ...
    expected, got = _tensors(tmp_path / "full.adapter"), _tensors(out)
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-6, err_msg=name)
    # ... so are the last step's adapters and optimiser moments in the checkpoints ...
    identity = {}  # compare the two runs' states whatever their identities
    a = load_checkpoint(full.checkpoint_path, identity)
    b = load_checkpoint(resumed.checkpoint_path, identity)
    assert a["step"] == b["step"] == STEPS
    for name, value in a["pack"].items():
        torch.testing.assert_close(b["pack"][name], value, rtol=1e-4, atol=1e-6, msg=name)
    for key, state in a["optimizer"]["state"].items():
        torch.testing.assert_close(b["optimizer"]["state"][key]["exp_avg_sq"], state["exp_avg_sq"], rtol=1e-4, atol=1e-9)
    # ... and so are the metrics, the best step and the evaluation history
    assert resumed.fit.best_step == full.fit.best_step
    assert resumed.fit.best_metrics == pytest.approx(full.fit.best_metrics, rel=1e-4)
    assert [h["step"] for h in resumed.fit.history] == [h["step"] for h in full.fit.history] == [0, 4, 8, 12]
    for h_full, h_resumed in zip(full.fit.history, resumed.fit.history):
        assert h_resumed == pytest.approx(h_full, rel=1e-4)


# --- checkpoint errors ----------------------------------------------------------------------------

QUICK = TrainConfig(steps=3, batch=6, lr=1e-2, seed=0, eval_every=3)


@pytest.fixture(scope="module")
def finished_run(pair_seal, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "task.adapter"
    result = _adapt(pair_seal, data, out, method="output", config=QUICK)
    assert result.checkpoint_path.is_file()
    return out


def test_resume_without_a_checkpoint_is_a_checkpoint_error(pair_seal, data, tmp_path):
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*fresh\.adapter\.ckpt to resume from; start fresh instead of resuming"):
        _adapt(pair_seal, data, tmp_path / "fresh.adapter", method="output", config=QUICK, resume=True)


@pytest.mark.parametrize(
    "change, differs",
    [
        ({"config": TrainConfig(steps=3, batch=6, lr=5e-3, seed=0, eval_every=3)}, "config"),
        ({"config": TrainConfig(steps=6, batch=6, lr=1e-2, seed=0, eval_every=3)}, "config"),
        ({"method": "dga"}, "method"),
    ],
    ids=["lr", "steps", "method"],
)
def test_resume_with_different_settings_is_a_checkpoint_error(change, differs, pair_seal, data, finished_run):
    kwargs = {"method": "output", "config": QUICK, **change}
    with pytest.raises(CheckpointError, match=rf"from a different run \(.*{differs}.*differ\); use the same settings or delete it"):
        _adapt(pair_seal, data, finished_run, resume=True, **kwargs)


def test_resume_with_other_training_data_is_a_checkpoint_error(pair_seal, finished_run):
    train, val = permuted_colour_dataset(4, seed=1), permuted_colour_dataset(2, seed=2)
    with pytest.raises(CheckpointError, match=r"different run \(train_size differ\)"):
        _adapt(pair_seal, (train, val), finished_run, method="output", config=QUICK, resume=True)


def test_an_unreadable_checkpoint_is_a_checkpoint_error(pair_seal, data, finished_run, tmp_path):
    out = tmp_path / "task.adapter"
    (tmp_path / "task.adapter.ckpt").write_bytes(finished_run.with_name(finished_run.name + ".ckpt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"unreadable.*delete it and start fresh instead of resuming"):
        _adapt(pair_seal, data, out, method="output", config=QUICK, resume=True)


def test_resuming_a_finished_run_with_the_same_settings_changes_nothing(pair_seal, data, finished_run):
    before = _tensors(finished_run)
    again = _adapt(pair_seal, data, finished_run, method="output", config=QUICK, resume=True)
    assert again.fit.steps_done == QUICK.steps
    after = _tensors(finished_run)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
