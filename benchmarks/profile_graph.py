"""Where a seal's graph spends its time: onnxruntime's profiler, summed per op type (see docs/benchmarks.md).

Usage:
  .venv/bin/python benchmarks/profile_graph.py SEAL --key seal.key --graph vjp --batch 8 [--weights shared]
Runs the graph `--runs` times on random inputs (`--graph backward`: on the residuals forward_saved
returns for random inputs) and reports the last run, per op type and, for convolutions, per kind
(dense or grouped, kernel, stride). Node names in the optimised graph come from
onnxruntime, so fused nodes (e.g. NCHWc convolutions) appear under their new op type.
Never imports torch.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sealkit.runtime.seal import open_seal  # noqa: E402
from sealkit.seal.obfuscate import external_weights, weights_as_inputs  # noqa: E402


def add_seal_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every seal-timing script takes: the seal, its key, the tower, and the batch and sequence sizes."""
    parser.add_argument("seal", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--tower")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64, help="sequence length of text towers")


def random_feeds(tower, graph: str, inputs, batch: int, seq: int, skip: set[str] = frozenset(), seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays for a seal graph's `inputs` (a session's get_inputs()), except the names in `skip`.

    Axes named "sequence" get `seq`, other named axes `batch`; int64 inputs (masks, ids) are ones. A
    backward graph is fed the residuals that forward_saved returns for random tower inputs, since
    their shapes are the activations' and cannot be read from the graph.
    """
    rng = np.random.default_rng(seed)
    sizes = {"batch": batch, "sequence": seq}

    def draw(shape, int64: bool) -> np.ndarray:
        shape = [sizes.get(d, batch) if isinstance(d, str) or d is None else d for d in shape]
        return np.ones(shape, np.int64) if int64 else rng.standard_normal(shape).astype(np.float32)

    arrays: dict[str, np.ndarray] = {}
    if graph == "backward":
        tower_feeds = {spec.name: draw(spec.shape, spec.dtype == "int64") for spec in tower.spec.inputs}
        _, residuals = tower.forward_for_backward(tower_feeds, chunk=batch)
        arrays.update(residuals.chunks[0])
    for value in inputs:
        if value.name not in skip and value.name not in arrays:
            arrays[value.name] = draw(value.shape, "int64" in value.type)
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seal", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--tower")
    parser.add_argument("--graph", default="vjp")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--weights", choices=("shared", "copied"), default="shared")
    args = parser.parse_args(argv)

    seal = open_seal(args.seal, key=args.key)
    tower = seal.tower(args.tower)
    model = onnx.ModelProto.FromString(seal.blob(tower.spec.graphs[args.graph]))
    weights = seal._weights.values_for(external_weights(model))
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "profile")
        options.optimized_model_filepath = ""
        feeds: dict = {}
        if args.weights == "copied":
            options.add_external_initializers(list(weights), list(weights.values()))
        else:
            weights_as_inputs(model)
            feeds.update(weights)
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        arrays = random_feeds(tower, args.graph, session.get_inputs(), args.batch, args.seq, skip=set(feeds))
        feeds.update({name: ort.OrtValue.ortvalue_from_numpy(value) for name, value in arrays.items()})
        names = [o.name for o in session.get_outputs()]
        for _ in range(args.runs):
            session.run_with_ort_values(names, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    last = runs[-1]
    start, end = last["ts"], last["ts"] + last["dur"]
    nodes = {n.name: n for n in model.graph.node}
    by_op: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    by_conv: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or not start <= e["ts"] <= end:
            continue
        op = e["args"].get("op_name", "?")
        by_op[op] += e["dur"]
        count[op] += 1
        node = nodes.get(e["name"][: -len("_kernel_time")])
        if op in ("Conv", "ConvTranspose") and node is not None:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            kind = "grouped" if attrs.get("group", 1) > 1 else "dense"
            by_conv[(op, kind, tuple(attrs.get("kernel_shape", [])), tuple(attrs.get("strides", [])))] += e["dur"]
    total = sum(by_op.values())
    print(f"{args.graph} of tower '{tower.name}', batch {args.batch}, weights {args.weights}: run times (ms) {[round(r['dur'] / 1e3, 1) for r in runs]}")
    for op, micros in by_op.most_common(15):
        print(f"  {op:24s} {micros / 1e3:8.1f} ms {100 * micros / total:5.1f}%  ({count[op]} nodes)")
    for key, micros in by_conv.most_common():
        print(f"  {key}: {micros / 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
