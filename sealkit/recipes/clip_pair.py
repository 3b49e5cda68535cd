"""Recipe: an image-text pair, EfficientNet-Lite0 (images) with all-MiniLM-L6-v2 (texts).

The towers were trained separately, so their spaces are not aligned: a device aligns them by
training the output adapters (and, for dga/lga, the input adapters) on its own image-text data.
A two-tower recipe just lists both towers; see the single-tower recipes for each.
"""

from __future__ import annotations

from sealkit.compile.recipe import Recipe
from sealkit.recipes.efficientnet_lite0 import image_tower
from sealkit.recipes.minilm import text_tower


def recipe(image_size: int = 224, max_length: int = 64) -> Recipe:
    # EfficientNet's ReLU6 kinks move its input gradients by ~1e-3 relative; see efficientnet_lite0.py.
    return Recipe(
        name="efficientnet-lite0+all-MiniLM-L6-v2",
        towers=[image_tower(int(image_size)), text_tower(int(max_length))],
        tolerance=1e-2,
    )
