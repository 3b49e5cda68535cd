"""Recipe: the tiny text tower with three entry kinds, for the entry-kind and residual-graph tests.

A residual adapter on a block's output (channels last), prompt tokens entering a block (the sequence
grows), and a scale_shift on another block's MLP.
"""

from __future__ import annotations

from tiny_text import text_tower

from sealkit.compile.recipe import EntryPoint, Recipe


def recipe(seed: int = 0) -> Recipe:
    tower = text_tower(int(seed))
    width = tower.inputs[0].example.shape[-1]
    tower.entry_points = [
        EntryPoint("blocks.0", kind="residual", shape=(width,), rank=6),
        EntryPoint("blocks.1", kind="prompt", tokens=4),
        EntryPoint("blocks.2.mlp", kind="scale_shift", shape=(width,)),
    ]
    return Recipe(name="tiny-text-kinds", towers=[tower])
