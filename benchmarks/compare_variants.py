"""Paired differences between runs of benchmarks/quality.py kept in different files (e.g. a setting's variants).

report_quality.py merges files by run key, so two runs of one method with different flags (say --lr)
overwrite each other there. This script keeps them apart: each argument is FILE:METHOD, the first
is the base, and every other is compared with it on the seeds both have, for one task and budget:

  .venv/bin/python benchmarks/compare_variants.py --task mnist --steps 150 \\
      benchmarks/results/quality_seeds.json:lora benchmarks/results/quality_mnist150_lga_lr1e-2.json:lga

METHOD matches a run's method exactly or by its name before "[" (lga matches lga[entries=residual]).
Reports the test metric's mean, the best validation value's mean, and the difference with a 95%
interval from report_quality.py's two-level paired bootstrap (seeds and test examples).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_quality import base_method, common, paired_bootstrap, read_results  # noqa: E402


def runs_of(spec: str, task: str, steps: int) -> tuple[str, dict[int, dict]]:
    """FILE:METHOD -> (label, seed -> run)."""
    path, _, method = spec.rpartition(":")
    if not path or not method:
        raise SystemExit(f"{spec!r}: write FILE:METHOD, e.g. benchmarks/results/quality_seeds.json:lga")
    runs = [r for r in read_results(Path(path)).get("runs", {}).values() if r["task"] == task and r["steps"] == steps and method in (r["method"], base_method(r["method"]))]
    names = sorted({r["method"] for r in runs})
    if len(names) != 1:
        raise SystemExit(f"{spec!r}: {'no' if not names else 'several'} {task} runs at {steps} steps match {method!r} {names or ''}; name the method exactly")
    return f"{Path(path).stem}:{names[0]}", {r["seed"]: r for r in runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("specs", nargs="+", metavar="FILE:METHOD", help="the base first, then the variants")
    parser.add_argument("--task", required=True)
    parser.add_argument("--steps", type=int, required=True)
    args = parser.parse_args(argv)
    if len(args.specs) < 2:
        raise SystemExit("give a base and at least one variant")
    base_label, base = runs_of(args.specs[0], args.task, args.steps)
    for spec in args.specs[1:]:
        label, variant = runs_of(spec, args.task, args.steps)
        seeds, (v, b) = common([variant, base])
        if not seeds:
            raise SystemExit(f"{label} and {base_label} share no seed")
        lo, hi = paired_bootstrap([v, b], lambda x, y: x - y)
        val_v = np.mean([variant[s]["val_best"] for s in seeds])
        val_b = np.mean([base[s]["val_best"] for s in seeds])
        print(f"{label} - {base_label} ({args.task}, {args.steps} steps, seeds {seeds}): test {v.mean():.4f} - {b.mean():.4f} = "
              f"{100 * (v.mean() - b.mean()):+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}]; validation {val_v:.4f} vs {val_b:.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
