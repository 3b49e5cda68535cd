"""Training sessions' settings, side by side: thread spinning and the memory arena (see docs/benchmarks.md).

Usage:
  .venv/bin/python benchmarks/session_ab.py SEAL --key seal.key [--tower text] --rounds 12 \
      --json benchmarks/results/session_ab_minilm.json
Opens the seal four times in one process, once per combination of onnxruntime's
`session.intra_op.allow_spinning` (1: onnxruntime's default, 0: what sealkit sets on training
graphs) and `training_arena` ("on" / "off"), and times, on the same random inputs, what a training
step runs through the backbone: the residual step (`forward_for_backward` then `backward`, back to
back), the recompute step (`forward` then `vjp`) and a `vjp` alone. Every round runs every
(variant, operation) once in a shuffled order after a short sleep; ratios are per round, against
sealkit's settings (no spinning, the tower's `auto` arena). Needs a seal exported with --residuals.
Never imports torch.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # profile_graph

from profile_graph import add_seal_arguments, random_feeds  # noqa: E402

from sealkit.fileio import atomic_write_json  # noqa: E402
from sealkit.runtime import seal as seal_module  # noqa: E402

SPINNING = "session.intra_op.allow_spinning"
OPERATIONS = ("residual step", "recompute step", "vjp")


def open_variant(path: Path, key: Path | None, threads: int, spinning: bool, arena: str) -> seal_module.Seal:
    """The seal with its training sessions' spinning forced on or off (sealkit turns it off)."""
    original = seal_module.Seal._session_options

    def options(self, training=False, in_graph_order=False, modality=""):
        made = original(self, training=training, in_graph_order=in_graph_order, modality=modality)
        if training and spinning:
            made.add_session_config_entry(SPINNING, "1")
        return made

    seal_module.Seal._session_options = options
    try:
        opened = seal_module.open_seal(path, key=key, threads=threads, training_arena=arena)
        for tower in opened.towers.values():
            for graph in ("forward", "vjp", "forward_saved", "backward"):
                tower._graph(graph)  # sessions are made on first use: make them under this variant
        return opened
    finally:
        seal_module.Seal._session_options = original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_seal_arguments(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # overriding sealkit's spinning entry is what this script is for: no warnings about it

    variants = {}
    for spinning in (False, True):
        for arena in ("on", "off"):
            opened = open_variant(args.seal, args.key, args.threads, spinning, arena)
            variants[f"spinning {'on' if spinning else 'off'}, arena {arena}"] = opened.tower(args.tower)
    tower = next(iter(variants.values()))
    if not tower.has_residual_graphs:
        sys.exit(f"{args.seal} has no residual graphs; export it with --residuals")
    auto_arena = "on" if seal_module.training_arena_on("auto", tower.spec.modality) else "off"
    reference = f"spinning off, arena {auto_arena}"
    feeds = random_feeds(tower, "forward", tower._graph("forward").session.get_inputs(), args.batch, args.seq)
    feeds = {spec.name: feeds[spec.name] for spec in tower.spec.inputs}
    cotangent = np.ones((args.batch, tower.output_dim), np.float32)

    def run(variant, operation: str) -> None:
        if operation == "residual step":
            _, residuals = variant.forward_for_backward(feeds)
            variant.backward(residuals, cotangent)
        elif operation == "recompute step":
            variant.forward(feeds)
            variant.vjp(feeds, cotangent)
        else:
            variant.vjp(feeds, cotangent)

    times: dict[tuple[str, str], list[float]] = {(v, op): [] for v in variants for op in OPERATIONS}
    for round_ in range(args.warmup + args.rounds):
        order = list(times)
        random.Random(round_).shuffle(order)
        for name, operation in order:
            time.sleep(0.1)  # let the previous call's threads go idle
            start = time.perf_counter()
            run(variants[name], operation)
            if round_ >= args.warmup:
                times[(name, operation)].append(time.perf_counter() - start)

    report = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "tower": tower.name, "reference": reference, "rows": []}
    print(f"tower '{tower.name}', batch {args.batch}, {args.threads} threads, {args.rounds} rounds; ratio = variant / ({reference}), per round")
    for operation in OPERATIONS:
        for name in variants:
            ratios = [a / b for a, b in zip(times[(name, operation)], times[(reference, operation)])]
            row = {
                "operation": operation,
                "variant": name,
                "median_ms": 1e3 * statistics.median(times[(name, operation)]),
                "ratio": statistics.median(ratios),
                "ratio_p25": float(np.percentile(ratios, 25)),
                "ratio_p75": float(np.percentile(ratios, 75)),
            }
            report["rows"].append(row)
            print(f"  {operation:15s} {name:26s} {row['median_ms']:7.1f} ms  {row['ratio']:.2f}x [{row['ratio_p25']:.2f}-{row['ratio_p75']:.2f}]")
    if args.json:
        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
