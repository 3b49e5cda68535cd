"""A deployed task: a seal plus one adapter file, run with numpy and onnxruntime only (no torch).

The adapter file is validated against its layout (sealkit/adapters/layout.py) when loaded, then
run with the numpy forms of the adapters (sealkit/adapters/functional.py); entry-point tensors go
into the seal's entry graphs. Many TaskRuntimes can share one opened Seal: the backbone's
sessions and weights are loaded once, each task adds only its adapter arrays.
Never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sealkit.adapters import functional as F
from sealkit.adapters.file import AdapterFile, read_adapter_file
from sealkit.adapters.layout import CLASS_EMBEDDINGS, ENTRIES, HEAD_BIAS, HEAD_WEIGHT, INPUT, LOGIT_SCALE, MAX_LOGIT_SCALE, OUTPUT, adapter_layout, check_tensors, split_tower_tensors
from sealkit.errors import AdapterError, DataError
from sealkit.runtime.inputs import TowerInputs, tower_inputs
from sealkit.runtime.seal import Seal, Tower


@dataclass
class Prediction:
    label: str
    score: float


class TaskRuntime:
    """One task (seal + adapter file): embeddings, class predictions, and the adapters' parts for serving."""

    def __init__(self, seal: Seal, adapter: str | Path | AdapterFile, name: str | None = None):
        file = adapter if isinstance(adapter, AdapterFile) else read_adapter_file(adapter)
        file.check_seal(seal.seal_id)
        self.seal = seal
        self.file = file
        self.meta = file.meta
        self.name = name or file.path.stem
        self.spec = file.task
        self.config = file.config
        self.layout = adapter_layout(self.config, self.spec, seal.manifest.towers)
        check_tensors(self.layout, file.tensors, file.path.name)
        if self.spec.task == "classify" and len(self.spec.class_names) < 2:
            raise AdapterError(f"{file.path.name} classifies into {len(self.spec.class_names)} class(es); a classifier needs at least 2")
        tensors = {k: v.astype(np.float32, copy=False) for k, v in file.tensors.items()}
        self.tensors = tensors
        self._parts = {(tower, part): split_tower_tensors(tensors, tower, part) for tower in self.spec.towers for part in (INPUT, ENTRIES, OUTPUT)}

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def towers(self) -> list[str]:
        return self.spec.towers

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    @property
    def query_modality(self) -> str:
        return self.seal.manifest.towers[self.spec.query_tower].modality

    def tower_for(self, modality: str) -> Tower:
        for name in self.towers:
            if self.seal.manifest.towers[name].modality == modality:
                return self.seal.tower(name)
        raise DataError(f"task '{self.name}' takes no {modality} inputs (its towers: {self.towers})")

    # --- the adapters, in numpy ------------------------------------------------------------
    def entries(self, tower: str) -> dict[str, np.ndarray] | None:
        return self._parts[(tower, ENTRIES)] or None

    def adapt_inputs(self, tower: str, inputs: TowerInputs) -> TowerInputs:
        """The task's input adapter (dga, lga) on a batch of tower inputs; unchanged for `output`."""
        params = self._parts[(tower, INPUT)]
        if self.seal.manifest.towers[tower].modality == "image":
            return TowerInputs(F.image_input(params, inputs.values))
        return TowerInputs(*F.text_input(params, inputs.values, inputs.mask))

    def output(self, tower: str, features: np.ndarray) -> np.ndarray:
        """The task's output adapter on backbone outputs."""
        return F.output(self._parts[(tower, OUTPUT)], features)

    # --- public ----------------------------------------------------------------------------
    def embed(self, items: list, modality: str, chunk: int = 64) -> np.ndarray:
        """Task embeddings for images (files, bytes, arrays) or texts, through the adapters and the seal."""
        tower = self.tower_for(modality)
        if not items:
            raise DataError("nothing to embed: the input list is empty")
        outputs = []
        for start in range(0, len(items), chunk):
            inputs = self.adapt_inputs(tower.name, tower_inputs(tower, items[start : start + chunk]))
            outputs.append(self.output(tower.name, tower.forward(inputs.feeds(tower), self.entries(tower.name))))
        return np.concatenate(outputs)

    def class_logits(self, embeddings: np.ndarray) -> np.ndarray:
        if self.spec.task != "classify":
            raise AdapterError(f"task '{self.name}' is a {self.spec.task} task, not classification")
        if self.spec.head == "linear":
            return F.linear(embeddings, self.tensors[HEAD_WEIGHT], self.tensors[HEAD_BIAS])
        scale = min(float(np.exp(self.tensors[LOGIT_SCALE]).reshape(-1)[0]), MAX_LOGIT_SCALE)
        return scale * F.normalise(embeddings) @ self.tensors[CLASS_EMBEDDINGS].T

    def classify(self, items: list, modality: str, top_k: int = 1) -> list[list[Prediction]]:
        """Top-k labels with softmax probabilities for each item."""
        if modality != self.query_modality:
            raise DataError(f"task '{self.name}' classifies {self.query_modality}s, not {modality}s")
        return self.classify_embeddings(self.embed(items, modality), top_k)

    def classify_embeddings(self, embeddings: np.ndarray, top_k: int = 1) -> list[list[Prediction]]:
        probs = F.softmax(self.class_logits(embeddings))
        order = np.argsort(-probs, axis=1)[:, :top_k]
        return [[Prediction(self.class_names[j], float(probs[i, j])) for j in row] for i, row in enumerate(order)]
