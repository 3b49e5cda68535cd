"""The training objectives of the two tasks: classify (text-prompt or linear head) and retrieve (InfoNCE).

An objective turns a batch of examples into a loss, and a dataset into metrics, for an AdapterPack
or, with `pack=None`, for the frozen backbone (the zero-shot baseline). The `output` method never
needs gradients through the backbone, so backbone outputs are cached and computed once.
Imports torch (the adapt path only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sealkit.adapters.config import TASKS, TaskSpec
from sealkit.adapters.functional import normalise
from sealkit.data.dataset import Dataset, Example
from sealkit.errors import DataError, SealkitError
from sealkit.runtime.inputs import plain_forward, tower_inputs
from sealkit.runtime.metrics import accuracy, evaluate_retrieval
from sealkit.runtime.metrics import item_key as _item_key
from sealkit.runtime.seal import Seal
from sealkit.train.pack import AdapterPack

DEFAULT_TEMPLATES = {"image": ["a photo of a {}."], "text": ["{}"]}
EVAL_CHUNK = 64
# Rows per evaluation or feature-caching pass through an image tower. Inference graphs keep
# onnxruntime's arena, which holds the largest pass's working memory for good: a 224 px
# EfficientNet-Lite0 forward of 64 rows left 750 MiB held, of 16 rows 269 MiB, at 5.3 against 5.0 ms
# per row (2 threads; docs/benchmarks.md). The image input adapter's activations shrink alike.
IMAGE_EVAL_CHUNK = 16


def _tower_of(seal: Seal, modality: str) -> str | None:
    for name, spec in seal.manifest.towers.items():
        if spec.modality == modality:
            return name
    return None


def build_task_spec(
    seal: Seal,
    dataset: Dataset,
    task: str,
    head: str | None = None,
    templates: Sequence[str] | None = None,
) -> TaskSpec:
    """Decide which towers and fields a task uses, from the seal's towers and the data's fields."""
    if task not in TASKS:
        raise SealkitError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    image_tower, text_tower = _tower_of(seal, "image"), _tower_of(seal, "text")
    if task == "classify":
        dataset.require("label", task="classify")
        if dataset.has_images:
            if image_tower is None:
                raise DataError("the data has images but the seal has no image tower; use text data or another seal")
            query_tower, query_field = image_tower, "image"
        else:
            dataset.require("text", task="classify")
            if text_tower is None:
                raise DataError("the data has texts but the seal has no text tower")
            query_tower, query_field = text_tower, "text"
        chosen = head or ("text" if text_tower else "linear")
        if chosen not in ("text", "linear"):
            raise SealkitError(f"unknown head {chosen!r}; use text or linear")
        if chosen == "text" and text_tower is None:
            raise SealkitError("a text head needs a seal with a text tower; use the linear head", topic="head")
        modality = seal.manifest.towers[query_tower].modality
        return TaskSpec(
            task="classify",
            query_tower=query_tower,
            query_field=query_field,
            key_tower=text_tower if chosen == "text" else None,
            key_field="class" if chosen == "text" else None,
            head=chosen,
            class_names=list(dataset.class_names or []),
            templates=list(templates or DEFAULT_TEMPLATES[modality]),
        )
    dataset.require(task="retrieve")  # an empty dataset is empty, not "without pairs"
    if dataset.has_images and dataset.has_texts:
        if image_tower is None or text_tower is None:
            raise DataError("image-text retrieval needs a seal with an image and a text tower")
        return TaskSpec(task="retrieve", query_tower=image_tower, query_field="image", key_tower=text_tower, key_field="text")
    if dataset.has_texts and dataset.has_text_b:
        if text_tower is None:
            raise DataError("text-text retrieval needs a seal with a text tower")
        return TaskSpec(task="retrieve", query_tower=text_tower, query_field="text", key_tower=text_tower, key_field="text_b")
    raise DataError("retrieval needs pairs: an image and a text per example, or two texts (a text and a text_b field)", topic="column:text_b")


class Objective:
    """Shared machinery: turning items into embeddings with or without adapters."""

    def __init__(self, seal: Seal, spec: TaskSpec):
        self.seal = seal
        self.spec = spec
        self._frozen_cache: dict[tuple[str, object], np.ndarray] = {}

    # --- embeddings ---------------------------------------------------------------------------
    def eval_chunk(self, tower_name: str) -> int:
        """Items per pass when embedding many without gradients (see IMAGE_EVAL_CHUNK)."""
        return IMAGE_EVAL_CHUNK if self.seal.tower(tower_name).spec.modality == "image" else EVAL_CHUNK

    def frozen_features(self, tower_name: str, items: list) -> np.ndarray:
        """Backbone outputs without adapters, cached by item (images by identity, texts by content)."""
        tower = self.seal.tower(tower_name)
        keys = [(tower_name, _item_key(item)) for item in items]
        missing = list(dict.fromkeys(k for k in keys if k not in self._frozen_cache))
        if missing:
            by_key = {(tower_name, _item_key(item)): item for item in items}
            features = plain_forward(tower, [by_key[k] for k in missing], self.eval_chunk(tower_name))
            self._frozen_cache.update(zip(missing, features))
        return np.stack([self._frozen_cache[k] for k in keys])

    def embed(self, pack: AdapterPack | None, tower_name: str, items: list) -> torch.Tensor:
        """Embeddings of `items` through `tower_name`: frozen (pack None) or with the pack's adapters."""
        if pack is None:
            return torch.from_numpy(self.frozen_features(tower_name, items))
        if not pack.uses_backbone_gradients:
            features = torch.from_numpy(self.frozen_features(tower_name, items))
        else:
            tower = self.seal.tower(tower_name)
            features = pack.backbone(tower, tower_inputs(tower, items))
        return pack.output(tower_name, features)

    def embed_all(self, pack: AdapterPack | None, tower_name: str, items: list) -> np.ndarray:
        """Normalised embeddings for many items, in chunks, without gradients."""
        chunks = []
        chunk = self.eval_chunk(tower_name)
        with torch.no_grad():
            for start in range(0, len(items), chunk):
                chunks.append(self.embed(pack, tower_name, items[start : start + chunk]).numpy())
        return normalise(np.concatenate(chunks))

    def zero_shot_defined(self) -> bool:
        raise NotImplementedError

    def loss(self, pack: AdapterPack, examples: list[Example]) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, pack: AdapterPack | None, dataset: Dataset) -> dict[str, float]:
        raise NotImplementedError

    main_metric = ""


