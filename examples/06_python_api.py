"""The Python API in one script: open a seal, load data, adapt, evaluate, deploy without torch.

    python examples/06_python_api.py --seal runs/examples/tiny_pair.seal --key runs/examples/keys/seal.key --steps 40

Needs: pip install 'sealkit[adapt]' for `adapt`; everything after it runs without torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sealkit

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--seal", type=Path, required=True)
parser.add_argument("--key", type=Path, required=True)
parser.add_argument("--verify-key", type=Path, help="the owner's sign.pub: refuse the seal unless its signature verifies")
parser.add_argument("--data", default=str(Path(__file__).with_name("data") / "reviews.csv"))
parser.add_argument("--out", type=Path, default=Path("runs/examples/api.adapter"))
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

# Open: verify (optional), decrypt in memory, choose the device ("cpu", "cuda" or "auto").
seal = sealkit.open_seal(args.seal, key=args.key, verify_key=args.verify_key, providers="cpu")
print("towers:", {name: tower.modality for name, tower in seal.manifest.towers.items()})

# Data: a named dataset, an image folder, or a CSV/TSV/JSONL table (columns picked by name here).
val, train = sealkit.load_dataset(args.data).split(0.25, seed=0)

# Adapt (imports torch): method output | dga | lga; task classify | retrieve.
result = sealkit.adapt(seal, train, val, args.out, method="dga", task="classify", config=sealkit.TrainConfig(steps=args.steps, batch=8, lr=0.01), progress=False)
print(f"{result.baseline_kind}: {result.zero_shot}; best {result.main_metric} {result.fit.best_metric:.3f} at step {result.fit.best_step}")

# Deploy: no torch from here on. Metrics on the torch-free runtime, then predictions and embeddings.
print("held-out accuracy:", round(sealkit.evaluate_adapter(seal, val, args.out)["accuracy"], 3))
task = sealkit.TaskRuntime(seal, args.out)
for text, predictions in zip(["a great fun film", "an awful boring plot"], task.classify(["a great fun film", "an awful boring plot"], "text", top_k=2)):
    print(f"{text!r}: " + ", ".join(f"{p.label} {p.score:.2f}" for p in predictions))
print("embedding shape:", task.embed(["a good movie"], "text").shape)
