"""Many tasks on one sealed backbone, torch-free: open the seal once, load every adapter in a folder.

    python runtimes/python/serve_tasks.py model.seal adapters/ --key keys/seal.key "a great film" photo.jpg

Each task (TASK.adapter) labels, or embeds, the inputs it takes. The backbone's sessions and weights
are loaded once and shared; every task adds only its adapter arrays. Needs the core install only
(`pip install sealkit`: onnxruntime, onnx, numpy, pillow, tokenizers, cryptography, safetensors).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sealkit.data.images import IMAGE_EXTENSIONS
from sealkit.errors import SealkitError
from sealkit.runtime.seal import open_seal
from sealkit.serve.registry import Registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seal")
    parser.add_argument("adapters", help="folder of TASK.adapter files")
    parser.add_argument("inputs", nargs="+", help="image files and/or texts")
    parser.add_argument("--key", default=os.environ.get("SEALKIT_KEY"), help="AES key file (default: $SEALKIT_KEY)")
    parser.add_argument("--top-k", type=int, default=2)
    args = parser.parse_args(argv)

    try:
        seal = open_seal(args.seal, key=args.key)  # verified and decrypted in memory, once
        registry = Registry(seal, args.adapters)
        report = registry.scan()  # every *.adapter; another seal's adapter is refused, the rest load
    except SealkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for file_name, reason in report.refused.items():
        print(f"refused {file_name}: {reason}", file=sys.stderr)

    images = [i for i in args.inputs if Path(i).suffix.lower() in IMAGE_EXTENSIONS and Path(i).is_file()]
    texts = [i for i in args.inputs if i not in images]
    for task in registry.tasks():
        runtime = task.runtime
        for modality, items in (("image", images), ("text", texts)):
            if not items or modality not in task.modalities:
                continue
            if runtime.spec.task == "classify" and modality == runtime.query_modality:
                for item, predictions in zip(items, runtime.classify(items, modality, top_k=args.top_k)):
                    labels = ", ".join(f"{p.label} {p.score:.2f}" for p in predictions)
                    print(f"{task.name}\t{item}\t{labels}")
            else:
                embeddings = runtime.embed(items, modality)
                print(f"{task.name}\t{len(items)} {modality}(s)\tembeddings {embeddings.shape[0]}x{embeddings.shape[1]}")
    print(f"{len(registry)} task(s) on one backbone ({seal.weight_bytes / 1e6:.1f} MB of weights, loaded once)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
