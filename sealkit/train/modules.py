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


class ImageInputAdapter(nn.Module):
    """pixels -> pixels + conv(gelu(conv(pixels))): a residual conv net, the identity at start."""

    def __init__(self, channels: int = 3, width: int = 16):
        super().__init__()
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # Memory, not maths: channels-last spares oneDNN padding 3-channel images to 16-channel blocks,
        # and the hidden layer ([N, width, H, W], 8x the pixels) is recomputed in the backward
        # instead of being held while the seal runs (EfficientNet-Lite0 at batch 8: 54 -> 5 MiB held).
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        branch = checkpoint(self._branch, pixels, use_reentrant=False) if torch.is_grad_enabled() else self._branch(pixels)
        return (pixels + branch).contiguous()

    def _branch(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.gelu(self.conv_in(pixels), approximate="tanh"))


class TextInputAdapter(nn.Module):
    """Token embeddings -> e + up(gelu(down(e))) per token, plus optional learnable prompt tokens.

    The residual branch starts at zero. Prompt tokens (if any) are inserted after the first token
    (the [CLS] position) and the attention mask is extended to cover them.
    """

    def __init__(self, dim: int, rank: int = 32, prompts: int = 0, prompt_init_std: float = 0.02):
        super().__init__()
        self.down = nn.Linear(dim, rank)
        self.up = nn.Linear(rank, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.prompts = nn.Parameter(prompt_init_std * torch.randn(prompts, dim)) if prompts > 0 else None

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = embeddings + self.up(F.gelu(self.down(embeddings), approximate="tanh"))
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
    """One learnable tensor per seal entry point: `add` deltas start at zero, prompts small and random."""
    params = nn.ParameterDict()
    for ep in entry_points:
        shape = tuple(ep.shape)
        value = torch.zeros(shape) if ep.kind == "add" else init_std * torch.randn(shape)
        params[ep.name] = nn.Parameter(value)
    return params


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
