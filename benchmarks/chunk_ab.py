"""A training step through a seal in chunks of rows against the whole batch per run (see docs/benchmarks.md).

Usage:
  .venv/bin/python benchmarks/chunk_ab.py SEAL --key seal.key [--tower image] --batch 8 --chunks 0,8 \
      [--device cpu] [--threads 0] --rounds 12 --json benchmarks/results/chunk_ab.json
Opens the seal once per chunk size (`open_seal(..., training_chunk=N)`; 0 is the tower's default,
`Tower.training_chunk`), so no session runs two shapes, and times what a training step runs through
the backbone, `forward_for_backward` then `backward`, on the same random inputs. Every round runs
every chunk size once in a shuffled order; ratios are per round, against the last chunk size given.
Also reports the providers and each opening's chunk as the tower resolved it. Needs a seal exported
with --residuals. Never imports torch.
"""

from __future__ import annotations

import argparse
import os
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
from sealkit.runtime.seal import open_seal  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_seal_arguments(parser)
    parser.add_argument("--chunks", default="0,64", help="comma-separated training_chunk values; 0: the tower's default")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (open_seal's providers)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads; 0: onnxruntime's default (all cores)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    chunks = [int(c) for c in args.chunks.split(",")]
    towers = {}
    for chunk in chunks:
        opened = open_seal(args.seal, key=args.key, providers=args.device, threads=args.threads, training_chunk=chunk)
        towers[chunk] = opened.tower(args.tower)
    tower = towers[chunks[0]]
    if not tower.has_residual_graphs:
        sys.exit(f"{args.seal} has no residual graphs; export it with --residuals")
    feeds = random_feeds(tower, "forward", tower._graph("forward").session.get_inputs(), args.batch, args.seq)
    feeds = {spec.name: feeds[spec.name] for spec in tower.spec.inputs}
    cotangent = np.ones((args.batch, tower.output_dim), np.float32)

    def step(t) -> None:
        _, residuals = t.forward_for_backward(feeds)
        t.backward(residuals, cotangent)

    for _ in range(args.warmup):
        for t in towers.values():
            step(t)
    times: dict[int, list[float]] = {c: [] for c in chunks}
    order = list(chunks)
    rng = random.Random(0)
    for _ in range(args.rounds):
        rng.shuffle(order)
        for chunk in order:
            started = time.perf_counter()
            step(towers[chunk])
            times[chunk].append(time.perf_counter() - started)
    reference = chunks[-1]
    report = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "providers": towers[reference]._graph("backward").session.get_providers(),
        "cpu_count": os.cpu_count(),
        "results": {},
    }
    print(f"{tower.name} tower, batch {args.batch}, providers {report['providers']}, threads {args.threads or 'default'}, {args.rounds} rounds")
    for chunk in chunks:
        ratios = sorted(a / b for a, b in zip(times[chunk], times[reference]))
        row = {
            "resolved_chunk": towers[chunk].training_chunk,
            "median_ms": 1e3 * statistics.median(times[chunk]),
            "ratio_to_last": statistics.median(ratios),
            "ratio_p25_p75": [ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]],
            "seconds": times[chunk],
        }
        report["results"][str(chunk)] = row
        lo, hi = row["ratio_p25_p75"]
        print(f"  training_chunk {chunk} (runs {row['resolved_chunk']} rows): {row['median_ms']:.1f} ms, {row['ratio_to_last']:.3f}x [{lo:.3f}-{hi:.3f}] of chunk {reference}")
    if args.json:
        atomic_write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
