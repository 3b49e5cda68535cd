"""Turn raw images and texts into a sealed tower's inputs, following the seal's preprocessing.

Images: decode, resize, normalise (size, mean and std from the manifest). Texts: the seal's own
tokenizer, then the tower's embed graph. Used by training and by inference; never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sealkit.data.images import preprocess_images
from sealkit.data.text import TextEncoder
from sealkit.errors import DataError
from sealkit.runtime.seal import Tower


@dataclass
class TextBatch:
    """Tokenized texts: ids and mask [batch, sequence] (int64), and their token embeddings."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_embeddings: np.ndarray


def _text_encoder(tower: Tower) -> TextEncoder:
    cached = getattr(tower, "_text_encoder", None)
    if cached is None:
        pre = tower.spec.preprocessing
        tokenizer_json = tower._seal.blob(pre["tokenizer"]).decode("utf-8")
        cached = TextEncoder.from_json(tokenizer_json, int(pre.get("max_length", 128)))
        tower._text_encoder = cached
    return cached


def image_inputs(tower: Tower, sources: list) -> np.ndarray:
    """Pixels [batch, 3, H, W] float32 for image files, bytes or arrays."""
    if tower.spec.modality != "image":
        raise DataError(f"tower '{tower.name}' takes text, not images")
    return preprocess_images(list(sources), tower.spec.preprocessing)


def text_inputs(tower: Tower, texts: list[str]) -> TextBatch:
    """Tokenize with the seal's tokenizer and look up token embeddings with its embed graph."""
    if tower.spec.modality != "text":
        raise DataError(f"tower '{tower.name}' takes images, not text")
    ids, mask = _text_encoder(tower)(list(texts))
    return TextBatch(ids, mask, tower.embed_tokens(ids))


def tower_feeds(tower: Tower, primary, mask=None) -> dict:
    """Name the tower's inputs: the differentiable one (pixels or token embeddings) and the mask."""
    names = [spec.name for spec in tower.spec.inputs]
    feeds = {names[0]: primary}
    if mask is not None:
        if len(names) < 2:
            raise DataError(f"tower '{tower.name}' takes no attention mask")
        feeds[names[1]] = mask
    return feeds


def plain_forward(tower: Tower, sources: list, chunk: int = 64) -> np.ndarray:
    """The frozen backbone's output for raw items (no adapters): images or texts by the tower's modality."""
    outputs = []
    for start in range(0, len(sources), chunk):
        part = sources[start : start + chunk]
        if tower.spec.modality == "image":
            outputs.append(tower.forward(tower_feeds(tower, image_inputs(tower, part))))
        else:
            batch = text_inputs(tower, part)
            outputs.append(tower.forward(tower_feeds(tower, batch.token_embeddings, batch.attention_mask)))
    if not outputs:
        raise DataError("nothing to encode: the input list is empty")
    return np.concatenate(outputs)
