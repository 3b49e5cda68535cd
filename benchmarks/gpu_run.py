"""The GPU path end to end, for a machine with an NVIDIA GPU and onnxruntime-gpu (docs/gpu.md).

Exports a recipe's seal (tiny by default; --recipe export/minilm.py for a real one), opens it on
`--device cpu` and on `--device cuda`, reports the providers each session really runs on, and times
forward and VJP at one batch size on both, side by side in one process (medians of --repeats).
Then runs a short `output` + `dga` adaptation through the CUDA-opened seal and checks that the
CUDA forward matches the CPU one. Results are printed and written as JSON with --json.

  pip uninstall -y onnxruntime && pip install 'sealkit[gpu,adapt,export]'   # see docs/gpu.md
  python benchmarks/gpu_run.py --recipe tests/recipes/tiny_text.py --batch 32 --json gpu_run.json

Needs the export and adapt extras (torch is used only to export and to train the adapters).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: session creation, CUDA kernels
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def tower_feeds(seal, tower, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    spec = tower.spec
    if spec.modality == "image":
        shape = [batch, *[int(d) for d in spec.inputs[0].shape[1:]]]
        return {spec.inputs[0].name: rng.normal(size=shape).astype(np.float32)}
    ids = rng.integers(5, 90, size=(batch, 16)).astype(np.int64)
    return {"token_embeddings": tower.embed_tokens(ids), "attention_mask": np.ones_like(ids)}


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 50, 220), "black": (15, 15, 15)}
OBJECTS = ["cat", "dog", "car", "ship", "shoe", "bag"]


def small_task(seal):
    """Colour words (a text tower) or colour images (an image-only seal), labelled by colour."""
    from sealkit.data.dataset import Dataset, Example

    if any(t.modality == "text" for t in seal.manifest.towers.values()):
        return Dataset([Example(text=f"a {c} {o}", label=c) for c in COLOURS for o in OBJECTS], name="words")
    rng = np.random.default_rng(0)
    size = [int(d) for d in next(iter(seal.manifest.towers.values())).inputs[0].shape[2:]]
    return Dataset(
        [Example(image=np.clip(np.asarray(rgb) + rng.normal(0, 15, (*size, 3)), 0, 255).astype(np.uint8), label=c) for c, rgb in COLOURS.items() for _ in range(8)],
        name="colours",
    )


def adapt_on_both(opened: dict, steps: int, work: Path) -> dict:
    """`output` then `dga` for `steps` steps on each device: seconds and best validation accuracy."""
    from sealkit.train.api import adapt
    from sealkit.train.loop import TrainConfig

    rows = {}
    for device, seal in opened.items():
        val, train = small_task(seal).split(0.25, seed=0)
        for method in ("output", "dga"):
            result = adapt(seal, train, val, work / f"{device}-{method}.adapter", method=method, task="classify",
                           config=TrainConfig(steps=steps, batch=16, lr=2e-3), progress=False, zero_shot=False)  # fmt: skip
            rows[f"{device}/{method}"] = {"seconds": round(result.fit.seconds, 2), "accuracy": round(result.fit.best_metric, 4)}
            print(f"adapt {device}/{method}:", rows[f"{device}/{method}"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "recipes" / "tiny_text.py")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20, help="adaptation steps per method (0 skips adaptation)")
    parser.add_argument("--devices", default="cpu,cuda", help="devices compared; the first is the reference (cpu alone: a dry run of this script)")
    parser.add_argument("--seal", type=Path, help="use this exported seal instead of exporting --recipe here (the owner exported it elsewhere)")
    parser.add_argument("--key", type=Path, help="the --seal's key file")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if (args.seal is None) != (args.key is None):
        parser.error("--seal and --key go together")

    import onnxruntime as ort

    from sealkit.compile.check import relative_error
    from sealkit.runtime.providers import active_providers
    from sealkit.runtime.seal import open_seal
    from sealkit.seal.crypto import read_key, write_keys

    print("onnxruntime", ort.__version__, "providers available:", ort.get_available_providers())
    devices = args.devices.split(",")
    if "cuda" in devices and "CUDAExecutionProvider" not in ort.get_available_providers():
        print("no CUDAExecutionProvider: install onnxruntime-gpu in place of onnxruntime (docs/gpu.md)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="sealkit-gpu-"))
    if args.seal is not None:
        seal_path, key_path = args.seal, args.key
        results: dict = {"seal": str(args.seal), "batch": args.batch, "towers": {}}
    else:
        from sealkit.compile.export import export_seal
        from sealkit.compile.recipe import load_recipe

        keys = write_keys(work / "keys")
        seal_path, key_path = work / "model.seal", keys["key"]
        started = time.perf_counter()
        export_seal(load_recipe(args.recipe), seal_path, key=read_key(key_path), exposure="dark")
        results = {"recipe": str(args.recipe), "batch": args.batch, "export_s": round(time.perf_counter() - started, 1), "towers": {}}

    rng = np.random.default_rng(0)
    opened = {device: open_seal(seal_path, key=key_path, providers=device) for device in devices}
    results["active_providers"] = {device: active_providers(seal) for device, seal in opened.items()}
    print("active providers:", results["active_providers"])
    reference = opened[devices[0]]
    for name in reference.towers:
        towers = {device: seal.tower(name) for device, seal in opened.items()}
        feeds = tower_feeds(reference, towers[devices[0]], args.batch, rng)
        expected = towers[devices[0]].forward(feeds)
        cotangent = np.ones_like(expected)
        expected_grads = towers[devices[0]].vjp(feeds, cotangent)
        row = {}
        for device, tower in towers.items():
            got = tower.forward(feeds)
            row[f"forward_rel_error_{device}"] = relative_error(got, expected)
            grads = tower.vjp(feeds, cotangent)
            row[f"vjp_rel_error_{device}"] = max(relative_error(grads.input_grads[name], want) for name, want in expected_grads.input_grads.items())
            row[f"forward_{device}_ms"] = 1e3 * median_seconds(lambda t=tower: t.forward(feeds), args.repeats)
            row[f"vjp_{device}_ms"] = 1e3 * median_seconds(lambda t=tower: t.vjp(feeds, cotangent), args.repeats)
        results["towers"][name] = row
        print(name, json.dumps({k: round(v, 4) for k, v in row.items()}))

    if args.steps:
        results["adapt"] = adapt_on_both(opened, args.steps, work)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print("wrote", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