def _field(examples: Sequence[Example], field: str) -> list:
    return [getattr(e, field) for e in examples]


class ClassifyObjective(Objective):
    main_metric = "accuracy"

    def __init__(self, seal: Seal, spec: TaskSpec):
        super().__init__(seal, spec)
        self.class_index = {name: i for i, name in enumerate(spec.class_names)}
        self.prompts = [template.format(name) for name in spec.class_names for template in spec.templates]

    def labels(self, examples: Sequence[Example]) -> np.ndarray:
        try:
            return np.array([self.class_index[e.label] for e in examples], dtype=np.int64)
        except KeyError as exc:
            raise DataError(f"label {exc.args[0]!r} is not one of the task's classes {self.spec.class_names}") from None

    def class_embeddings(self, pack: AdapterPack | None) -> torch.Tensor:
        """[classes, dim]: each class's prompts (one per template) encoded and averaged, normalised."""
        assert self.spec.key_tower is not None
        encoded = F.normalize(self.embed(pack, self.spec.key_tower, self.prompts), dim=-1)
        per_class = encoded.view(len(self.spec.class_names), len(self.spec.templates), -1).mean(dim=1)
        return F.normalize(per_class, dim=-1)

    def logits(self, pack: AdapterPack | None, queries: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        if self.spec.head == "linear":
            assert pack is not None and pack.head is not None
            return pack.head(queries)
        scale = pack.temperature_scale if pack is not None else torch.tensor(100.0)
        return scale * F.normalize(queries, dim=-1) @ classes.T

    def zero_shot_defined(self) -> bool:
        if self.spec.head != "text":
            return False
        dims = {int(self.seal.manifest.towers[t].output.shape[-1]) for t in self.spec.towers}
        return len(dims) == 1

    def loss(self, pack: AdapterPack, examples: list[Example]) -> torch.Tensor:
        queries = self.embed(pack, self.spec.query_tower, _field(examples, self.spec.query_field))
        classes = self.class_embeddings(pack) if self.spec.head == "text" else None
        return F.cross_entropy(self.logits(pack, queries, classes), torch.from_numpy(self.labels(examples)))

    def predict(self, pack: AdapterPack | None, dataset: Dataset) -> np.ndarray:
        """The predicted class index per example (benchmarks keep these for paired intervals)."""
        predictions = []
        with torch.no_grad():
            classes = self.class_embeddings(pack) if self.spec.head == "text" else None
            items = _field(dataset.examples, self.spec.query_field)
            chunk = self.eval_chunk(self.spec.query_tower)
            for start in range(0, len(items), chunk):
                queries = self.embed(pack, self.spec.query_tower, items[start : start + chunk])
                predictions.append(self.logits(pack, queries, classes).argmax(dim=-1).numpy())
        return np.concatenate(predictions)

    def evaluate(self, pack: AdapterPack | None, dataset: Dataset) -> dict[str, float]:
        return accuracy(self.predict(pack, dataset), self.labels(dataset.examples), self.spec.class_names)


class RetrieveObjective(Objective):
    main_metric = "mean_recall"

    def __init__(self, seal: Seal, spec: TaskSpec, ks: tuple[int, ...] = (1, 5, 10)):
        super().__init__(seal, spec)
        self.ks = tuple(ks)

    def zero_shot_defined(self) -> bool:
        dims = {int(self.seal.manifest.towers[t].output.shape[-1]) for t in self.spec.towers}
        return len(dims) == 1

    def _sides(self, examples: Sequence[Example]) -> tuple[list, list]:
        return _field(examples, self.spec.query_field), _field(examples, self.spec.key_field)

    def loss(self, pack: AdapterPack, examples: list[Example]) -> torch.Tensor:
        queries, keys = self._sides(examples)
        a = F.normalize(self.embed(pack, self.spec.query_tower, queries), dim=-1)
        b = F.normalize(self.embed(pack, self.spec.key_tower, keys), dim=-1)
        logits = pack.temperature_scale * a @ b.T
        # repeated captions or plots in a batch are positives too, not negatives
        key_ids = torch.tensor([hash(_item_key(k)) for k in keys])
        query_ids = torch.tensor([hash(_item_key(q)) for q in queries])
        positive = (key_ids[None, :] == key_ids[:, None]) | (query_ids[None, :] == query_ids[:, None])
        targets = positive.float() / positive.float().sum(dim=1, keepdim=True)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T))

    def evaluate(self, pack: AdapterPack | None, dataset: Dataset, distractors: Sequence | None = None) -> dict[str, float]:
        """Recall@k both ways. `distractors` are extra targets that match no query (a harder pool)."""
        queries, keys = self._sides(dataset.examples)
        names = (self.spec.query_field.replace("text_b", "target"), self.spec.key_field.replace("text_b", "target"))
        return evaluate_retrieval(
            queries,
            keys,
            lambda items: self.embed_all(pack, self.spec.query_tower, items),
            lambda items: self.embed_all(pack, self.spec.key_tower, items),
            self.ks,
            names,
            distractors,
        )


def make_objective(seal: Seal, spec: TaskSpec, recall_ks: tuple[int, ...] = (1, 5, 10)) -> Objective:
    if spec.task == "classify":
        return ClassifyObjective(seal, spec)
    return RetrieveObjective(seal, spec, recall_ks)
