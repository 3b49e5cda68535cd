"""A custom recipe: the file a model owner writes to seal their own PyTorch module.

`sealkit export examples/my_recipe.py ...` (or examples/01_owner_export.py) imports this file and
calls `recipe()`. A recipe names each tower's module, an example input (batch >= 2, so the batch
axis stays symbolic), which axes are dynamic, optional entry points for `lga`, and the
preprocessing a device must apply to raw data. Here: a small convolutional image encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from sealkit.compile.recipe import EntryPoint, InputSpec, Recipe, TowerRecipe

IMAGE_SIZE = 32


class SmallConvNet(nn.Module):
    """Your model: anything torch.export can trace (no data-dependent Python control flow)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.GELU(),
        )  # fmt: skip
        self.head = nn.Linear(32, 24)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels).mean(dim=(2, 3)))  # [batch, 24]: the embedding


def recipe(seed: int = 0) -> Recipe:
    torch.manual_seed(int(seed))  # options come from `sealkit export ... --set seed=1`
    tower = TowerRecipe(
        name="image",
        modality="image",
        module=SmallConvNet().eval(),
        inputs=[InputSpec("pixels", torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE), dims={0: "batch"})],
        # lga may add a learnable delta to this module's output; the seal names it only "ep0"
        entry_points=[EntryPoint("features.1", kind="add", shape=(16, 1, 1))],
        preprocessing={"kind": "image", "size": [IMAGE_SIZE, IMAGE_SIZE], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    )
    return Recipe(name="my-small-convnet", towers=[tower])
