"""Datasets (image folders, tables, IDX, named datasets from entry points) and the preprocessing a seal's towers expect.

This package never imports torch: it is part of the torch-free inference path.
"""

from sealkit.data.catalog import NamedDataset, dataset_names, describe_datasets
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
    "NamedDataset",
    "dataset_names",
    "decode_image_bytes",
    "describe_datasets",
    "image_file_problem",
    "load_dataset",
    "load_image",
    "preprocess_images",
    "read_idx",
    "read_image_folder",
    "read_table",
]
