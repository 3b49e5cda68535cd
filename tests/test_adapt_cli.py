"""End to end through the command line: `sealkit adapt`, then `sealkit eval --json`, then
`sealkit predict --json` on a CSV of PNG files; and the CLI's adapt-side errors are one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_harness import assert_one_line_error, sealkit
from synthetic import NAMES, permuted_colour_dataset, write_png_table

from sealkit.adapters.file import read_adapter_file
from sealkit.cli.adapt_commands import rate_sweep, sweep_path
from sealkit.errors import AdapterMismatchError, CheckpointError, DataError, OutputPathError


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-data")
    train = write_png_table(permuted_colour_dataset(3, seed=1), root, "train.csv")
    val = write_png_table(permuted_colour_dataset(2, seed=2), root, "val.csv")
    return {"train": train, "val": val, "root": root}


@pytest.fixture(scope="module")
def trained(tiny_pair_seal, keys, data, tmp_path_factory) -> dict[str, Path]:
    """`sealkit adapt` (dga, 8 steps) on the tiny image-text seal; the adapter and its run's output.

    With --training-arena on: not the default for its image tower (the default is tested everywhere else).
    """
    out = tmp_path_factory.mktemp("cli-run") / "colours.adapter"
    result = sealkit(
        "adapt", tiny_pair_seal, "--method", "dga", "--task", "classify",
        "--train", data["train"], "--val", data["val"], "--image-col", "image", "--label-col", "label",
        "--steps", 8, "--batch", 8, "--lr", "0.02", "--seed", 0, "--out", out, "--key", keys["key"],
        "--training-arena", "on",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return {"adapter": out, "log": result.stdout}


def test_adapt_writes_the_adapter_and_its_checkpoint_and_reports_the_baseline(trained, tiny_pair_seal):
    adapter = trained["adapter"]
    assert adapter.is_file() and adapter.with_name(adapter.name + ".ckpt").is_file()
    assert adapter.stat().st_size < 1_000_000
    meta = read_adapter_file(adapter).meta
    assert meta["method"] == "dga" and meta["task"]["task"] == "classify" and meta["complete"] is True
    assert meta["task"]["class_names"] == sorted(NAMES)  # a CSV's classes are its sorted labels
    log = " ".join(trained["log"].split())
    assert "zero-shot" in log and "best accuracy" in log and "adapter written to" in log


def test_eval_json_has_the_adapters_metrics(trained, tiny_pair_seal, keys, data, tmp_path):
    report = tmp_path / "metrics.json"
    result = sealkit(
        "eval", tiny_pair_seal, "--adapter", trained["adapter"], "--data", data["val"],
        "--image-col", "image", "--label-col", "label", "--json-out", report, "--key", keys["key"],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    content = json.loads(report.read_text())
    metrics = content["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert {f"accuracy/{name}" for name in NAMES} <= set(metrics)
    assert content["examples"] == 12
    # the same validation data as training: eval reproduces the accuracy stored with the adapter
    assert metrics["accuracy"] == pytest.approx(read_adapter_file(trained["adapter"]).meta["metrics"]["accuracy"])


def test_eval_without_an_adapter_reports_zero_shot(tiny_pair_seal, keys, data, tmp_path):
    report = tmp_path / "zero.json"
    result = sealkit(
        "eval", tiny_pair_seal, "--data", data["val"], "--image-col", "image", "--label-col", "label",
        "--task", "classify", "--json-out", report, "--key", keys["key"],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    content = json.loads(report.read_text())
    assert content["adapter"] is None and 0.0 <= content["metrics"]["accuracy"] <= 1.0


def test_predict_json_labels_are_class_names(trained, tiny_pair_seal, keys, data):
    images = sorted(data["root"].glob("val-*.png"))[:3]
    result = sealkit("predict", tiny_pair_seal, *images, "--adapter", trained["adapter"], "--json", "--top-k", 2, "--key", keys["key"])
    assert result.returncode == 0, result.stdout + result.stderr
    content = json.loads(result.stdout)
    assert content["task"] == "classify"
    assert [r["input"] for r in content["results"]] == [str(p) for p in images]
    for row in content["results"]:
        assert len(row["predictions"]) == 2
        assert all(p["label"] in NAMES and 0.0 <= p["probability"] <= 1.0 for p in row["predictions"])
    # the weight modes are memory against speed: the same predictions either way
    shared = sealkit("predict", tiny_pair_seal, *images, "--adapter", trained["adapter"], "--json", "--top-k", 2, "--key", keys["key"], "--weights", "shared")
    assert shared.returncode == 0, shared.stdout + shared.stderr
    for a, b in zip(content["results"], json.loads(shared.stdout)["results"]):
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        assert [p["probability"] for p in a["predictions"]] == pytest.approx([p["probability"] for p in b["predictions"]], abs=1e-5)


# --- errors --------------------------------------------------------------------------------------


def test_an_adapter_for_another_seal_is_a_one_line_error(trained, tiny_pair_seal, tiny_image_seal, keys, data):
    pair_id = read_adapter_file(trained["adapter"]).meta["seal_id"]
    image = sorted(data["root"].glob("val-*.png"))[0]
    predict = sealkit("predict", tiny_image_seal, image, "--adapter", trained["adapter"], "--key", keys["key"])
    line = assert_one_line_error(predict, AdapterMismatchError, "was trained for seal", pair_id, "tiny-pair")
    evaluate = sealkit(
        "eval", tiny_image_seal, "--adapter", trained["adapter"], "--data", data["val"],
        "--image-col", "image", "--label-col", "label", "--key", keys["key"],
    )  # fmt: skip
    assert assert_one_line_error(evaluate, AdapterMismatchError, pair_id) == line


def test_a_missing_train_file_is_a_one_line_data_error(tiny_pair_seal, keys, tmp_path):
    missing = tmp_path / "missing.csv"
    result = sealkit(
        "adapt", tiny_pair_seal, "--method", "output", "--train", missing, "--image-col", "image",
        "--label-col", "label", "--out", tmp_path / "x.adapter", "--key", keys["key"],
    )  # fmt: skip
    assert_one_line_error(result, DataError, str(missing), "no such file")
    assert not (tmp_path / "x.adapter").exists()


def test_resume_without_a_checkpoint_is_a_one_line_checkpoint_error(tiny_pair_seal, keys, data, tmp_path):
    result = sealkit(
        "adapt", tiny_pair_seal, "--method", "output", "--train", data["train"], "--val", data["val"],
        "--image-col", "image", "--label-col", "label", "--steps", 2, "--out", tmp_path / "x.adapter",
        "--resume", "--key", keys["key"],
    )  # fmt: skip
    assert_one_line_error(result, CheckpointError, "no checkpoint", "without --resume")


def test_a_repeated_lr_trains_each_rate_and_keeps_the_best_on_validation(tiny_pair_seal, keys, data, tmp_path):
    out = tmp_path / "sweep.adapter"
    result = sealkit(
        "adapt", tiny_pair_seal, "--method", "dga", "--train", data["train"], "--val", data["val"],
        "--image-col", "image", "--label-col", "label", "--steps", 4, "--batch", 8,
        "--lr", "0.05", "--lr", "1e-4", "--out", out, "--key", keys["key"],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    runs = {rate: read_adapter_file(sweep_path(out, rate)) for rate in (0.05, 1e-4)}
    assert {run.meta["train_config"]["lr"] for run in runs.values()} == {0.05, 1e-4}
    best = max(runs, key=lambda rate: runs[rate].meta["metrics"]["accuracy"])  # the first given on ties, as the sweep
    assert out.read_bytes() == sweep_path(out, best).read_bytes()
    log = " ".join(result.stdout.split())
    assert "by input-side learning rate" in log and f"{best:g} (kept)" in log and f"adapter written to {out}" in log


def test_the_sweep_keeps_the_best_run_and_resumes_only_runs_that_have_a_checkpoint(tmp_path):
    """rate_sweep on its own: the kept file is the best run's, whatever its place; --resume starts
    the rates that never began afresh instead of failing on their missing checkpoint."""
    from sealkit.train.api import AdaptResult, checkpoint_path_for
    from sealkit.train.loop import FitResult

    out = tmp_path / "task.adapter"
    scores = {1e-3: 0.5, 2e-3: 0.7, 4e-3: 0.6}
    checkpoint_path_for(sweep_path(out, 1e-3)).write_bytes(b"a checkpoint")
    calls = []

    def train_one(rate: float, path: Path, resume: bool) -> AdaptResult:
        calls.append((rate, resume))
        path.write_bytes(f"adapter at {rate:g}".encode())
        fit = FitResult(best_metric=scores[rate], best_step=2, final_metrics={}, best_metrics={})
        return AdaptResult(path, checkpoint_path_for(path), None, "zero-shot", fit, {}, 1, "accuracy")

    chosen = rate_sweep(list(scores), out, True, train_one)
    assert calls == [(1e-3, True), (2e-3, False), (4e-3, False)]
    assert out.read_bytes() == b"adapter at 0.002" and chosen.adapter_path == out and chosen.fit.best_metric == 0.7


def test_a_sweep_whose_rate_file_is_a_folder_fails_in_one_line_before_training(tiny_pair_seal, keys, data, tmp_path):
    (tmp_path / "sweep.lr0.002.adapter").mkdir()
    result = sealkit(
        "adapt", tiny_pair_seal, "--method", "dga", "--train", data["train"], "--val", data["val"],
        "--image-col", "image", "--label-col", "label", "--steps", 2,
        "--lr", "1e-3", "--lr", "2e-3", "--out", tmp_path / "sweep.adapter", "--key", keys["key"],
    )  # fmt: skip
    assert_one_line_error(result, OutputPathError, "sweep.lr0.002.adapter", "is a folder")
    assert not (tmp_path / "sweep.lr0.001.adapter").exists()  # the first rate did not train either
