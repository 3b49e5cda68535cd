"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed), fully validated.

This module never imports torch.
"""

from __future__ import annotations

import bz2
import gzip
import re
import struct
from pathlib import Path

import numpy as np

from sealkit.data.dataset import Dataset, Example
from sealkit.errors import DataError

_UBYTE = 0x08  # the only element type MNIST-style files use


def read_idx(
    images_path: str | Path,
    labels_path: str | Path | None = None,
    class_names: list[str] | None = None,
    limit: int | None = None,
) -> Dataset:
    """Images (uint8 HxW arrays) and, when found, their labels from IDX files.

    The labels file is found next to the images when not given
    (train-images-idx3-ubyte.gz -> train-labels-idx1-ubyte.gz); without one the examples are unlabeled.
    Labels are ids into `class_names` (default "0", "1", ...). `limit` keeps the first `limit` images.
    """
    images_path = Path(images_path)
    images = _read_array(images_path, ndim=3)
    if limit is not None:
        if limit < 1:
            raise DataError(f"limit must be at least 1, got {limit}")
        images = images[:limit]

    if labels_path is None:
        labels_path = _labels_next_to(images_path)
    labels: list[str | None] = [None] * len(images)
    if labels_path is not None:
        labels_path = Path(labels_path)
        ids = _read_array(labels_path, ndim=1)
        if limit is not None:
            ids = ids[:limit]
        if len(ids) != len(images):
            raise DataError(f"{labels_path}: {len(ids)} labels for {len(images)} images in {images_path}; pass the matching labels file")
        top = int(ids.max()) if len(ids) else -1
        if class_names is None:
            class_names = [str(i) for i in range(top + 1)]
        elif top >= len(class_names):
            raise DataError(f"{labels_path}: label id {top} but only {len(class_names)} class names were given; pass all class names")
        labels = [class_names[i] for i in ids.tolist()]

    examples = [Example(image=image, label=label) for image, label in zip(images, labels)]
    return Dataset(examples=examples, name=images_path.name, class_names=class_names)


def _labels_next_to(images_path: Path) -> Path | None:
    """The conventional labels file beside an images file, if it exists."""
    name, count = re.subn(r"images([-.]idx)3", r"labels\g<1>1", images_path.name)
    candidate = images_path.with_name(name)
    return candidate if count and candidate.is_file() else None


def _read_array(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array in one IDX file, after checking its magic number and size."""
    data = _read_bytes(path)
    kind = "images (idx3)" if ndim == 3 else "labels (idx1)"
    if len(data) < 4 or data[0:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number); pass an MNIST-style {kind} file")
    if data[2] != _UBYTE or data[3] != ndim:
        raise DataError(f"{path}: IDX header says type 0x{data[2]:02x} with {data[3]} dims; expected uint8 {kind}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: IDX file is truncated inside its header; download it again")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{path}: IDX file is {problem} ({len(data)} bytes, header implies {expected}); download it again")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: IDX file not found; check the path")
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: cannot decompress ({exc}); the file is corrupt or truncated, download it again") from None
