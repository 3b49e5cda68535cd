"""The bridge from torch to a seal: a sealed tower as a differentiable torch function.

Forward runs the seal's forward graph; backward runs its VJP graph, so torch adapters before and
after the backbone (and entry-point tensors inside it) train through the frozen, hidden model.
When the seal has residual graphs and gradients are wanted, forward runs forward_saved and keeps
its residuals, and backward runs the backward graph on them: one forward per training step
instead of the VJP graph's recomputed one.
Imported only by the adapt path: it imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from sealkit.runtime.seal import Tower


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu").contiguous().numpy()


class _SealFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tower: Tower, fixed: dict, diff_names: list[str], entry_names: list[str], save: bool, *tensors: torch.Tensor):
        n_diff = len(diff_names)
        feeds = dict(fixed)
        feeds.update({name: _numpy(t) for name, t in zip(diff_names, tensors[:n_diff])})
        entries = {name: _numpy(t) for name, t in zip(entry_names, tensors[n_diff:])} or None
        ctx.tower, ctx.diff_names, ctx.entry_names = tower, diff_names, entry_names
        ctx.device = tensors[0].device if tensors else torch.device("cpu")
        if save:
            output, ctx.residuals = tower.forward_for_backward(feeds, entries)
        else:
            ctx.residuals, ctx.feeds, ctx.entries = None, feeds, entries
            output = tower.forward(feeds, entries)
        return torch.from_numpy(output).to(ctx.device)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        cotangent = _numpy(grad_output).astype(np.float32)
        if ctx.residuals is not None:
            result = ctx.tower.backward(ctx.residuals, cotangent)
            ctx.residuals = None  # the graph (and ctx) lives until the step ends; the residuals need not
        else:
            result = ctx.tower.vjp(ctx.feeds, cotangent, ctx.entries)
        grads = [torch.from_numpy(result.input_grads[n]).to(ctx.device) for n in ctx.diff_names]
        grads += [torch.from_numpy(result.entry_grads[n]).to(ctx.device) for n in ctx.entry_names]
        needs = ctx.needs_input_grad[5:]
        grads = [g if need else None for g, need in zip(grads, needs)]
        return (None, None, None, None, None, *grads)


def seal_forward(
    tower: Tower,
    inputs: Mapping[str, torch.Tensor | np.ndarray],
    entries: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run a sealed tower on torch tensors; gradients flow to differentiable inputs and entries.

    Non-differentiable inputs (attention masks) may be numpy arrays or tensors.
    """
    diff_names = [spec.name for spec in tower.spec.differentiable_inputs]
    fixed = {}
    for spec in tower.spec.inputs:
        if not spec.differentiable:
            value = inputs[spec.name]
            fixed[spec.name] = _numpy(value) if isinstance(value, torch.Tensor) else value
    entry_names = list(entries) if entries else []
    tensors = [inputs[n] for n in diff_names] + [entries[n] for n in entry_names] if entries else [inputs[n] for n in diff_names]
    tensors = [t if isinstance(t, torch.Tensor) else torch.from_numpy(t) for t in tensors]
    # residuals only pay off when a backward will follow; evaluation keeps the plain forward
    save = tower.has_residual_graphs and torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    return _SealFunction.apply(tower, fixed, diff_names, entry_names, save, *tensors)
