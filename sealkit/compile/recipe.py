"""What a model owner writes: a recipe describes the towers of a backbone for `sealkit export`.

A recipe is a Python file with a function `recipe() -> Recipe` (see export/*.py for examples).
This module defines the dataclasses and loads recipe files. It imports torch.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sealkit.errors import RecipeError
from sealkit.seal.manifest import DYNAMIC_DIMS, ENTRY_KINDS


@dataclass
class InputSpec:
    """One input of a tower.

    `example` is a real tensor used for tracing (use batch >= 2 and sequence >= 2 so the dynamic
    sizes are not specialised). `dims` maps an axis to a dynamic dimension name ("batch" or
    "sequence"); other axes are fixed. Non-differentiable inputs (masks, ids) get no gradient.
    """

    name: str
    example: torch.Tensor
    dims: dict[int, str] = field(default_factory=lambda: {0: "batch"})
    differentiable: bool = True


@dataclass
class EntryPoint:
    """A place inside the tower where a LightGray-box adapter may inject learnable tensors.

    The kind decides what the device trains there and what its gradients reveal (docs/format.md):
    - "add": a delta of `shape` is added to the output of `module` (broadcast over the batch).
    - "scale_shift": the output is scaled and shifted per channel, `out * (1 + scale) + shift`;
      `shape` is the broadcast shape of one of them, e.g. (channels, 1, 1) for a conv feature map.
    - "residual": a bottleneck adapter of `rank` runs inside the graph on the output,
      `out + gelu(out @ down.T) @ up` along `channel_axis`; `shape` is (channels,). The device
      holds `down` and `up` (one [2, rank, channels] tensor); the activation never leaves the graph.
    - "prompt": `tokens` learnable tokens are inserted into the sequence entering the
      transformer block `module` at position `insert_at`, and removed from its output (VPT-deep).
      The block's first argument must be the [batch, sequence, width] hidden states; any other
      tensor argument whose last axis is the sequence (an additive attention bias) is padded with 0.
    The module path is the owner's secret: the manifest only says `ep0`, `ep1`, ...
    """

    module: str
    kind: str
    shape: tuple[int, ...] = ()
    tokens: int = 0
    insert_at: int = 1
    rank: int = 8
    channel_axis: int = -1


@dataclass
class TowerRecipe:
    """One encoder to seal.

    `module(*inputs, )` must return a [batch, dim] embedding. For a text tower, `embed` maps token
    ids to token embeddings; the tower's first input is those embeddings, so a device-side input
    adapter can act on them; `max_sequence` bounds the dynamic sequence axis (prompt entry points
    included), so keep it at or below what the model's position table allows. `preprocessing` says what the device must do to raw data:
      image: {"kind": "image", "size": [H, W], "mean": [...], "std": [...]}
      text:  {"kind": "text", "tokenizer_file": "path/to/tokenizer.json", "max_length": 128}
             (or "tokenizer_json": the tokenizer's JSON text instead of a file)
    `finite_attention_bias`: the module masks attention with a finite bias (BERT's -10000), so no
    row of attention scores is ever all -inf; export then drops the guard torch's attention keeps
    for such rows (compile/onnx_passes.drop_softmax_guards), which no such module needs. Leave it
    False for -inf or boolean masks.
    """

    name: str
    modality: str
    module: nn.Module
    inputs: list[InputSpec]
    preprocessing: dict[str, Any]
    output_name: str = "embedding"
    entry_points: list[EntryPoint] = field(default_factory=list)
    embed: nn.Module | None = None
    embed_input: InputSpec | None = None
    max_sequence: int = 256
    finite_attention_bias: bool = False


@dataclass
class Recipe:
    """A backbone: a public name and its towers (one, or two for an image-text pair).

    `tolerance` is the relative error `sealkit check` accepts for this backbone (None: 1e-4).
    """

    name: str
    towers: list[TowerRecipe]
    tolerance: float | None = None


def load_recipe(path: str | Path, **options: Any) -> Recipe:
    """Import a recipe file and call its `recipe(**options)`; check the result is consistent."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {path} not found; pass the path to a recipe such as export/minilm.py")
    module_name = f"_sealkit_recipe_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RecipeError(f"cannot import recipe {path}; it must be a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    # Recipes may import their neighbours (export/clip_pair.py imports export/minilm.py).
    folder = str(path.resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        raise RecipeError(f"recipe {path} needs the package '{exc.name}'; install it (see the README's setup command)") from None
    except Exception as exc:  # a recipe is user code: report any failure in one line
        raise RecipeError(f"recipe {path} failed to import: {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(folder)
    build = getattr(module, "recipe", None)
    if not callable(build):
        raise RecipeError(f"recipe {path} has no function `recipe()`; see export/efficientnet_lite0.py for the form")
    accepted = inspect.signature(build).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise RecipeError(f"recipe {path} takes no option(s) {', '.join(unknown)}; it takes: {', '.join(accepted) or 'none'}")
    try:
        recipe = build(**options)
    except Exception as exc:
        raise RecipeError(f"recipe {path} failed to build its model: {type(exc).__name__}: {exc}") from None
    validate_recipe(recipe, path)
    return recipe


def validate_recipe(recipe: Recipe, where: str | Path = "recipe") -> None:
    if not isinstance(recipe, Recipe) or not recipe.towers:
        raise RecipeError(f"{where}: recipe() must return a Recipe with at least one TowerRecipe")
    names = [t.name for t in recipe.towers]
    if len(set(names)) != len(names):
        raise RecipeError(f"{where}: tower names must be unique, got {names}")
    for tower in recipe.towers:
        if tower.modality not in ("image", "text"):
            raise RecipeError(f"{where}: tower '{tower.name}' has modality {tower.modality!r}; use 'image' or 'text'")
        if not tower.inputs or not tower.inputs[0].differentiable:
            raise RecipeError(f"{where}: tower '{tower.name}' needs a differentiable first input (pixels or token embeddings)")
        if tower.modality == "text" and (tower.embed is None or tower.embed_input is None):
            raise RecipeError(f"{where}: text tower '{tower.name}' needs `embed` and `embed_input` (token ids -> token embeddings)")
        kind = tower.preprocessing.get("kind")
        if kind != tower.modality:
            raise RecipeError(f"{where}: tower '{tower.name}' preprocessing kind {kind!r} must equal its modality {tower.modality!r}")
        for spec in tower.inputs + ([tower.embed_input] if tower.embed_input else []):
            bad = [d for d in spec.dims.values() if d not in DYNAMIC_DIMS]
            if bad:
                raise RecipeError(f"{where}: input '{spec.name}' uses unknown dynamic dims {bad}; use {DYNAMIC_DIMS}")
        submodules = dict(tower.module.named_modules())
        for ep in tower.entry_points:
            if ep.kind not in ENTRY_KINDS:
                raise RecipeError(f"{where}: entry point on '{ep.module}' has kind {ep.kind!r}; use one of {ENTRY_KINDS}")
            if ep.module not in submodules:
                raise RecipeError(f"{where}: entry point module '{ep.module}' is not inside tower '{tower.name}'")
            if ep.kind == "prompt" and ep.tokens < 1:
                raise RecipeError(f"{where}: prompt entry point on '{ep.module}' needs tokens >= 1")
            if ep.kind in ("add", "scale_shift") and not ep.shape:
                raise RecipeError(f"{where}: {ep.kind} entry point on '{ep.module}' needs a shape")
            if ep.kind == "residual" and (len(ep.shape) != 1 or ep.rank < 1):
                raise RecipeError(f"{where}: residual entry point on '{ep.module}' needs shape=(channels,) and rank >= 1")
