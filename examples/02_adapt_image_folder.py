"""Device side: adapt a seal to an image folder (one subfolder per class) and predict new images.

    python examples/02_adapt_image_folder.py --seal runs/examples/tiny_pair.seal --key runs/examples/keys/seal.key \
        --folder examples/data/colours --steps 30

The command line does the same with `sealkit adapt SEAL --train FOLDER --method output --out TASK.adapter`.
Needs: pip install 'sealkit[adapt]' (torch trains the small adapters; the backbone stays sealed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sealkit.data import load_dataset
from sealkit.runtime.seal import open_seal
from sealkit.runtime.task import TaskRuntime
from sealkit.train.api import adapt
from sealkit.train.loop import TrainConfig

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--seal", type=Path, required=True)
parser.add_argument("--key", type=Path, required=True)
parser.add_argument("--folder", type=Path, default=Path(__file__).with_name("data") / "colours")
parser.add_argument("--out", type=Path, default=Path("runs/examples/colours.adapter"))
parser.add_argument("--method", choices=["output", "dga", "lga"], default="output")
parser.add_argument("--steps", type=int, default=30)
args = parser.parse_args()

seal = open_seal(args.seal, key=args.key)
data = load_dataset(str(args.folder))  # labels are the subfolder names
print(f"{len(data)} images, classes {data.class_names}")
val, train = data.split(0.25, seed=0)  # a seeded, class-balanced hold-out

# Train adapters around the sealed backbone; the best validation step is written to --out.
result = adapt(seal, train, val, args.out, method=args.method, task="classify",
               config=TrainConfig(steps=args.steps, batch=8, lr=5e-3, eval_every=max(1, args.steps // 2)))  # fmt: skip
print(f"{result.baseline_kind} accuracy {result.zero_shot['accuracy'] if result.zero_shot else float('nan'):.3f} -> "
      f"{args.method} {result.fit.best_metric:.3f}; adapter {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")  # fmt: skip

# Deployment needs no torch: the torch-free runtime reads the adapter file.
runtime = TaskRuntime(seal, args.out)
images = [str(e.image) for e in val.examples[:3]]
for path, predictions in zip(images, runtime.classify(images, "image", top_k=2)):
    print(f"{Path(path).parent.name}/{Path(path).name}: {predictions[0].label} ({predictions[0].score:.2f})")
