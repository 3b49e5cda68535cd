"""Where a dga (or lga) training step through a seal spends its memory, phase by phase (docs/benchmarks.md).

One process, like a train_memory.py worker: imports (the baseline), open the seal, build the step,
then `--steps` steps. Each phase's peak RSS is read and the peak mark reset at its end (Linux
/proc/self/clear_refs), so a row is the highest RSS within that phase, in MiB over the baseline.
The phases of a step: data + input adapter (torch), forward_for_backward (seal), loss + the seal's
backward, input-adapter backward + optimizer (torch).

Usage:
  .venv/bin/python benchmarks/train_memory_stages.py SEAL --key KEY [--method dga-seal] [--batch 8] [--steps 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seal_speed import gc_collect, hwm_bytes, reset_hwm, rss_bytes  # noqa: E402

M = 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seal", type=Path)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--method", default="dga-seal", choices=("dga-seal", "lga-seal"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch
    import torch._dynamo  # noqa: F401  (as train_memory.py: AdamW imports it on first use)
    from train_steps import make_step

    from sealkit.runtime.seal import Tower, open_seal
    from sealkit.seal.crypto import read_key

    torch.set_num_threads(args.threads)
    gc_collect()
    baseline = rss_bytes()
    reset_hwm()
    rows: list[tuple[str, float, float]] = []

    def phase(label: str) -> None:
        rows.append((label, (rss_bytes() - baseline) / M, (hwm_bytes() - baseline) / M))
        reset_hwm()

    seal = open_seal(args.seal, key=read_key(args.key), threads=args.threads)
    phase("open the seal (decrypt, weights)")
    original = {name: getattr(Tower, name) for name in ("forward_for_backward", "backward")}
    labels = {"forward_for_backward": "forward_for_backward (seal)", "backward": "the seal's backward"}
    before = {"forward_for_backward": "data + input adapter forward (torch)", "backward": "loss (torch)"}

    def wrapped(name):
        def run(self, *a, **k):
            phase(before[name])
            result = original[name](self, *a, **k)
            phase(labels[name])
            return result

        return run

    for name in original:
        setattr(Tower, name, wrapped(name))
    step = make_step(args.method, seal, None, args.batch)
    phase("build the step (adapters, optimizer)")
    for i in range(args.steps):
        step()
        phase(f"input-adapter backward + optimizer (torch), end of step {i + 1}")
    print(f"{args.method}, batch {args.batch}; MiB over the baseline (RSS after imports, {baseline / M:.0f} MiB)\n")
    print("| phase | RSS at its end | peak within it |")
    print("| --- | ---: | ---: |")
    for label, rss, peak in rows:
        print(f"| {label} | {rss:.0f} | {peak:.0f} |")
    print(f"\nseal weights {seal.weight_bytes / M:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
