"""`sealkit export`: compile a recipe's towers to graphs, strip them, and write an encrypted, signed seal.

Imports torch (owner side only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from sealkit import __version__
from sealkit.compile.entry_points import WithEntryPoints, entry_point_shape
from sealkit.compile.graphs import export_forward, export_vjp
from sealkit.compile.onnx_passes import drop_softmax_guards
from sealkit.compile.recipe import Recipe, TowerRecipe
from sealkit.compile.residuals import split_vjp
from sealkit.errors import ExportError, RecipeError
from sealkit.seal.container import write_seal
from sealkit.seal.manifest import EXPOSURES, EntryPointSpec, Manifest, TensorSpec, TowerSpec
from sealkit.seal.obfuscate import WEIGHTS_BLOB, WeightPool, strip_model

Progress = Callable[[str], None]


@dataclass
class ExportSummary:
    path: Path
    manifest: Manifest
    seconds: float
    seal_bytes: int
    weight_bytes: int
    parameters: int


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _spec_shape(t: torch.Tensor, dims: dict[int, str]) -> tuple[int | str, ...]:
    return tuple(dims.get(axis, int(size)) for axis, size in enumerate(t.shape))


def tower_entry_module(tower: TowerRecipe, exposure: str) -> tuple[torch.nn.Module, list[EntryPointSpec], list[torch.Tensor]]:
    """The module to export for `exposure`, its entry-point specs, and example entry tensors."""
    if exposure == "dark" or not tower.entry_points:
        return tower.module, [], []
    specs, examples = [], []
    generator = torch.Generator().manual_seed(0)
    for i, ep in enumerate(tower.entry_points):
        shape = entry_point_shape(ep, tower.module)
        specs.append(EntryPointSpec(f"ep{i}", ep.kind, shape))
        examples.append(0.01 * torch.randn(shape, generator=generator))
    return WithEntryPoints(tower.module, tower.entry_points, len(tower.inputs)), specs, examples


def _residual_specs(split) -> list[TensorSpec]:
    import onnx

    return [
        TensorSpec(value.name, shape, str(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)))
        for value, shape in zip(split.residuals, split.shapes)
    ]


def compile_tower(tower: TowerRecipe, exposure: str, pool: WeightPool, progress: Progress, residuals: bool = False) -> tuple[TowerSpec, dict[str, bytes]]:
    """Compile one tower to its stripped graphs; returns its manifest entry and blobs.

    With `residuals`, the VJP graph is also split into forward_saved + backward graphs (one forward
    per training step); their residual tensors are listed in the manifest.
    """
    tower.module.eval()
    inputs = tuple(spec.example for spec in tower.inputs)
    dims = [spec.dims for spec in tower.inputs]
    names = [spec.name for spec in tower.inputs]
    differentiable = [spec.differentiable for spec in tower.inputs]
    with torch.no_grad():
        example_out = tower.module(*inputs)
    if example_out.dim() != 2:
        raise RecipeError(f"tower '{tower.name}' must return a [batch, dim] tensor, got shape {tuple(example_out.shape)}")
    output_dims = {0: "batch"}
    what = f"tower '{tower.name}'"
    blobs: dict[str, bytes] = {}
    graphs: dict[str, str | None] = {}
    residual_specs: dict[str, list[TensorSpec]] = {}

    def add_graphs(suffix: str, module: torch.nn.Module, args: tuple, arg_dims: list, arg_names: list[str], diff: list[bool]) -> None:
        started = time.perf_counter()
        forward = export_forward(module, args, arg_dims, arg_names, tower.output_name, what, tower.max_sequence)
        if tower.finite_attention_bias:
            drop_softmax_guards(forward)
        graphs[f"forward{suffix}"] = f"{tower.name}/forward{suffix}"
        blobs[graphs[f"forward{suffix}"]] = strip_model(forward, pool)
        progress(f"{tower.name}: forward{suffix} graph, {len(forward.graph.node)} ops, {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        vjp = export_vjp(module, args, arg_dims, diff, arg_names, tower.output_name, output_dims, what, tower.max_sequence)
        if tower.finite_attention_bias:
            drop_softmax_guards(vjp)  # before the split, so forward_saved and backward lose their halves of each guard
        split = split_vjp(vjp, f"grad_{tower.output_name}", what) if residuals else None
        graphs[f"vjp{suffix}"] = f"{tower.name}/vjp{suffix}"
        blobs[graphs[f"vjp{suffix}"]] = strip_model(vjp, pool)
        progress(f"{tower.name}: vjp{suffix} graph, {len(vjp.graph.node)} ops, {time.perf_counter() - started:.1f}s")
        if split is not None:
            for kind, model in (("forward_saved", split.forward_saved), ("backward", split.backward)):
                graphs[f"{kind}{suffix}"] = f"{tower.name}/{kind}{suffix}"
                blobs[graphs[f"{kind}{suffix}"]] = strip_model(model, pool)
            residual_specs[f"forward_saved{suffix}"] = _residual_specs(split)
            progress(f"{tower.name}: forward_saved{suffix} + backward{suffix} graphs, {len(split.residuals)} residual tensors")

    # The plain graphs always exist, so a light seal still runs the unmodified backbone.
    add_graphs("", tower.module, inputs, dims, names, differentiable)
    module, entry_specs, entry_examples = tower_entry_module(tower, exposure)
    if entry_specs:
        add_graphs(
            "_entries",
            module,
            inputs + tuple(entry_examples),
            dims + [{} for _ in entry_specs],
            names + [ep.name for ep in entry_specs],
            differentiable + [True] * len(entry_specs),
        )

    embed_specs = None
    preprocessing = dict(tower.preprocessing)
    parameters = sum(p.numel() for p in tower.module.parameters())
    if tower.embed is not None and tower.embed_input is not None:
        started = time.perf_counter()
        spec = tower.embed_input
        embed = export_forward(tower.embed.eval(), (spec.example,), [spec.dims], [spec.name], tower.inputs[0].name, f"{what} embed", tower.max_sequence)
        graphs["embed"] = f"{tower.name}/embed"
        blobs[graphs["embed"]] = strip_model(embed, pool)
        embed_specs = {
            "input": TensorSpec(spec.name, _spec_shape(spec.example, spec.dims), _dtype_name(spec.example)),
            "output": TensorSpec(tower.inputs[0].name, _spec_shape(tower.inputs[0].example, tower.inputs[0].dims), "float32"),
        }
        parameters += sum(p.numel() for p in tower.embed.parameters())
        progress(f"{tower.name}: embed graph in {time.perf_counter() - started:.1f}s")
    if "tokenizer_json" in preprocessing:
        blobs[f"{tower.name}/tokenizer.json"] = preprocessing.pop("tokenizer_json").encode("utf-8")
        preprocessing["tokenizer"] = f"{tower.name}/tokenizer.json"
    elif "tokenizer_file" in preprocessing:
        tokenizer_path = Path(preprocessing.pop("tokenizer_file"))
        try:
            blobs[f"{tower.name}/tokenizer.json"] = tokenizer_path.read_bytes()
        except OSError as exc:
            raise RecipeError(f"tower '{tower.name}': cannot read tokenizer file {tokenizer_path}: {exc.strerror or exc}") from None
        preprocessing["tokenizer"] = f"{tower.name}/tokenizer.json"

    spec = TowerSpec(
        modality=tower.modality,
        inputs=[
            TensorSpec(s.name, _spec_shape(s.example, s.dims), _dtype_name(s.example), s.differentiable) for s in tower.inputs
        ],
        output=TensorSpec(tower.output_name, ("batch", int(example_out.shape[1])), "float32"),
        preprocessing=preprocessing,
        graphs=graphs,
        parameters=int(parameters),
        entry_points=entry_specs,
        embed=embed_specs,
        residuals=residual_specs,
    )
    return spec, blobs


def export_seal(
    recipe: Recipe,
    out: str | Path,
    key: bytes | None = None,
    signing_key=None,
    exposure: str = "dark",
    progress: Progress = lambda _msg: None,
    residuals: bool = False,
) -> ExportSummary:
    """Compile every tower of `recipe` and write the seal to `out` (atomically).

    `residuals` adds forward_saved + backward graphs: training runs one forward per step, and the
    device sees the intermediate activations the backward needs (listed in the manifest).
    """
    if exposure not in EXPOSURES:
        raise ExportError(f"exposure must be one of {EXPOSURES}, got {exposure!r}")
    if exposure == "light" and not any(t.entry_points for t in recipe.towers):
        raise ExportError(f"exposure light needs entry points, but recipe '{recipe.name}' declares none; export with exposure dark", topic="exposure-export")
    started = time.perf_counter()
    pool = WeightPool()
    towers: dict[str, TowerSpec] = {}
    blobs: dict[str, bytes] = {}
    for tower in recipe.towers:
        spec, tower_blobs = compile_tower(tower, exposure, pool, progress, residuals)
        towers[tower.name] = spec
        blobs.update(tower_blobs)
    blobs[WEIGHTS_BLOB] = pool.to_bytes()
    manifest = Manifest(
        name=recipe.name,
        exposure=exposure,
        towers=towers,
        blobs=[],
        producer={"name": "sealkit", "version": __version__},
    )
    manifest = write_seal(out, manifest, blobs, key=key, signing_key=signing_key)
    path = Path(out)
    progress(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f}s")
    return ExportSummary(
        path=path,
        manifest=manifest,
        seconds=time.perf_counter() - started,
        seal_bytes=path.stat().st_size,
        weight_bytes=len(blobs[WEIGHTS_BLOB]),
        parameters=sum(t.parameters for t in towers.values()),
    )
