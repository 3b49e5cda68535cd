"""One export pass, before and after: a seal's graph against the same graph rewritten by the pass (see docs/benchmarks.md).

Usage:
  .venv/bin/python benchmarks/pass_ab.py SEAL --key seal.key --graph forward_saved --pass compare_clip_outputs \
      --rounds 40 --json benchmarks/results/pass_ab_clip.json
Use a seal exported before the pass existed (else there is nothing left to rewrite). Both graphs run
in one process on the same random inputs, with copied weights (what `auto` picks for image seals),
interleaved in alternating order; the outputs must agree exactly. Reports the medians and the
per-round ratio (after / before). Never imports torch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # profile_graph

from profile_graph import random_feeds  # noqa: E402

from sealkit.compile import onnx_passes  # noqa: E402
from sealkit.fileio import atomic_write_json  # noqa: E402
from sealkit.runtime.seal import open_seal  # noqa: E402
from sealkit.seal.obfuscate import external_weights  # noqa: E402

PASSES = {
    "compare_clip_outputs": onnx_passes.compare_clip_outputs,
    "fold_crops_into_convolutions": onnx_passes.fold_crops_into_convolutions,
    "drop_softmax_guards": onnx_passes.drop_softmax_guards,
}


def session(model: onnx.ModelProto, weights: dict, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_external_initializers(list(weights), list(weights.values()))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seal", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--tower")
    parser.add_argument("--graph", default="forward_saved")
    parser.add_argument("--pass", dest="pass_name", choices=sorted(PASSES), default="compare_clip_outputs")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64, help="sequence length of text towers")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    seal = open_seal(args.seal, key=args.key)
    tower = seal.tower(args.tower)
    before = onnx.ModelProto.FromString(seal.blob(tower.spec.graphs[args.graph]))
    after = onnx.ModelProto.FromString(before.SerializeToString())
    rewritten = PASSES[args.pass_name](after)
    if not rewritten:
        raise SystemExit(f"{args.pass_name} changes nothing in this {args.graph} graph: was the seal exported with the pass already?")
    weights = seal._weights.values_for(external_weights(before))
    sessions = {"before": session(before, weights, args.threads), "after": session(after, weights, args.threads)}
    feeds = random_feeds(tower, args.graph, sessions["before"].get_inputs(), args.batch, args.seq)
    outputs = {name: s.run(None, feeds) for name, s in sessions.items()}
    if not all(np.array_equal(a, b) for a, b in zip(outputs["before"], outputs["after"])):
        raise SystemExit(f"{args.pass_name} changed the outputs of the {args.graph} graph")
    for _ in range(3):
        for s in sessions.values():
            s.run(None, feeds)
    times: dict[str, list[float]] = {"before": [], "after": []}
    ratios = []
    for r in range(args.rounds):
        for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
            t0 = time.perf_counter()
            sessions[name].run(None, feeds)
            times[name].append(time.perf_counter() - t0)
        ratios.append(times["after"][-1] / times["before"][-1])
    q = statistics.quantiles(ratios, n=4)
    result = {
        "seal": str(args.seal), "tower": tower.name, "graph": args.graph, "pass": args.pass_name, "nodes_rewritten": rewritten,
        "batch": args.batch, "threads": args.threads, "rounds": args.rounds, "outputs_identical": True,
        "before_ms": 1e3 * statistics.median(times["before"]), "after_ms": 1e3 * statistics.median(times["after"]),
        "per_round_ratio": {"median": statistics.median(ratios), "p25": q[0], "p75": q[2]},
    }  # fmt: skip
    print(f"{args.graph} ({args.pass_name}, {rewritten} nodes): before {result['before_ms']:.1f} ms, after {result['after_ms']:.1f} ms; "
          f"per-round ratio {q[1]:.3f} [{q[0]:.3f}-{q[2]:.3f}] over {args.rounds} rounds")  # fmt: skip
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
