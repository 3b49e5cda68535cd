"""Metrics of a trained adapter on a dataset, on the torch-free runtime (numpy + onnxruntime).

`sealkit eval --adapter` uses this, so evaluating a deployed task needs no torch. The metric
definitions are shared with the training path (sealkit/runtime/metrics.py), and the numpy adapters
reproduce the torch ones, so the numbers match what `sealkit adapt` reports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sealkit.adapters.file import AdapterFile
from sealkit.adapters.functional import normalise
from sealkit.data.dataset import Dataset
from sealkit.errors import DataError
from sealkit.runtime.metrics import accuracy, evaluate_retrieval
from sealkit.runtime.seal import Seal
from sealkit.runtime.task import TaskRuntime


def evaluate_adapter(seal: Seal, data: Dataset, adapter: str | Path | AdapterFile, recall_ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Accuracy (classify) or recall@k both ways (retrieve) of `adapter` on `data`.

    A retrieval adapter's own recall_ks (recorded at training) take precedence, as in training."""
    runtime = TaskRuntime(seal, adapter)
    task = runtime.spec
    if task.task == "classify":
        data.require("label", task="classify")
        index = {name: i for i, name in enumerate(runtime.class_names)}
        unknown = sorted({e.label for e in data.examples if e.label not in index})
        if unknown:
            raise DataError(f"label {unknown[0]!r} is not one of the task's classes {runtime.class_names}")
        items = [getattr(e, task.query_field) for e in data.examples]
        logits = runtime.class_logits(runtime.embed(items, runtime.query_modality))
        labels = np.array([index[e.label] for e in data.examples], dtype=np.int64)
        return accuracy(logits.argmax(axis=1), labels, runtime.class_names)
    ks = tuple(runtime.meta.get("recall_ks") or recall_ks)
    query_field, key_field = task.query_field, task.key_field
    modality = {name: seal.manifest.towers[name].modality for name in runtime.towers}
    queries = [getattr(e, query_field) for e in data.examples]
    keys = [getattr(e, key_field) for e in data.examples]
    if any(q is None for q in queries) or any(k is None for k in keys):
        raise DataError(f"retrieval evaluation needs a {query_field} and a {key_field} in every example")
    names = (query_field.replace("text_b", "target"), key_field.replace("text_b", "target"))
    return evaluate_retrieval(
        queries,
        keys,
        lambda items: normalise(runtime.embed(items, modality[task.query_tower])),
        lambda items: normalise(runtime.embed(items, modality[task.key_tower])),
        ks,
        names,
    )
