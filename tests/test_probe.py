"""The output stage is fitted before training (sealkit/train/probe.py), the fitted start is a
candidate for the best, and the two parameter groups train at their own learning rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from synthetic import permuted_colour_dataset

from sealkit.adapters.config import AdapterConfig, TaskSpec
from sealkit.adapters.file import read_adapter_file
from sealkit.train.api import adapt
from sealkit.train.config import TrainConfig
from sealkit.train.loop import parameter_groups
from sealkit.train.objectives import ClassifyObjective, build_task_spec, make_objective
from sealkit.train.pack import AdapterPack
from sealkit.train.probe import C_GRID, fit_linear_head

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _blobs(n: int, seed: int, classes: int = 4, dim: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes (not separable), so regularisation matters."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0.0, 1.0, size=(classes, dim))
    labels = rng.integers(classes, size=n)
    return (centres[labels] + rng.normal(0.0, 1.5, size=(n, dim))).astype(np.float32), labels


def test_the_linear_head_is_scikit_learns_logistic_regression(image_seal, tmp_path):
    x, y = _blobs(300, seed=0)
    xv, yv = _blobs(200, seed=1)
    spec = build_task_spec(image_seal, permuted_colour_dataset(1, seed=0), "classify", head="linear")
    pack = AdapterPack(image_seal, AdapterConfig(method="output"), spec)
    pack.head = torch.nn.Linear(x.shape[1], 4)  # the fit works on any feature width; here the blobs'
    chosen, scores = fit_linear_head(pack, torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xv), torch.from_numpy(yv))
    assert set(scores) == {f"C={c:g}" for c in C_GRID}
    # scikit-learn at the chosen C, on the same data: the same convex problem, so the same solution
    reference = LogisticRegression(C=chosen, max_iter=5000, tol=1e-10).fit(x, y)
    np.testing.assert_allclose(pack.head.weight.detach().numpy(), reference.coef_, atol=2e-3)
    np.testing.assert_allclose(pack.head.bias.detach().numpy(), reference.intercept_, atol=2e-3)
    # and C is chosen on validation cross-entropy: scikit-learn's fits over the same grid agree
    losses = {c: log_loss(yv, LogisticRegression(C=c, max_iter=5000, tol=1e-10).fit(x, y).predict_proba(xv)) for c in C_GRID}
    assert losses[chosen] <= min(losses.values()) + 1e-4, losses


def test_output_with_default_flags_reaches_the_probe(image_seal, tmp_path):
    train, val = permuted_colour_dataset(6, seed=1), permuted_colour_dataset(6, seed=2)
    result = adapt(image_seal, train, val, tmp_path / "out.adapter", method="output", head="linear", config=TrainConfig(steps=30, batch=12), progress=False)
    objective = make_objective(image_seal, build_task_spec(image_seal, train, "classify", head="linear"))
    features = {name: objective.frozen_features("image", [e.image for e in d.examples]) for name, d in (("train", train), ("val", val))}
    labels = {name: objective.labels(d.examples) for name, d in (("train", train), ("val", val))}
    probe = max(LogisticRegression(C=c, max_iter=5000).fit(features["train"], labels["train"]).score(features["val"], labels["val"]) for c in C_GRID)
    assert result.fit.best_metric >= probe - 0.01, f"output {result.fit.best_metric:.3f} vs probe {probe:.3f}"
    meta = read_adapter_file(result.adapter_path).meta
    assert meta["probe"]["c"] in C_GRID and meta["probe"]["output_lr"] > 0


def test_step_zero_is_kept_when_training_only_hurts(image_seal, tmp_path):
    """With learning rates so large that every step does harm, the saved adapter is the fitted start."""
    train, val = permuted_colour_dataset(4, seed=1), permuted_colour_dataset(4, seed=2)

    def run(name: str, steps: int, lr: float):
        config = TrainConfig(steps=steps, batch=12, lr=lr, output_lr=lr, eval_every=2)
        return adapt(image_seal, train, val, tmp_path / name, method="dga", head="linear", config=config, progress=False)

    start = run("start.adapter", steps=0, lr=1e-3)  # no training: the adapter is the fitted start
    hurt = run("hurt.adapter", steps=6, lr=300.0)
    assert [h["step"] for h in hurt.fit.history] == [0, 2, 4, 6]
    assert min(h["accuracy"] for h in hurt.fit.history[1:]) < hurt.fit.history[0]["accuracy"]  # training did hurt
    assert hurt.fit.best_step == 0 and hurt.fit.best_metric == start.fit.best_metric
    expected, got = read_adapter_file(start.adapter_path), read_adapter_file(hurt.adapter_path)
    assert got.meta["best_step"] == 0
    for name, value in expected.tensors.items():
        np.testing.assert_array_equal(got.tensors[name], value, err_msg=name)


def test_the_input_side_trains_at_its_towers_rate_image_or_text(pair_seal):
    """Image towers' input adapters default to 1e-2, text towers' to 4e-3; an lr given alone applies to both."""
    pack = AdapterPack(pair_seal, AdapterConfig(method="dga"), TaskSpec("retrieve", "image", "image", "text", "text"))
    for config, image, text in ((TrainConfig(), 1e-2, 4e-3), (TrainConfig(lr=5e-3), 5e-3, 5e-3), (TrainConfig(lr=5e-3, image_lr=1e-3), 1e-3, 5e-3)):
        peak = {id(p): g["peak_lr"] for g in parameter_groups(pack, config, output_lr=7e-2) for p in g["params"]}
        for name, p in pack.named_parameters():
            expected = {"image": image, "text": text}[name.split(".")[1]] if AdapterPack.side(name) == "input" else 7e-2
            assert peak[id(p)] == expected, (config, name)
    assert {name.split(".")[1] for name, _ in pack.named_parameters() if AdapterPack.side(name) == "input"} == {"image", "text"}


def test_the_output_side_falls_back_to_its_own_rate_not_the_text_input_rate():
    """Without a probe fit the output side trains at output_lr, else lr, else 2e-3: changing the text input default leaves it alone."""
    assert TrainConfig().fallback_output_lr() == 2e-3 != TrainConfig().input_lr("text")
    assert TrainConfig(lr=5e-2).fallback_output_lr() == 5e-2
    assert TrainConfig(lr=5e-2, output_lr=1e-3).fallback_output_lr() == 1e-3


def test_each_parameter_group_trains_at_its_own_learning_rate(image_seal, tmp_path, monkeypatch):
    train = permuted_colour_dataset(2, seed=1)
    spec = build_task_spec(image_seal, train, "classify", head="linear")
    pack = AdapterPack(image_seal, AdapterConfig(method="lga"), spec)
    groups = parameter_groups(pack, TrainConfig(lr=1e-3), output_lr=5e-2)
    peak = {id(p): g["peak_lr"] for g in groups for p in g["params"]}
    for name, p in pack.named_parameters():
        expected = 1e-3 if (".input." in name or ".entries." in name) else 5e-2
        assert peak[id(p)] == expected, name
    assert {AdapterPack.side(n) for n, _ in pack.named_parameters()} == {"input", "output"}

    # In real runs: the side at lr 0 stays at its start, the other moves. Every evaluation scores
    # higher than the last, so the saved (best) adapter is the last step's.
    calls = iter(range(1000))
    monkeypatch.setattr(ClassifyObjective, "evaluate", lambda self, pack, dataset: {"accuracy": float(next(calls))})
    torch.manual_seed(0)  # adapt seeds the same way before building its adapters
    start = AdapterPack(image_seal, AdapterConfig(method="dga"), spec).state_dict()
    for lr, output_lr, moved, kept in ((0.0, 1e-2, "output", "input"), (1e-2, 0.0, "input", "output")):
        config = TrainConfig(steps=3, batch=6, lr=lr, output_lr=output_lr, probe=False, weight_decay=0.0, seed=0)
        result = adapt(image_seal, train, train, tmp_path / f"{moved}.adapter", method="dga", head="linear", config=config, progress=False, zero_shot=False)
        assert result.fit.best_step == 3
        final = read_adapter_file(result.adapter_path).tensors
        for name, value in start.items():
            if AdapterPack.side(name) == kept:
                np.testing.assert_array_equal(final[name], value.numpy(), err_msg=name)
        assert any(not np.array_equal(final[name], value.numpy()) for name, value in start.items() if AdapterPack.side(name) == moved)


def test_a_text_head_starts_from_its_best_short_run(text_seal, tmp_path):
    """A text head has no exact fit: the picked short run on the cache is the start when it beats the untrained one."""
    from synthetic import permuted_colour_texts

    train, val = permuted_colour_texts(8, seed=1), permuted_colour_texts(4, seed=2)  # zero-shot reads the wrong colour

    def start(name: str, probe: bool) -> float:
        config = TrainConfig(steps=60, batch=12, probe=probe, eval_every=60)  # 60 steps: full-length short runs
        result = adapt(text_seal, train, val, tmp_path / name, method="output", config=config, progress=False, zero_shot=False)
        assert result.fit.history[0]["step"] == 0
        return result.fit.history[0]["accuracy"]

    untrained, fitted = start("untrained.adapter", probe=False), start("fitted.adapter", probe=True)
    assert fitted > untrained
    probe = read_adapter_file(tmp_path / "fitted.adapter").meta["probe"]
    short_runs = [score for name, score in probe["scores"].items() if name.startswith("lr=")]
    assert probe["c"] is None and probe["metric"] == pytest.approx(max(short_runs)) == pytest.approx(fitted)


def test_image_towers_are_embedded_16_items_a_pass_without_gradients(pair_seal, monkeypatch):
    """onnxruntime's arena keeps an inference pass's working memory for good (a 224 px EfficientNet-Lite0
    forward of 64 rows: 750 MiB held), so evaluation and feature caching run image towers 16 items a pass."""
    from sealkit.train.objectives import EVAL_CHUNK, IMAGE_EVAL_CHUNK

    dataset = permuted_colour_dataset(7, seed=0)  # 42 images
    objective = make_objective(pair_seal, build_task_spec(pair_seal, dataset, "classify"))
    assert (objective.eval_chunk("image"), objective.eval_chunk("text")) == (IMAGE_EVAL_CHUNK, EVAL_CHUNK) == (16, 64)
    tower = pair_seal.tower("image")
    rows: list[int] = []
    forward = tower.forward
    monkeypatch.setattr(tower, "forward", lambda feeds, *args, **kw: rows.append(len(next(iter(feeds.values())))) or forward(feeds, *args, **kw))
    features = objective.frozen_features("image", [e.image for e in dataset.examples])
    assert rows == [16, 16, 10] and features.shape[0] == 42
    rows.clear()
    objective.predict(None, dataset)  # the cache answers: no pass at all
    assert rows == []
