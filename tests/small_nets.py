"""Small torch modules and recipes that tests wrap (shared by the parity, entry-kind and residual-graph tests)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sealkit.compile.recipe import Recipe, load_recipe

RECIPES = Path(__file__).resolve().parent / "recipes"


class SmallConvNet(nn.Module):
    """pixels [batch, 3, H, W] -> [batch, out_dim]: a strided conv, a depthwise conv, pooling and a head."""

    def __init__(self, out_dim: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.stem_act = nn.Tanh()
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.depthwise_act = nn.GELU()
        self.head = nn.Linear(8, out_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.depthwise_act(self.depthwise(self.stem_act(self.stem(pixels))))
        return self.head(x.mean(dim=(2, 3)))


def text_kinds_recipe() -> Recipe:
    """The tiny text tower with three entry kinds (tests/recipes/tiny_text_kinds.py): a residual adapter on a
    block's output (channels last), prompt tokens entering a block (the sequence grows), a scale_shift on another block's MLP."""
    return load_recipe(RECIPES / "tiny_text_kinds.py")
