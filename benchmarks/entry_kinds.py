"""Which entry-point kind should a light seal declare? lga through seals that differ only in the kind.

Each run: export (once) a light seal of the task's backbone with the variant's recipe options, then
`sealkit.adapt` lga (or another method) on the benchmark's split (2000 / 400 / 1000, data seed 0),
and evaluate the kept adapter on test with the torch-free runtime. Choose on `val`; `test` is only
reported. Resumable: one JSON line per finished run in --out; a rerun skips the names it holds.

    .venv/bin/python benchmarks/entry_kinds.py mnist:residual:output:150:0 mnist:add:lga:150:0 \\
        mnist:scale_shift:lga:150:0 mnist:residual:lga:150:0
    .venv/bin/python benchmarks/entry_kinds.py rt:add:lga:150:0 rt:residual:lga:150:0 rt:deep:lga:150:0

A run is TASK:VARIANT:METHOD:STEPS:SEED[:LR]. Results of the runs in docs/results.md
("Entry-point kinds: chosen by measurement"): benchmarks/results/entry_kinds.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sealkit  # noqa: E402
from sealkit.adapters.config import AdapterConfig  # noqa: E402
from sealkit.compile.export import export_seal  # noqa: E402
from sealkit.compile.recipe import load_recipe  # noqa: E402
from sealkit.corpora.splits import task_splits  # noqa: E402
from sealkit.data.dataset import Dataset  # noqa: E402
from sealkit.runtime.evaluate import evaluate_adapter  # noqa: E402
from sealkit.runtime.seal import open_seal  # noqa: E402
from sealkit.seal.crypto import read_key, write_keys  # noqa: E402
from sealkit.train.config import TrainConfig  # noqa: E402

# recipe file and options per task and variant
VARIANTS = {
    "mnist": {
        "add": ("efficientnet_lite0.py", {"image_size": 96, "entries": "add"}),
        "scale_shift": ("efficientnet_lite0.py", {"image_size": 96, "entries": "scale_shift"}),
        "residual": ("efficientnet_lite0.py", {"image_size": 96, "entries": "residual"}),
    },
    "rt": {
        "add": ("minilm.py", {"max_length": 128}),
        "residual": ("minilm.py", {"max_length": 128, "entries": "residual", "entry_layers": [0, 1, 2, 3, 4, 5]}),
        "deep": ("minilm.py", {"max_length": 128, "prompt_layers": [0, 1, 2, 3, 4, 5], "prompt_tokens": 16, "entries": "none"}),
    },
}


def task_data(task: str) -> tuple[Dataset, Dataset, Dataset, dict]:
    """The benchmark's split (data seed 0, 2000 / 400 / 1000), as `sealkit demo` loads it."""
    if task == "mnist":
        return (*task_splits("mnist", 2000, 400, 1000), {"head": "linear"})
    return (*task_splits("rt-sentiment", 2000, 400, 1000), {"templates": ["a {} movie review."]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="TASK:VARIANT:METHOD:STEPS:SEED[:LR]")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "entry-kinds", help="seals, keys and adapters")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "entry_kinds.jsonl")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.work / "keys" / "seal.key").exists():
        write_keys(args.work / "keys")
    key = read_key(args.work / "keys" / "seal.key")
    done = {json.loads(line)["name"] for line in args.out.read_text().splitlines()} if args.out.exists() else set()
    data: dict[str, tuple] = {}
    for name in args.runs:
        task, variant, method, steps, seed, *lr = name.split(":")
        if name in done:
            continue
        recipe_file, options = VARIANTS[task][variant]
        seal_path = args.work / f"{task}-{variant}.seal"
        if not seal_path.exists():
            started = time.time()
            export_seal(load_recipe(ROOT / "export" / recipe_file, **options), seal_path, key=key, exposure="light")
            print(f"exported {seal_path.name} in {time.time() - started:.0f}s", flush=True)
        seal = open_seal(seal_path, key=key)
        if task not in data:  # load each task's data once
            data[task] = task_data(task)
        train, val, test, extra = data[task]
        adapter = args.work / f"{name.replace(':', '_')}.adapter"
        started = time.time()
        config = TrainConfig(steps=int(steps), batch=32, lr=float(lr[0]) if lr else 2e-3, seed=int(seed), max_eval=400)
        result = sealkit.adapt(seal, train, val, adapter, task="classify", config=config, adapter_config=AdapterConfig(method=method), progress=False, **extra)
        row = {
            "name": name,
            "val": result.fit.best_metric,
            "best_step": result.fit.best_step,
            "test": evaluate_adapter(seal, test, adapter)["accuracy"],
            "entry_parameters": sum(count for part, count in result.parameters.items() if part.endswith(".entries")),
            "seconds": time.time() - started,
        }
        print(row, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as file:
            file.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
