"""What a request does, apart from HTTP: prepare inputs per task, batch the backbone, finish per task.

    prepare (request thread): decode images / tokenize texts, run the task's input adapter (numpy)
    backbone (batcher):       one tower call shared with other requests and tasks (batcher.py)
    finish (request):         the task's output adapter, then its head (classify) or index (retrieve)

Also the per-task retrieval indexes: a client adds items with ids (POST /tasks/T/index), then
queries them (POST /tasks/T/retrieve). An index holds the task's normalised embeddings in memory;
it is dropped when its task is reloaded or removed, since embeddings from another adapter
version would not be comparable. Never imports torch.
"""

from __future__ import annotations

import asyncio
import io
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from sealkit.adapters.functional import normalise
from sealkit.data.images import decode_image_bytes
from sealkit.runtime.inputs import tower_inputs
from sealkit.serve.batcher import BackboneCall, Batcher
from sealkit.serve.errors import BadRequestError, ConflictError, TooLargeError
from sealkit.serve.registry import Registry, ServedTask

MODALITIES = ("text", "image")


@dataclass
class Limits:
    """Per-request and per-index bounds. Request body size is enforced by the app while reading."""

    max_items: int = 64
    max_request_bytes: int = 8 * 2**20
    max_image_pixels: int = 4096 * 4096
    # all images of one request together, checked from their headers before any is decoded: decoded
    # images are held at once (64 images at the per-image limit would be over 3 GB of RGB)
    max_request_pixels: int = 2 * 4096 * 4096
    # one text, checked before tokenizing: the whole text is tokenized before truncation
    max_text_chars: int = 20_000
    max_top_k: int = 1000
    max_index_items: int = 100_000
    max_id_chars: int = 256


@dataclass
class Items:
    """A request's inputs: texts (str) or images (encoded bytes), never both."""

    modality: str
    values: list[Any]


