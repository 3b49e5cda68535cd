"""Owner side: keys, export a recipe to an encrypted and signed seal, verify it, check parity with torch.

    python examples/01_owner_export.py --recipe examples/my_recipe.py --out runs/examples
    python examples/01_owner_export.py --recipe tests/recipes/tiny_pair.py --out runs/examples --exposure light  # the seal examples 02-06 use

The same with the command line:
    sealkit keygen --out runs/examples/keys
    sealkit export examples/my_recipe.py --out runs/examples/my_recipe.seal --key runs/examples/keys/seal.key \
        --sign-key runs/examples/keys/sign.key --exposure light
    sealkit inspect runs/examples/my_recipe.seal --key runs/examples/keys/seal.key --verify-key runs/examples/keys/sign.pub
    sealkit check runs/examples/my_recipe.seal examples/my_recipe.py --key runs/examples/keys/seal.key
Needs: pip install 'sealkit[export]'.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sealkit.compile.check import DEFAULT_TOLERANCE, assert_parity, check_seal
from sealkit.compile.export import export_seal
from sealkit.compile.recipe import load_recipe
from sealkit.runtime.seal import open_seal
from sealkit.seal.crypto import read_key, read_signing_key, write_keys

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--recipe", type=Path, default=Path(__file__).with_name("my_recipe.py"))
parser.add_argument("--out", type=Path, default=Path("runs/examples"))
parser.add_argument("--exposure", choices=["dark", "light"], default="light", help="light: also the recipe's entry points (for lga)")
args = parser.parse_args()

# 1. Keys: seal.key (AES-256: give it to the devices you trust), sign.key (keep), sign.pub (publish).
keys = args.out / "keys"
if not (keys / "seal.key").exists():
    write_keys(keys)

# 2. Export: trace each tower, build its forward and VJP graphs, strip names, encrypt, sign.
recipe = load_recipe(args.recipe)
seal_path = args.out / f"{args.recipe.stem}.seal"
summary = export_seal(recipe, seal_path, key=read_key(keys / "seal.key"), signing_key=read_signing_key(keys / "sign.key"), exposure=args.exposure)
print(f"sealed {recipe.name!r} -> {seal_path} ({summary.seal_bytes / 1e6:.2f} MB, {summary.parameters:,} parameters)")

# 3. What a device sees: the manifest (shapes, preprocessing, entry points as ep0, ep1, ...), nothing more.
seal = open_seal(seal_path, key=keys / "seal.key", verify_key=keys / "sign.pub")  # refuses a bad signature
for name, tower in seal.manifest.towers.items():
    print(f"tower {name!r}: inputs {[list(s.shape) for s in tower.inputs]} -> {list(tower.output.shape)}, entry points {[ep.name for ep in tower.entry_points]}")

# 4. Parity: the seal's outputs and gradients against torch autograd on fresh random inputs.
rows = check_seal(seal, recipe)
assert_parity(rows, recipe.tolerance or DEFAULT_TOLERANCE)
print(f"parity ok: worst relative error {max(r.rel_error for r in rows):.1e}")
