"""Turn raw images and texts into a sealed tower's inputs, following the seal's preprocessing.

Images: decode, resize, normalise (size, mean and std from the manifest). Texts: the seal's own
tokenizer, then the tower's embed graph. This is the one place where items become tower inputs:
training, the task runtime and the server all call `tower_inputs`. Never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sealkit.data.images import preprocess_images
from sealkit.errors import DataError
from sealkit.runtime.seal import Tower


@dataclass
class TowerInputs:
    """A batch ready for a tower: its differentiable input (pixels, or token embeddings) and, for text, the mask.

    `values` may be a numpy array or, on the training side, a torch tensor (after a torch input adapter).
    """

    values: Any
    mask: Any = None

    def feeds(self, tower: Tower) -> dict[str, Any]:
        """Name the inputs as the tower's graphs do: the differentiable input first, then the mask."""
        names = [spec.name for spec in tower.spec.inputs]
        feeds = {names[0]: self.values}
        if self.mask is not None:
            if len(names) < 2:
                raise DataError(f"tower '{tower.name}' takes no attention mask")
            feeds[names[1]] = self.mask
        return feeds


def tower_inputs(tower: Tower, items: list) -> TowerInputs:
    """Pixels [N,3,H,W] for image files, bytes, PIL images or arrays; token embeddings and mask for texts."""
    if not items:
        raise DataError("nothing to encode: the input list is empty")
    if tower.spec.modality == "image":
        return TowerInputs(preprocess_images(list(items), tower.spec.preprocessing))
    if not all(isinstance(item, str) for item in items):
        raise DataError(f"tower '{tower.name}' takes texts, got {type(next(i for i in items if not isinstance(i, str))).__name__}")
    ids, mask = tower.text_encoder(list(items))
    return TowerInputs(tower.embed_tokens(ids), mask)


def plain_forward(tower: Tower, items: list, chunk: int = 64) -> np.ndarray:
    """The frozen backbone's output for raw items (no adapters)."""
    if not items:
        raise DataError("nothing to encode: the input list is empty")
    return np.concatenate([tower.forward(tower_inputs(tower, items[i : i + chunk]).feeds(tower)) for i in range(0, len(items), chunk)])
