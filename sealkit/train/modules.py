"""The learnable modules of gray-box adaptation: input adapters, output adapters and entry tensors.

Attribute names follow sealkit/adapters/layout.py, so a state_dict has the layout's tensor names, and
the numpy forms in sealkit/adapters/functional.py compute the same functions (GELU in tanh form).
Every adapter starts as (or near) the identity, so training begins from the frozen backbone's
behaviour. All are small: the defaults keep a method's adapters around 1% of the backbone or less.
Imports torch (the adapt path only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sealkit.adapters.layout import branch_suffix


class ImageInputAdapter(nn.Module):
    """pixels -> pixels + sum over dilations d of conv_d(gelu(conv_d(pixels))) [+ prompt]: the identity at start.

    The default, one branch of dilation 1, is the original adapter (each output pixel sees a 5x5
    neighbourhood). Dilation 2 spaces the 3x3 taps two pixels apart, so its branch sees 9x9 at the
    same cost: (1, 2) is a multi-scale adapter for upscaled or coarse images. `prompt_size` (H, W)
    adds one learnable pattern to every image (a visual prompt, zero at start): on mnist the only
    pixel-side design that moved validation accuracy (docs/results.md). Width 0: the prompt alone.
    """

    def __init__(self, channels: int = 3, width: int = 16, dilations: tuple[int, ...] = (1,), prompt_size: tuple[int, int] | None = None):
        super().__init__()
        self.prompt = nn.Parameter(torch.zeros(channels, *prompt_size)) if prompt_size is not None else None
        branches = dilations if width > 0 else ()  # width 0: no conv net
        self.suffixes = [branch_suffix(d) for d in branches]  # dilation 1 keeps the names conv_in/conv_out of older adapter files
        for dilation, suffix in zip(branches, self.suffixes):
            conv_in = nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation)
            conv_out = nn.Conv2d(width, channels, 3, padding=dilation, dilation=dilation)
            nn.init.zeros_(conv_out.weight)
            nn.init.zeros_(conv_out.bias)
            self.add_module(f"conv_in{suffix}", conv_in)
            self.add_module(f"conv_out{suffix}", conv_out)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # Memory, not maths: channels-last spares oneDNN padding 3-channel images to 16-channel blocks,
        # and the hidden layers ([N, width, H, W], 8x the pixels per branch) are recomputed in the
        # backward instead of being held while the seal runs (EfficientNet-Lite0 at batch 8: 54 -> 5 MiB held).
        out = pixels if self.prompt is None else pixels + self.prompt
        if not self.suffixes:
            return out
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        branches = checkpoint(self._branches, pixels, use_reentrant=False) if torch.is_grad_enabled() else self._branches(pixels)
        return (out + branches).contiguous()

    def _branches(self, pixels: torch.Tensor) -> torch.Tensor:
        total = None
        for suffix in self.suffixes:
            hidden = F.gelu(getattr(self, f"conv_in{suffix}")(pixels), approximate="tanh")
            branch = getattr(self, f"conv_out{suffix}")(hidden)
            total = branch if total is None else total + branch
        return total


class TextInputAdapter(nn.Module):
    """Token embeddings -> e + up(gelu(down(e))) per token [+ context(e)], plus optional learnable prompt tokens.

    The residual branches start at zero. `context` > 0 adds a depthwise convolution of that kernel
    across tokens (each embedding channel mixes with the same channel of its neighbours): padding is
    zeroed before it and its output zeroed at padding, so padding never leaks into real tokens. Prompt tokens (if any) are
    inserted after the first token (the [CLS] position) and the attention mask is extended to cover them.
    """

    def __init__(self, dim: int, rank: int = 32, prompts: int = 0, prompt_init_std: float = 0.02, context: int = 0):
        super().__init__()
        self.down = nn.Linear(dim, rank)
        self.up = nn.Linear(rank, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.context: nn.Conv1d | None = None
        if context > 0:
            self.context = nn.Conv1d(dim, dim, context, padding=context // 2, groups=dim, bias=False)
            nn.init.zeros_(self.context.weight)
        self.prompts = nn.Parameter(prompt_init_std * torch.randn(prompts, dim)) if prompts > 0 else None

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = embeddings + self.up(F.gelu(self.down(embeddings), approximate="tanh"))
        if self.context is not None:
            keep = mask.to(embeddings.dtype).unsqueeze(-1)  # [N, L, 1]
            mixed = self.context((embeddings * keep).transpose(1, 2)).transpose(1, 2)
            x = x + mixed * keep
        if self.prompts is None:
            return x, mask
        batch = x.shape[0]
        prompts = self.prompts.unsqueeze(0).expand(batch, -1, -1)
        x = torch.cat([x[:, :1], prompts, x[:, 1:]], dim=1)
        ones = torch.ones(batch, self.prompts.shape[0], dtype=mask.dtype)
        return x, torch.cat([mask[:, :1], ones, mask[:, 1:]], dim=1)


class OutputAdapter(nn.Module):
    """embedding -> [proj](embedding) + up(gelu(down(embedding))).

    With equal widths there is no projection: the adapter is the identity plus a residual MLP whose
    last layer starts at zero. With different widths (aligning two towers) `proj` is a random
    projection into the shared space. hidden=0 leaves only the projection (or the identity).
    """

    def __init__(self, dim_in: int, dim_out: int, hidden: int = 64):
        super().__init__()
        self.proj: nn.Linear | None = None
        if dim_in != dim_out:
            self.proj = nn.Linear(dim_in, dim_out)
            nn.init.normal_(self.proj.weight, std=1.0 / math.sqrt(dim_in))
            nn.init.zeros_(self.proj.bias)
        self.down = nn.Linear(dim_in, hidden) if hidden > 0 else None
        self.up = nn.Linear(hidden, dim_out) if hidden > 0 else None
        if self.up is not None:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        y = self.proj(embedding) if self.proj is not None else embedding
        if self.down is not None and self.up is not None:
            y = y + self.up(F.gelu(self.down(embedding), approximate="tanh"))
        return y


def entry_parameters(entry_points, init_std: float = 0.02) -> nn.ParameterDict:
    """One learnable tensor per seal entry point, each starting at (or near) the identity.

    add deltas and scale_shift start at zero; a residual adapter's `up` starts at zero and its
    `down` at a fan-in scaled normal (so `up` gets a gradient from the first step); prompts start
    small and random.
    """
    params = nn.ParameterDict()
    for ep in entry_points:
        shape = tuple(ep.shape)
        if ep.kind in ("add", "scale_shift"):
            value = torch.zeros(shape)
        elif ep.kind == "residual":
            value = torch.zeros(shape)
            value[0] = torch.randn(shape[1:]) / math.sqrt(shape[2])
        else:
            value = init_std * torch.randn(shape)
        params[ep.name] = nn.Parameter(value)
    return params


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
