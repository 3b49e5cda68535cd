"""The matrix-product floor of a text training step: how much of torch's step no runtime can remove.

A seal training step through all-MiniLM-L6-v2 (frozen weights, gradient for the input only) must
compute, per layer, the forward's six linear products and two attention products, and the
backward's one product per linear (dY @ W) and four per attention. Issue #13 asks the seal's step to
take at most 0.8x torch's forward + backward. This script times, interleaved in one process:

- torch's step (the export recipe's module, as `seal_speed.py` times it);
- exactly those matrix products alone, on the same shapes, in torch (MKL) and in onnxruntime (MLAS),
  the latter with the linears' weights as constants (prepacked, `--weights copied`) and as graph
  inputs (sealkit's shared weights).

Each product's share of torch's step is the fraction of the step that stays even if every other
operation (softmax, GELU, LayerNorm, masks, saving residuals) cost nothing.

Usage:
  .venv/bin/python benchmarks/matmul_floor.py --threads 2 --rounds 15 --json benchmarks/results/matmul_floor.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from export.minilm import HEADS, HIDDEN, load_model  # noqa: E402
from sealkit.fileio import atomic_write_json  # noqa: E402

LAYERS, FFN = 6, 1536


def step_products(batch: int, seq: int, rng: np.random.Generator) -> tuple[list, list]:
    """(linear products, attention products) of one step: (A, B) pairs of float32 arrays, A @ B each."""
    tokens, width = batch * seq, HIDDEN // HEADS
    linears, attention = [], []
    for _ in range(LAYERS):
        for fan_in, fan_out in [(HIDDEN, HIDDEN)] * 4 + [(HIDDEN, FFN), (FFN, HIDDEN)]:  # q, k, v, out, FFN in, FFN out
            linears.append((rng.standard_normal((tokens, fan_in), np.float32), rng.standard_normal((fan_in, fan_out), np.float32)))  # X W^T
            linears.append((rng.standard_normal((tokens, fan_out), np.float32), rng.standard_normal((fan_out, fan_in), np.float32)))  # dY W
        square = rng.standard_normal((batch, HEADS, seq, seq), np.float32)
        thin = rng.standard_normal((batch, HEADS, seq, width), np.float32)
        thin_t = np.ascontiguousarray(thin.swapaxes(-1, -2))
        attention += [(thin, thin_t), (square, thin)]  # forward: Q K^T, P V
        attention += [(square, thin), (thin, thin_t), (square, thin), (square, thin)]  # backward: dV, dP, dQ, dK
    return linears, attention


def onnx_session(linears: list, attention: list, threads: int, constant_weights: bool) -> tuple[ort.InferenceSession, dict]:
    """One graph of all the products; the linears' B as initializers (constant) or as inputs."""
    nodes, inputs, initializers, feeds = [], [], [], {}
    for n, (a, b) in enumerate(linears + attention):
        a_name, b_name = f"a{n}", f"b{n}"
        inputs.append(helper.make_tensor_value_info(a_name, TensorProto.FLOAT, list(a.shape)))
        feeds[a_name] = a
        if constant_weights and n < len(linears):
            initializers.append(numpy_helper.from_array(b, b_name))
        else:
            inputs.append(helper.make_tensor_value_info(b_name, TensorProto.FLOAT, list(b.shape)))
            feeds[b_name] = b
        nodes.append(helper.make_node("MatMul", [a_name, b_name], [f"y{n}"]))
    outputs = [helper.make_tensor_value_info(f"y{n}", TensorProto.FLOAT, None) for n in range(len(nodes))]
    model = helper.make_model(helper.make_graph(nodes, "products", inputs, outputs, initializers), opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as sealkit's training sessions
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]), feeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, _ = load_model()
    model.eval().requires_grad_(False)
    x0 = 0.05 * torch.randn(args.batch, args.seq, HIDDEN)
    mask = torch.ones(args.batch, args.seq, dtype=torch.long)

    def torch_step() -> None:
        x = x0.clone().requires_grad_(True)
        y = model(x, mask)
        y.backward(torch.ones_like(y))

    linears, attention = step_products(args.batch, args.seq, np.random.default_rng(0))
    pairs = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in linears + attention]

    def torch_products() -> None:
        for a, b in pairs:
            torch.matmul(a, b)

    prepacked, prepacked_feeds = onnx_session(linears, attention, args.threads, constant_weights=True)
    shared, shared_feeds = onnx_session(linears, attention, args.threads, constant_weights=False)
    variants = {
        "torch step": torch_step,
        "products, torch": torch_products,
        "products, onnxruntime, constant weights": lambda: prepacked.run(None, prepacked_feeds),
        "products, onnxruntime, weights as inputs": lambda: shared.run(None, shared_feeds),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.warmup + args.rounds):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - started)
    step = statistics.median(times["torch step"])
    rows = [{"what": name, "median_ms": round(1e3 * statistics.median(t), 2), "share_of_torch_step": round(statistics.median(t) / step, 3)} for name, t in times.items()]
    flops = 2 * sum(a.size * b.shape[-1] for a, b in linears + attention)
    print(f"MiniLM step, batch {args.batch}, sequence {args.seq}, {args.threads} threads, {args.rounds} interleaved rounds; {flops / 1e9:.1f} GFLOP of products")
    for row in rows:
        print(f"  {row['what']:<42} {row['median_ms']:8.1f} ms  {row['share_of_torch_step']:.2f}x torch's step")
    if args.json:
        atomic_write_json(args.json, {"batch": args.batch, "seq": args.seq, "threads": args.threads, "rounds": args.rounds, "gflop": round(flops / 1e9, 2), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
