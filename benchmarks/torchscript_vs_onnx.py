"""Would TorchScript (or torch.export's .pt2) make a better seal format than ONNX? The evidence.

On one module (export/tiny_vit.py's TinyViT image tower, or --recipe), side by side in one process:
  1. hiding: what a device can read back from each artifact after decrypting it in memory:
     parameter names and values (state_dict), the model's code, names inside the file;
  2. running without Python/torch: which runtime each artifact needs;
  3. the VJP: a scripted function computing input gradients, checked against torch autograd, vs
     the seal's VJP graph on onnxruntime;
  4. speed: forward and VJP medians at --batch with --threads threads (interleaved rounds).
Result: JSON on stdout (and --json PATH). docs/format.md ("Why ONNX, not TorchScript") quotes it.

  .venv/bin/python benchmarks/torchscript_vs_onnx.py --batch 8 --threads 1 --json benchmarks/results/torchscript_vs_onnx.json
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Optional  # TorchScript reads these annotations

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def medians(functions: dict, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in functions}
    for fn in functions.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in functions.items():  # interleaved: machine noise hits every variant alike
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: round(1e3 * statistics.median(t), 3) for name, t in times.items()}


def vjp_fn(module: torch.nn.Module):
    class VJP(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor, cotangent: torch.Tensor) -> torch.Tensor:
            x = x.detach().requires_grad_(True)
            y = self.inner(x)
            grad_outputs: list[Optional[torch.Tensor]] = [cotangent]
            grads = torch.autograd.grad([y], [x], grad_outputs)
            grad = grads[0]
            assert grad is not None
            return grad

    return VJP(module)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=ROOT / "export" / "tiny_vit.py")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sealkit.compile.export import export_seal
    from sealkit.compile.recipe import load_recipe
    from sealkit.runtime.seal import open_seal
    from sealkit.seal.crypto import read_key, write_keys

    recipe = load_recipe(args.recipe)
    tower = recipe.towers[0]
    module = tower.module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    x = torch.randn(args.batch, *tower.inputs[0].example.shape[1:])
    cotangent = torch.randn_like(module(x))
    secret_names = sorted({name.split(".")[0] for name, _ in module.named_parameters()})
    report: dict = {"recipe": str(args.recipe), "batch": args.batch, "threads": args.threads, "torch": torch.__version__}

    # --- the artifacts, held as bytes (as a decrypted seal would be) -------------------------------
    scripted_buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(module, x), scripted_buffer)
    scripted_bytes = scripted_buffer.getvalue()
    vjp_buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(vjp_fn(torch.jit.trace(module, x))), vjp_buffer)
    pt2_buffer = io.BytesIO()
    torch.export.save(torch.export.export(module, (x,)), pt2_buffer)
    work = Path(tempfile.mkdtemp())
    keys = write_keys(work / "keys")
    export_seal(recipe, work / "m.seal", key=read_key(keys["key"]))
    seal = open_seal(work / "m.seal", key=keys["key"], threads=args.threads)
    seal_tower = seal.tower(tower.name)

    # 1. hiding -------------------------------------------------------------------------------------
    def names_in_zip(data: bytes) -> dict:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            text = b"".join(z.read(n) for n in z.namelist())
            return {"files": len(z.namelist()), "module_names_in_file": [n for n in secret_names if n.encode() in text]}

    loaded = torch.jit.load(io.BytesIO(scripted_bytes))
    state = loaded.state_dict()
    program = torch.export.load(io.BytesIO(pt2_buffer.getvalue()))
    pt2_module = program.module()
    report["hiding"] = {
        "torchscript": {
            **names_in_zip(scripted_bytes),
            "state_dict_tensors": len(state),
            "state_dict_names_sample": sorted(state)[:4],
            "weights_equal_original": all(torch.equal(state[k], v) for k, v in module.state_dict().items() if k in state),
            "code_readable": "def forward" in loaded.code,
        },
        "pt2": {
            **names_in_zip(pt2_buffer.getvalue()),
            "state_dict_tensors": len(program.state_dict),
            "state_dict_names_sample": sorted(program.state_dict)[:4],
            "graph_readable": "def forward" in str(program.graph_module.code),
        },
        "seal_onnx": {
            "api_to_read_weights": "none in onnxruntime's session API; the decrypted weights blob is unnamed arrays",
            "module_names_in_decrypted_graphs": [n for n in secret_names if any(n.encode() in seal.blob(g) for t in seal.manifest.towers.values() for g in t.graphs.values() if g)],
        },
    }

    # 2./3. VJP agreement ---------------------------------------------------------------------------
    scripted_vjp = torch.jit.load(io.BytesIO(vjp_buffer.getvalue()))
    with torch.enable_grad():
        xr = x.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(module(xr), xr, cotangent)
    got_script = scripted_vjp(x, cotangent)
    got_seal = seal_tower.vjp(x.numpy(), cotangent.numpy()).input_grads[tower.inputs[0].name]
    rel = lambda a, b: float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))  # noqa: E731
    report["vjp"] = {"torchscript_rel_error": rel(got_script.detach(), expected), "seal_rel_error": rel(got_seal, expected.numpy())}
    report["runs_without_python"] = {
        "torchscript": "libtorch (C++), the full torch runtime; torch in Python otherwise",
        "pt2": "torch.export.load needs Python + torch; AOTInductor compiles it to a .so per target ahead of time",
        "seal_onnx": "onnxruntime: C, C++, C#, Java, JavaScript, Python; no torch",
    }

    # 4. speed --------------------------------------------------------------------------------------
    xn, cn = x.numpy(), cotangent.numpy()
    with torch.no_grad():
        forward = medians({"torchscript": lambda: loaded(x), "pt2": lambda: pt2_module(x), "eager": lambda: module(x), "seal": lambda: seal_tower.forward(xn)}, args.repeats)
    vjp = medians({"torchscript": lambda: scripted_vjp(x, cotangent), "seal": lambda: seal_tower.vjp(xn, cn)}, args.repeats)
    report["forward_ms"], report["vjp_ms"] = forward, vjp

    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
