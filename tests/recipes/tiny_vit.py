"""Recipe: a small ViT-style image encoder built in code with a fixed seed (the test backbone).

Read this file to write a recipe for your own model. A recipe file defines `recipe() -> Recipe`:
each Tower gives the PyTorch module, example inputs with their dynamic axes, which inputs are
differentiable, the entry points a LightGray-box seal may expose, and the preprocessing a device
must apply. `sealkit export tests/recipes/tiny_vit.py --out tiny.seal` compiles it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sealkit.compile.recipe import EntryPoint, InputSpec, Recipe, TowerRecipe

IMAGE_SIZE = 32
PATCH = 8
WIDTH = 64
DEPTH = 4
HEADS = 4
OUT_DIM = 48


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(y.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    """A pre-norm transformer block: x -> x + attn(ln(x)) -> x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """pixels [batch, 3, 32, 32] -> embedding [batch, 48] (the class token, normed and projected)."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, WIDTH, PATCH, PATCH)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, WIDTH))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + (IMAGE_SIZE // PATCH) ** 2, WIDTH))
        self.blocks = nn.ModuleList([Block(WIDTH, HEADS) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, OUT_DIM)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


def build_model(seed: int = 0) -> TinyViT:
    torch.manual_seed(seed)
    return TinyViT().eval()


def image_tower(seed: int = 0) -> TowerRecipe:
    model = build_model(seed)
    return TowerRecipe(
        name="image",
        modality="image",
        module=model,
        # Batch 2 in the example keeps the batch axis symbolic; the graph accepts any batch size.
        inputs=[InputSpec("pixels", torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE), dims={0: "batch"})],
        entry_points=[
            # VPT-deep prompts entering two blocks, and an additive delta on a block's output.
            EntryPoint("blocks.1", kind="prompt", tokens=4),
            EntryPoint("blocks.3", kind="prompt", tokens=4),
            EntryPoint("blocks.2.mlp", kind="add", shape=(WIDTH,)),
        ],
        preprocessing={"kind": "image", "size": [IMAGE_SIZE, IMAGE_SIZE], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    )


def recipe(seed: int = 0) -> Recipe:
    return Recipe(name="tiny-vit", towers=[image_tower(int(seed))])
