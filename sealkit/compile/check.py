"""`sealkit check`: the owner's parity check of a seal against the recipe's torch modules.

Fresh random inputs at several batch sizes (and two sequence lengths for text) go through both the
seal and torch autograd; outputs and every gradient (inputs and entry points) are compared by
relative norm error, ||seal - torch|| / ||torch||. Imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sealkit.compile.export import tower_entry_module
from sealkit.compile.recipe import Recipe, TowerRecipe
from sealkit.errors import ParityError
from sealkit.runtime.seal import Seal

DEFAULT_TOLERANCE = 1e-4


@dataclass
class ParityRow:
    tower: str
    batch: int
    sequence: int | None
    quantity: str
    rel_error: float


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    denom = float(np.linalg.norm(want))
    diff = float(np.linalg.norm(np.asarray(got, dtype=np.float64) - np.asarray(want, dtype=np.float64)))
    return diff / denom if denom > 0 else diff


def _vocab_size(embed: torch.nn.Module) -> int:
    """How many token ids the embed module accepts (its first nn.Embedding), so random ids stay in range."""
    for sub in embed.modules():
        if isinstance(sub, torch.nn.Embedding):
            return int(sub.num_embeddings)
    return 5000


def _random_inputs(tower: TowerRecipe, batch: int, sequence: int, generator: torch.Generator) -> list[torch.Tensor]:
    values = []
    for spec in tower.inputs:
        shape = [batch if spec.dims.get(a) == "batch" else sequence if spec.dims.get(a) == "sequence" else s for a, s in enumerate(spec.example.shape)]
        if spec.example.dtype.is_floating_point:
            if tower.modality == "text" and spec is tower.inputs[0]:
                high = min(5000, _vocab_size(tower.embed))
                ids = torch.randint(min(1000, high // 2), high, shape[:2], generator=generator)
                with torch.no_grad():
                    values.append(tower.embed(ids).float())
            else:
                values.append(torch.randn(shape, generator=generator))
        else:
            mask = torch.ones(shape, dtype=spec.example.dtype)
            if len(shape) == 2 and shape[1] > 3:
                mask[0, shape[1] // 2 :] = 0  # one padded row, as a real batch has
            values.append(mask)
    return values


def check_tower(seal: Seal, tower: TowerRecipe, batches=(1, 3, 8), sequences=(5, 17), with_entries: bool = True, seed: int = 0) -> list[ParityRow]:
    """Compare the sealed tower against torch; returns one row per quantity and shape.

    A seal with residual graphs is also checked through forward_for_backward + backward, once in
    one chunk and once in chunks of 2 (as long batches run on a device).
    """
    runtime = seal.tower(tower.name)
    exposure = seal.manifest.exposure if with_entries else "dark"
    module, entry_specs, _ = tower_entry_module(tower, exposure)
    module.eval()
    generator = torch.Generator().manual_seed(seed)
    rows: list[ParityRow] = []
    for sequence in sequences if tower.modality == "text" else (None,):
        for batch in batches:
            inputs = _random_inputs(tower, batch, sequence or 0, generator)
            entries = [0.1 * torch.randn(ep.shape, generator=generator) for ep in entry_specs]
            leaves = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
            entry_leaves = [e.clone().requires_grad_(True) for e in entries]
            output = module(*leaves, *entry_leaves)
            cotangent = torch.randn(output.shape, generator=generator)
            output.backward(cotangent)
            want = {spec.name: leaf.grad.numpy() for spec, leaf in zip(tower.inputs, leaves) if spec.differentiable}
            want_entries = {ep.name: leaf.grad.numpy() for ep, leaf in zip(entry_specs, entry_leaves)}
            feeds = {spec.name: t.numpy() for spec, t in zip(tower.inputs, inputs)}
            entry_feeds = {ep.name: e.numpy() for ep, e in zip(entry_specs, entries)} or None

            def add(quantity: str, got: np.ndarray, expected: np.ndarray) -> None:
                rows.append(ParityRow(tower.name, batch, sequence, quantity, relative_error(got, expected)))

            def add_grads(result, label: str = "") -> None:
                for name, expected in want.items():
                    add(f"grad {name}{label}", result.input_grads[name], expected)
                for ep in entry_specs:
                    add(f"grad {ep.name} ({ep.kind}){label}", result.entry_grads[ep.name], want_entries[ep.name])

            add("forward", runtime.forward(feeds, entry_feeds), output.detach().numpy())
            add_grads(runtime.vjp(feeds, cotangent.numpy(), entry_feeds))
            if runtime.has_residual_graphs:
                for chunk in (64, 2) if batch > 2 else (64,):
                    label = " [residuals]" if chunk == 64 else f" [residuals, chunk {chunk}]"
                    saved_output, residuals = runtime.forward_for_backward(feeds, entry_feeds, chunk=chunk)
                    add("forward_saved" + label, saved_output, output.detach().numpy())
                    add_grads(runtime.backward(residuals, cotangent.numpy()), label)
    return rows


def check_seal(seal: Seal, recipe: Recipe, tolerance: float = DEFAULT_TOLERANCE, batches=(1, 3, 8), sequences=(5, 17)) -> list[ParityRow]:
    """Check every tower the seal holds; raise ParityError when a relative error exceeds `tolerance`."""
    towers = {t.name: t for t in recipe.towers}
    missing = set(seal.towers) - set(towers)
    if missing:
        raise ParityError(f"the recipe has no tower(s) {sorted(missing)} that the seal holds; is this the seal's recipe?")
    rows: list[ParityRow] = []
    for name in seal.towers:
        rows += check_tower(seal, towers[name], batches, sequences, with_entries=False)
        if seal.towers[name].entry_points:
            rows += [ParityRow(r.tower, r.batch, r.sequence, r.quantity + " [entries]", r.rel_error) for r in check_tower(seal, towers[name], batches, sequences)]
    return rows


def worst(rows: list[ParityRow]) -> ParityRow:
    return max(rows, key=lambda r: r.rel_error)


def assert_parity(rows: list[ParityRow], tolerance: float) -> None:
    bad = worst(rows)
    if bad.rel_error > tolerance:
        where = f"batch {bad.batch}" + (f", sequence {bad.sequence}" if bad.sequence else "")
        raise ParityError(f"tower '{bad.tower}' {bad.quantity} at {where} differs from torch by {bad.rel_error:.2e} (tolerance {tolerance:.0e}); re-export the seal from this recipe")
