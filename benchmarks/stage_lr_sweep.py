"""The sweep behind dga's defaults: input-side lr x output-side lr, with and without the fitted start.

dga through the EfficientNet-Lite0 seal (64 px, linear head) on mnist-5k, same data and seed for
every setting; the choice is made on validation accuracy (test is reported, never used to choose).
`output_lr` "auto" is the rate the output-stage fit picks on cached features (sealkit/train/probe.py);
"no-probe" is the old behaviour (no fitted start, one learning rate for everything).

Reproduce (what docs/results.md reports):
  PYTHONPATH=. .venv/bin/python benchmarks/stage_lr_sweep.py --seal-dir .cache --steps 60 --train 1000 --val 300 --test 300 --settings 2,1,3,4,0,6
Finished settings in --out are skipped, so an interrupted run continues.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from probe_check import ROOT, get_seal, memoise_objectives, task_data  # noqa: E402

import sealkit.train.api as api  # noqa: E402
from sealkit.fileio import atomic_write_json  # noqa: E402
from sealkit.train.config import TrainConfig  # noqa: E402

# (name, method, lr, output_lr, probe)
SETTINGS = [
    ("output", "output", 2e-3, None, True),
    ("dga no-probe lr 2e-3", "dga", 2e-3, 2e-3, False),
    ("dga lr 2e-3 out auto", "dga", 2e-3, None, True),
    ("dga lr 2e-3 out 1e-3", "dga", 2e-3, 1e-3, True),
    ("dga lr 5e-3 out auto", "dga", 5e-3, None, True),
    ("dga lr 5e-4 out auto", "dga", 5e-4, None, True),
    ("dga lr 1e-2 out auto", "dga", 1e-2, None, True),
    ("dga lr 2e-3 out 0", "dga", 2e-3, 0.0, True),  # the fitted head and output adapter frozen: the input adapter alone
    ("dga lr 1e-2 out 0", "dga", 1e-2, 0.0, True),
    ("dga lr 5e-4 out 0", "dga", 5e-4, 0.0, True),
    ("dga no-probe lr 1e-2", "dga", 1e-2, 1e-2, False),
    ("output no-probe lr 1e-2", "output", 1e-2, 1e-2, False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--settings", default="", help="comma-separated indices into SETTINGS (default all)")
    parser.add_argument("--seal-dir", type=Path, default=ROOT / ".cache")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stage_lr_sweep.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    memoise_objectives()
    seal = get_seal("effnet" if args.task in ("mnist", "fashion") else "minilm", args.seal_dir)
    train, val, test, options = task_data(args.task, args.seed, args.train, args.val, args.test)
    report = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    done = {(r["task"], r["name"], r["seed"], r["steps"]) for r in report["runs"]}
    chosen = [SETTINGS[int(i)] for i in args.settings.split(",")] if args.settings else SETTINGS
    for name, method, lr, output_lr, probe in chosen:
        if (args.task, name, args.seed, args.steps) in done:
            continue
        config = TrainConfig(steps=args.steps, lr=lr, output_lr=output_lr, probe=probe, seed=args.seed)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "task.adapter"
            result = api.adapt(seal, train, val, out, method=method, task="classify", config=config, progress=False, **options)
            test_metrics = api.evaluate(seal, test, adapter=out)
        run = {
            "task": args.task, "name": name, "seed": args.seed, "steps": args.steps, "method": method, "lr": lr, "output_lr": output_lr, "probe": probe,
            "val_best": result.fit.best_metric, "best_step": result.fit.best_step, "history": result.fit.history,
            "test": test_metrics["accuracy"], "seconds": time.perf_counter() - started,
            "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        }
        report["runs"].append(run)
        atomic_write_json(args.out, report)
        print(f"{name}: val {run['val_best']:.4f} (step {run['best_step']}) test {run['test']:.4f} in {run['seconds']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
