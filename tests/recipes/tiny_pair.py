"""Recipe: the tiny image and text towers together, a CLIP-style pair for image-text tests.

A two-tower recipe just lists both towers; the seal holds both, and they share nothing.
"""

from __future__ import annotations

from tiny_text import text_tower
from tiny_vit import image_tower

from sealkit.compile.recipe import Recipe


def recipe(seed: int = 0) -> Recipe:
    return Recipe(name="tiny-pair", towers=[image_tower(int(seed)), text_tower(int(seed))])
