"""Turn a tower's declared entry points into explicit graph inputs (LightGray-box exposure).

`WithEntryPoints(tower_module, entry_points)` is called as `(*inputs, *entry_tensors)`. Forward hooks
add the `add` deltas, scale and shift (`scale_shift`), run the bottleneck adapters (`residual`) and
insert/remove the `prompt` tokens, so the exported graphs take the entry tensors as ordinary inputs
and the VJP graph returns their gradients. Imports torch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sealkit.compile.recipe import EntryPoint


class WithEntryPoints(nn.Module):
    def __init__(self, module: nn.Module, entry_points: list[EntryPoint], n_inputs: int):
        super().__init__()
        self.module = module
        self.entry_points = list(entry_points)
        self.n_inputs = n_inputs
        self._current: tuple[torch.Tensor, ...] = ()
        submodules = dict(module.named_modules())
        for index, ep in enumerate(self.entry_points):
            target = submodules[ep.module]
            if ep.kind == "add":
                target.register_forward_hook(self._add_hook(index))
            elif ep.kind == "scale_shift":
                target.register_forward_hook(self._scale_shift_hook(index))
            elif ep.kind == "residual":
                target.register_forward_hook(self._residual_hook(index, ep.channel_axis))
            else:
                target.register_forward_pre_hook(self._prompt_insert_hook(index, ep))
                target.register_forward_hook(self._prompt_remove_hook(ep))

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        self._current = tuple(args[self.n_inputs :])
        try:
            return self.module(*args[: self.n_inputs])
        finally:
            self._current = ()

    def _add_hook(self, index: int):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
            if not self._current:  # the tower called directly, outside this wrapper
                return None
            return output + self._current[index]

        return hook

    def _scale_shift_hook(self, index: int):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
            if not self._current:
                return None
            scale, shift = self._current[index][0], self._current[index][1]
            return output * (1.0 + scale) + shift

        return hook

    def _residual_hook(self, index: int, channel_axis: int):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
            if not self._current:
                return None
            down, up = self._current[index][0], self._current[index][1]  # [rank, channels] each
            channels_last = output.movedim(channel_axis, -1)
            update = F.gelu(channels_last @ down.transpose(0, 1)) @ up
            return output + update.movedim(-1, channel_axis)

        return hook

    def _prompt_insert_hook(self, index: int, ep: EntryPoint):
        def hook(_module: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if not self._current:
                return None
            hidden = inputs[0]
            batch, length = hidden.shape[0], hidden.shape[1]
            prompt = self._current[index].to(hidden.dtype).unsqueeze(0).expand(batch, -1, -1)
            at = ep.insert_at
            new_hidden = torch.cat([hidden[:, :at], prompt, hidden[:, at:]], dim=1)
            rest = []
            for extra in inputs[1:]:
                if isinstance(extra, torch.Tensor) and extra.dim() >= 1 and extra.shape[-1] == length:
                    pad_shape = list(extra.shape[:-1]) + [ep.tokens]
                    pad = torch.zeros(pad_shape, dtype=extra.dtype, device=extra.device)
                    extra = torch.cat([extra[..., :at], pad, extra[..., at:]], dim=-1)
                rest.append(extra)
            return (new_hidden, *rest)

        return hook

    def _prompt_remove_hook(self, ep: EntryPoint):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
            if not self._current:
                return None
            at = ep.insert_at
            return torch.cat([output[:, :at], output[:, at + ep.tokens :]], dim=1)

        return hook


def entry_point_shape(ep: EntryPoint, tower_module: nn.Module) -> tuple[int, ...]:
    """The tensor shape of an entry point (see EntryPoint): what the device trains and feeds."""
    if ep.kind == "add":
        return tuple(int(s) for s in ep.shape)
    if ep.kind == "scale_shift":
        return (2, *(int(s) for s in ep.shape))
    if ep.kind == "residual":
        return (2, int(ep.rank), int(ep.shape[0]))
    width = ep.shape[-1] if ep.shape else _guess_width(tower_module, ep.module)
    return (ep.tokens, int(width))


def _guess_width(tower_module: nn.Module, path: str) -> int:
    """The hidden width of a transformer block: the in_features of its first Linear layer."""
    block = dict(tower_module.named_modules())[path]
    for sub in block.modules():
        if isinstance(sub, nn.Linear):
            return sub.in_features
    raise ValueError(f"cannot infer the width of block '{path}'; give the prompt entry point a shape=(width,)")
