"""Datasets (image folders, tables, IDX, built-ins) and the preprocessing a seal's towers expect.

This package never imports torch: it is part of the torch-free inference path.
"""

from sealkit.data.builtin import builtin_names, describe_builtins
from sealkit.data.dataset import Dataset, Example
from sealkit.data.idx import read_idx
from sealkit.data.images import IMAGE_EXTENSIONS, decode_image_bytes, image_file_problem, load_image, preprocess_images
from sealkit.data.readers import load_dataset, read_image_folder, read_table
from sealkit.data.text import TextEncoder

__all__ = [
    "Dataset",
    "Example",
    "IMAGE_EXTENSIONS",
    "TextEncoder",
    "builtin_names",
    "decode_image_bytes",
    "describe_builtins",
    "image_file_problem",
    "load_dataset",
    "load_image",
    "preprocess_images",
    "read_idx",
    "read_image_folder",
    "read_table",
]
