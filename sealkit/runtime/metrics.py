"""Evaluation metrics on numpy arrays: classification accuracy and retrieval recall@k.

Retrieval treats identical items as one (Fashion-MNIST captions repeat; a movie has one plot for
many reviews): recall@k from a query is 1 when any relevant target is in its top k.
Never imports torch, so deployed evaluation can use it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def accuracy(predictions: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Overall accuracy and per-class accuracy (classes absent from `labels` are left out)."""
    metrics = {"accuracy": float(np.mean(predictions == labels)) if len(labels) else 0.0}
    for index, name in enumerate(class_names):
        members = labels == index
        if members.any():
            metrics[f"accuracy/{name}"] = float(np.mean(predictions[members] == index))
    return metrics


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, ks: tuple[int, ...]) -> dict[int, float]:
    """scores [queries, targets]; relevant [queries, targets] bool. Recall@k for each k.

    Queries with no relevant target at all (distractors seen from the other side) are left out.
    """
    answerable = relevant.any(axis=1)
    first_hit = first_hit_ranks(scores[answerable], relevant[answerable])
    return {k: float(np.mean(first_hit < k)) for k in ks}


def first_hit_ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Per query, the 0-based rank of its best-ranked relevant target (the number of targets when none)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    hits_sorted = np.take_along_axis(relevant, order, axis=1)
    return np.where(hits_sorted.any(axis=1), hits_sorted.argmax(axis=1), scores.shape[1])


def retrieval_metrics(a: np.ndarray, b: np.ndarray, relevant: np.ndarray, ks: tuple[int, ...], names: tuple[str, str]) -> dict[str, float]:
    """Recall@k in both directions between L2-normalised embeddings `a` and `b`."""
    scores = a @ b.T
    metrics = {}
    for k, value in recall_at_k(scores, relevant, ks).items():
        metrics[f"{names[0]}->{names[1]} R@{k}"] = value
    for k, value in recall_at_k(scores.T, relevant.T, ks).items():
        metrics[f"{names[1]}->{names[0]} R@{k}"] = value
    return metrics


def item_key(item) -> object:
    """Identity of a retrieval item: texts by content, arrays by object, paths by name."""
    return item if isinstance(item, str) else ("array", id(item)) if isinstance(item, np.ndarray) else str(item)


def evaluate_retrieval(
    queries: Sequence,
    keys: Sequence,
    embed_queries: Callable[[list], np.ndarray],
    embed_keys: Callable[[list], np.ndarray],
    ks: tuple[int, ...],
    names: tuple[str, str],
    distractors: Sequence | None = None,
) -> dict[str, float]:
    """Recall@k both ways for paired `queries[i]` <-> `keys[i]`, identical items counted once.

    The embed functions take unique items and return their L2-normalised embeddings, so the torch
    tasks and the torch-free runtime share one definition of the metric. `distractors` are extra
    targets that match no query (a harder pool)."""
    keys_pool = list(keys) + list(distractors or [])
    query_index = {k: i for i, k in enumerate(dict.fromkeys(item_key(q) for q in queries))}
    key_index = {k: i for i, k in enumerate(dict.fromkeys(item_key(k) for k in keys_pool))}
    unique_queries = list({item_key(q): q for q in queries}.values())
    unique_keys = list({item_key(k): k for k in keys_pool}.values())
    relevant = np.zeros((len(unique_queries), len(unique_keys)), dtype=bool)
    for q, k in zip(queries, keys):
        relevant[query_index[item_key(q)], key_index[item_key(k)]] = True
    metrics = retrieval_metrics(embed_queries(unique_queries), embed_keys(unique_keys), relevant, ks, names)
    metrics["mean_recall"] = float(np.mean(list(metrics.values())))
    return metrics


def bootstrap_interval(values: np.ndarray, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-example values.

    For an accuracy pass 0/1 correctness; to compare two adapters on the same examples pass the
    paired difference of their correctness, which cancels the examples both get right or wrong.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))