class Index:
    """One task's retrieval index: ids and their normalised embeddings."""

    def __init__(self, uid: int):
        self.uid = uid
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        self.matrix = np.zeros((0, 0), np.float32)
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: list[str], embeddings: np.ndarray, limit: int) -> int:
        vectors = normalise(embeddings.astype(np.float32))
        with self.lock:
            new = [i for i in dict.fromkeys(ids) if i not in self.rows]
            if len(self.ids) + len(new) > limit:
                raise TooLargeError(f"the index would hold {len(self.ids) + len(new)} items; the limit is {limit}")
            if not len(self.ids):
                self.matrix = np.zeros((0, vectors.shape[1]), np.float32)
            grown = np.concatenate([self.matrix, np.zeros((len(new), vectors.shape[1]), np.float32)])
            for i in new:
                self.rows[i] = len(self.ids)
                self.ids.append(i)
            for item_id, vector in zip(ids, vectors):  # a repeated id takes its latest embedding
                grown[self.rows[item_id]] = vector
            self.matrix = grown
            return len(self.ids)

    def search(self, queries: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        with self.lock:
            matrix, ids = self.matrix, list(self.ids)
        scores = normalise(queries.astype(np.float32)) @ matrix.T
        k = min(top_k, len(ids))
        results = []
        for row in scores:
            top = np.argpartition(-row, k - 1)[:k] if k < len(ids) else np.arange(len(ids))
            top = top[np.argsort(-row[top], kind="stable")]
            results.append([(ids[j], float(row[j])) for j in top])
        return results


def _image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from an image's header without decoding it; (0, 0) if unreadable (decoding says why)."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            return probe.size
    except Exception:
        return 0, 0


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Service:
    """The serving pipeline over a Registry and a Batcher; the HTTP app is a thin layer over it."""

    def __init__(self, registry: Registry, batcher: Batcher, limits: Limits | None = None):
        self.registry = registry
        self.batcher = batcher
        self.limits = limits or Limits()
        self._indexes: dict[str, Index] = {}
        self._lock = threading.Lock()
        registry.listeners.append(self._on_task_event)

    # --- inputs -------------------------------------------------------------------------------
    def check_items(self, items: Items) -> None:
        if items.modality not in MODALITIES:
            raise BadRequestError(f"unknown modality {items.modality!r}; send 'texts' or 'images'")
        if not items.values:
            raise BadRequestError(f"the '{items.modality}s' list is empty; send at least one item")
        if len(items.values) > self.limits.max_items:
            raise TooLargeError(f"{len(items.values)} items in one request; the limit is {self.limits.max_items} (split the request)")
        kind = str if items.modality == "text" else bytes
        for i, value in enumerate(items.values):
            if not isinstance(value, kind):
                raise BadRequestError(f"{items.modality}s[{i}] must be a {'string' if kind is str else 'base64 string'}, got {type(value).__name__}")
            if kind is str and not value.strip():
                raise BadRequestError(f"texts[{i}] is empty; send non-empty texts")
            if kind is str and len(value) > self.limits.max_text_chars:
                raise TooLargeError(f"texts[{i}] has {len(value)} characters; the limit is {self.limits.max_text_chars} (the model reads only the first few hundred tokens)")
            if kind is str and not _is_utf8(value):
                raise BadRequestError(f"texts[{i}] is not valid Unicode text (it has a lone surrogate such as \\ud800)")

    def _check_pixels(self, values: list[bytes]) -> None:
        """Refuse (413) a request whose images, by their headers, are too large one by one or together."""
        total = 0
        for i, data in enumerate(values):
            width, height = _image_size(data)
            if width * height > self.limits.max_image_pixels:
                raise TooLargeError(f"images[{i}] is {width}x{height} pixels; the limit is {self.limits.max_image_pixels} pixels")
            total += width * height
        if total > self.limits.max_request_pixels:
            raise TooLargeError(f"the request's images have {total} pixels together; the limit is {self.limits.max_request_pixels} (send fewer or smaller images)")

    def prepare(self, task: ServedTask, items: Items) -> BackboneCall:
        """Inputs -> tower inputs, through the task's input adapter. Runs in the request's thread."""
        self.check_items(items)
        runtime = task.runtime
        tower = runtime.tower_for(items.modality)  # DataError if the task takes no such inputs
        if items.modality == "image":
            self._check_pixels(items.values)  # before decoding any
            values = [decode_image_bytes(v, f"images[{i}]") for i, v in enumerate(items.values)]
        else:
            values = items.values
        feeds = runtime.adapt_inputs(tower.name, tower_inputs(tower, values)).feeds(tower)
        entries = runtime.entries(tower.name)
        return BackboneCall(tower, feeds, entries, owner=task.uid if entries else None, task=task.name)

    # --- operations ---------------------------------------------------------------------------
    async def embed(self, name: str, items: Items) -> tuple[ServedTask, np.ndarray]:
        task = self.registry.get(name)
        return task, await self.embed_task(task, items)

    async def embed_task(self, task: ServedTask, items: Items) -> np.ndarray:
        if not self.batcher.enabled:
            call = await run_in_threadpool(self.prepare, task, items)
            features = await run_in_threadpool(self.batcher.run, call)
            return task.runtime.output(call.tower.name, features)
        self.batcher.expect(+1)  # the batcher may wait for this request's call while it is prepared
        try:
            call = await run_in_threadpool(self.prepare, task, items)
        except BaseException:
            self.batcher.expect(-1)
            raise
        future = self.batcher.submit(call, expected=True)  # ends the announcement, even when refused
        features = await asyncio.wrap_future(future)
        return task.runtime.output(call.tower.name, features)

    async def classify(self, name: str, items: Items, top_k: int) -> tuple[ServedTask, list]:
        task = self.registry.get(name)
        runtime = task.runtime
        if runtime.spec.task != "classify":
            raise BadRequestError(f"task '{name}' is a {runtime.spec.task} task; use /tasks/{name}/embed, /index and /retrieve")
        if items.modality != runtime.query_modality:
            raise BadRequestError(f"task '{name}' classifies {runtime.query_modality}s, not {items.modality}s; send '{runtime.query_modality}s'")
        top_k = self._top_k(top_k, len(runtime.class_names))
        embeddings = await self.embed_task(task, items)
        return task, runtime.classify_embeddings(embeddings, top_k)

    def index_for(self, task: ServedTask, create: bool = False) -> Index | None:
        with self._lock:
            index = self._indexes.get(task.name)
            if index is not None and index.uid != task.uid:  # built with an older version of the adapter
                index = None
                del self._indexes[task.name]
            if index is None and create:
                index = self._indexes[task.name] = Index(task.uid)
            return index

    async def index(self, name: str, items: Items, ids: list[Any] | None) -> tuple[ServedTask, int, int]:
        ids = self._check_ids(ids, len(items.values))
        task, embeddings = await self.embed(name, items)
        index = self.index_for(task, create=True)
        size = await run_in_threadpool(index.add, ids, embeddings, self.limits.max_index_items)
        return task, len(ids), size

    def clear_index(self, name: str) -> int:
        task = self.registry.get(name)
        with self._lock:
            index = self._indexes.pop(task.name, None)
        return len(index) if index is not None else 0

    async def retrieve(self, name: str, items: Items, top_k: int) -> tuple[ServedTask, list]:
        task = self.registry.get(name)
        index = self.index_for(task)
        if index is None or not len(index):
            raise ConflictError(f"task '{name}' has an empty index; add items with POST /tasks/{name}/index first")
        top_k = self._top_k(top_k, len(index))
        embeddings = await self.embed_task(task, items)
        index = self.index_for(task)
        if index is None or not len(index):  # the task was reloaded meanwhile
            raise ConflictError(f"task '{name}' was reloaded and its index dropped; add the items again")
        return task, await run_in_threadpool(index.search, embeddings, top_k)

    def index_sizes(self) -> dict[str, int]:
        with self._lock:
            return {name: len(index) for name, index in self._indexes.items()}

    # --- helpers ------------------------------------------------------------------------------
    def _top_k(self, top_k: Any, available: int) -> int:
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise BadRequestError(f"top_k must be an integer, got {top_k!r}")
        if not 1 <= top_k <= self.limits.max_top_k:
            raise BadRequestError(f"top_k must be between 1 and {self.limits.max_top_k}, got {top_k}")
        return min(top_k, max(1, available))

    def _check_ids(self, ids: Any, count: int) -> list[str]:
        if not isinstance(ids, list) or not ids:
            raise BadRequestError("'ids' is required: one id (string) per item to index")
        if len(ids) != count:
            raise BadRequestError(f"{len(ids)} ids for {count} items; send one id per item")
        out = []
        for i, value in enumerate(ids):
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise BadRequestError(f"ids[{i}] must be a string, got {type(value).__name__}")
            value = str(value)
            if not value or len(value) > self.limits.max_id_chars:
                raise BadRequestError(f"ids[{i}] must have 1 to {self.limits.max_id_chars} characters")
            out.append(value)
        return out

    def _on_task_event(self, event: str, task: ServedTask) -> None:
        if event in ("updated", "unloaded"):
            with self._lock:
                self._indexes.pop(task.name, None)
