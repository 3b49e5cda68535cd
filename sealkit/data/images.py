"""Image loading and a seal's image preprocessing (resize, scale, normalise, CHW), with clear errors.

This module never imports torch: the same code prepares images for training and for inference.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from sealkit.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})

# What PIL raises for a file that is not an image, is truncated, or is corrupt.
_PIL_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

ImageSource = str | Path | np.ndarray | Image.Image


def image_file_problem(path: str | Path) -> str | None:
    """Why `path` is not a usable image file (missing, empty, wrong extension, unreadable header), or None.

    Decodes the pixels, so a truncated file is skipped (and reported) when the dataset is read
    instead of stopping training at the step that first uses it.
    """
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"extension '{path.suffix}' is not an image type ({', '.join(sorted(IMAGE_EXTENSIONS))})"
    if not path.is_file():
        return "file not found"
    if path.stat().st_size == 0:
        return "file is empty"
    try:
        with Image.open(path) as image:
            image.load()
    except _PIL_ERRORS as exc:
        return f"not a readable image ({_reason(exc)})"
    return None


def load_image(source: ImageSource) -> Image.Image:
    """Decode a path, a uint8 array (HxW or HxWx3) or a PIL image into an RGB PIL image."""
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    if isinstance(source, np.ndarray):
        return _array_to_image(source)
    if not isinstance(source, (str, Path)):
        raise DataError(f"cannot load an image from a {type(source).__name__}; pass a file path or a uint8 array")
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: image file not found; check the path (table image paths are relative to the table's folder)")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except _PIL_ERRORS as exc:
        raise DataError(f"{path}: not a readable image ({_reason(exc)}); replace or remove the file") from None


def decode_image_bytes(data: bytes, what: str) -> Image.Image:
    """Decode uploaded bytes (e.g. an HTTP form file) into an RGB image; `what` names it in errors."""
    if not data:
        raise DataError(f"{what}: the image is empty (0 bytes); upload a PNG or JPEG file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert("RGB")
    except _PIL_ERRORS as exc:
        # PIL's message for unknown bytes names the BytesIO object and its memory address; say what it means
        reason = "UnidentifiedImageError: not a known image format" if isinstance(exc, UnidentifiedImageError) else _reason(exc)
        raise DataError(f"{what}: not a readable image ({reason}); upload a PNG or JPEG file") from None


def preprocess_images(sources: Sequence[ImageSource], spec: dict[str, Any]) -> np.ndarray:
    """Turn images into the float32 [N, 3, H, W] batch a seal's image tower expects.

    `spec` is the tower's preprocessing, {"kind": "image", "size": [H, W], "mean": [3], "std": [3]}:
    RGB (grayscale replicated), bilinear resize to size, scale to [0, 1], then (x - mean) / std.
    """
    height, width, mean, std = _check_spec(spec)
    if len(sources) == 0:
        raise DataError("no images to preprocess; pass at least one image")
    batch = np.empty((len(sources), 3, height, width), dtype=np.float32)
    for i, source in enumerate(sources):
        image = load_image(source)
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0  # H, W, 3 in [0, 1]
        batch[i] = ((pixels - mean) / std).transpose(2, 0, 1)
    return batch


def _check_spec(spec: dict[str, Any]) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Validate an image preprocessing dict; a bad one means a broken seal, so say so."""
    if not isinstance(spec, dict) or spec.get("kind") != "image":
        raise DataError(f"image preprocessing must be a dict with kind 'image', got {spec!r}; use the image tower's preprocessing")
    try:
        height, width = (int(v) for v in spec["size"])
        mean = np.asarray(spec["mean"], dtype=np.float32).reshape(3)
        std = np.asarray(spec["std"], dtype=np.float32).reshape(3)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"image preprocessing {spec!r} is malformed ({_reason(exc)}); it needs size [H, W], mean [3] and std [3]") from None
    if height < 1 or width < 1 or not np.all(std > 0):
        raise DataError(f"image preprocessing {spec!r} needs a positive size and positive std values")
    return height, width, mean, std


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise DataError(f"image array has dtype {array.dtype}; convert it to uint8 (values 0..255)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) or 0 in array.shape:
        raise DataError(f"image array has shape {array.shape}; expected HxW (grayscale) or HxWx3 (RGB)")
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def _reason(exc: BaseException) -> str:
    """One-line text of an exception, for error messages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
