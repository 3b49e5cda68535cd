"""A deployed task: a seal plus one adapter file, run with numpy and onnxruntime only (no torch).

The adapter modules are small (a residual 3x3 conv net, per-token MLPs, a residual MLP), so their
numpy forms live here and reproduce the torch modules of sealkit/adapters/modules.py; entry-point
tensors go into the seal's entry graphs. Many TaskRuntimes can share one opened Seal: the
backbone's sessions and weights are loaded once, each task adds only its adapter arrays.
Never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sealkit.adapters.file import AdapterFile, read_adapter_file
from sealkit.adapters.validate import validate_for_seal
from sealkit.errors import AdapterError, DataError
from sealkit.runtime.inputs import image_inputs, text_inputs, tower_feeds
from sealkit.runtime.seal import Seal, Tower

CLASS_EMBEDDINGS = "task.class_embeddings"


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (what the torch adapters use)."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return x @ weight.T + bias


def conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """A 3x3, stride 1, padding 1 convolution: [N,C,H,W] -> [N,O,H,W]."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = sliding_window_view(padded, (3, 3), axis=(2, 3))  # [N, C, H, W, 3, 3]
    columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)
    out = columns @ weight.reshape(weight.shape[0], -1).T + bias
    return out.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


@dataclass
class Prediction:
    label: str
    score: float


class TaskRuntime:
    """One task (seal + adapter file). `embed`, `classify`, and `scores` for retrieval."""

    def __init__(self, seal: Seal, adapter: str | Path | AdapterFile, name: str | None = None):
        file = adapter if isinstance(adapter, AdapterFile) else read_adapter_file(adapter)
        file.check_seal(seal.seal_id)
        validate_for_seal(file.meta, file.tensors, file.path, seal.manifest)
        self.seal = seal
        self.file = file
        self.meta = file.meta
        self.name = name or file.path.stem
        self.task = self.meta["task"]
        self.method = self.meta["method"]
        self.t = {k: v.astype(np.float32, copy=False) for k, v in file.tensors.items()}
        self.class_names: list[str] = list(self.task.get("class_names") or [])
        for tower in self.towers:
            if tower not in seal.towers:
                raise AdapterError(f"adapter {file.path.name} uses tower '{tower}' that the seal does not have")

    @property
    def towers(self) -> list[str]:
        return [t for t in (self.task["query_tower"], self.task.get("key_tower")) if t]

    def _has(self, key: str) -> bool:
        return key in self.t

    def tower_for(self, modality: str) -> Tower:
        for name in self.towers:
            if self.seal.manifest.towers[name].modality == modality:
                return self.seal.tower(name)
        raise DataError(f"task '{self.name}' takes no {modality} inputs (its towers: {self.towers})")

    def entries(self, tower: str) -> dict[str, np.ndarray] | None:
        prefix = f"towers.{tower}.entries."
        entries = {k[len(prefix) :]: v for k, v in self.t.items() if k.startswith(prefix)}
        return entries or None

    # --- the adapters, in numpy ------------------------------------------------------------
    def image_input(self, tower: str, pixels: np.ndarray) -> np.ndarray:
        p = f"towers.{tower}.input."
        if not self._has(p + "conv_in.weight"):
            return pixels
        hidden = gelu(conv3x3(pixels, self.t[p + "conv_in.weight"], self.t[p + "conv_in.bias"]))
        return (pixels + conv3x3(hidden, self.t[p + "conv_out.weight"], self.t[p + "conv_out.bias"])).astype(np.float32)

    def text_input(self, tower: str, embeddings: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = f"towers.{tower}.input."
        if not self._has(p + "down.weight"):
            return embeddings, mask
        hidden = gelu(linear(embeddings, self.t[p + "down.weight"], self.t[p + "down.bias"]))
        x = (embeddings + linear(hidden, self.t[p + "up.weight"], self.t[p + "up.bias"])).astype(np.float32)
        if self._has(p + "prompts"):
            prompts = np.broadcast_to(self.t[p + "prompts"], (x.shape[0],) + self.t[p + "prompts"].shape)
            x = np.concatenate([x[:, :1], prompts, x[:, 1:]], axis=1).astype(np.float32)
            ones = np.ones((mask.shape[0], prompts.shape[1]), dtype=mask.dtype)
            mask = np.concatenate([mask[:, :1], ones, mask[:, 1:]], axis=1)
        return x, mask

    def output(self, tower: str, features: np.ndarray) -> np.ndarray:
        p = f"towers.{tower}.output."
        y = linear(features, self.t[p + "proj.weight"], self.t[p + "proj.bias"]) if self._has(p + "proj.weight") else features
        if self._has(p + "down.weight"):
            y = y + linear(gelu(linear(features, self.t[p + "down.weight"], self.t[p + "down.bias"])), self.t[p + "up.weight"], self.t[p + "up.bias"])
        return y.astype(np.float32)

    # --- public ----------------------------------------------------------------------------
    def embed_images(self, sources: list, chunk: int = 64) -> np.ndarray:
        tower = self.tower_for("image")
        return self._run(tower, sources, chunk)

    def embed_texts(self, texts: list[str], chunk: int = 64) -> np.ndarray:
        tower = self.tower_for("text")
        return self._run(tower, texts, chunk)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Embeddings for already preprocessed pixels [N,3,H,W] (the serving path batches these)."""
        tower = self.tower_for("image")
        return self.output(tower.name, tower.forward(tower_feeds(tower, self.image_input(tower.name, pixels)), self.entries(tower.name)))

    def _run(self, tower: Tower, items: list, chunk: int) -> np.ndarray:
        if not items:
            raise DataError("nothing to embed: the input list is empty")
        outputs = []
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            if tower.spec.modality == "image":
                feeds = tower_feeds(tower, self.image_input(tower.name, image_inputs(tower, part)))
            else:
                batch = text_inputs(tower, part)
                embeddings, mask = self.text_input(tower.name, batch.token_embeddings, batch.attention_mask)
                feeds = tower_feeds(tower, embeddings, mask)
            outputs.append(self.output(tower.name, tower.forward(feeds, self.entries(tower.name))))
        return np.concatenate(outputs)

    def embed(self, items: list, modality: str) -> np.ndarray:
        return self.embed_images(items) if modality == "image" else self.embed_texts(items)

    def class_logits(self, embeddings: np.ndarray) -> np.ndarray:
        if self.task["task"] != "classify":
            raise AdapterError(f"task '{self.name}' is a {self.task['task']} task, not classification")
        if self.task["head"] == "linear":
            return linear(embeddings, self.t["head.weight"], self.t["head.bias"])
        scale = min(float(np.exp(self.t["logit_scale"]).reshape(-1)[0]), 100.0)
        return scale * normalise(embeddings) @ self.t[CLASS_EMBEDDINGS].T

    @property
    def query_modality(self) -> str:
        return self.seal.manifest.towers[self.task["query_tower"]].modality

    def classify(self, items: list, modality: str, top_k: int = 1) -> list[list[Prediction]]:
        """Top-k labels with softmax probabilities for each item."""
        if modality != self.query_modality:
            raise DataError(f"task '{self.name}' classifies {self.query_modality}s, not {modality}s")
        return self.classify_embeddings(self.embed(items, modality), top_k)

    def classify_embeddings(self, embeddings: np.ndarray, top_k: int = 1) -> list[list[Prediction]]:
        logits = self.class_logits(embeddings)
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        order = np.argsort(-probs, axis=1)[:, :top_k]
        return [[Prediction(self.class_names[j], float(probs[i, j])) for j in row] for i, row in enumerate(order)]
