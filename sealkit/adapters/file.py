"""The adapter file: one small safetensors file, bound to the seal it was trained on.

Tensors are the pack's parameters (plus precomputed class embeddings for text-head classifiers);
the safetensors metadata holds one JSON document: the seal id, method, task, sizes, training
configuration, metrics, sealkit version and a SHA-256 of the tensors (safetensors has no checksum
of its own, so a flipped bit in the weights would otherwise load silently). `read_adapter_file`
needs only numpy, so a deployed runtime can read adapters without torch; `load_adapter` (torch)
rebuilds the trainable pack.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy

from sealkit import __version__
from sealkit.adapters.config import AdapterConfig, TaskSpec
from sealkit.errors import AdapterError, AdapterMismatchError
from sealkit.fileio import atomic_write_bytes

ADAPTER_FORMAT = "sealkit-adapter"
ADAPTER_VERSION = 1
DIGEST_KEY = "tensors_sha256"  # tensors only: what files written before content_sha256 carry
CONTENT_DIGEST_KEY = "content_sha256"  # metadata and tensors: a changed byte anywhere is caught


def tensors_digest(tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        digest.update(f"{name}|{array.dtype.str}|{list(array.shape)}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def content_digest(meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 over the metadata (without its digests, as canonical JSON) and the tensors' digest."""
    plain = {k: v for k, v in meta.items() if k not in (DIGEST_KEY, CONTENT_DIGEST_KEY)}
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii") + b"\0" + tensors_digest(tensors).encode("ascii")).hexdigest()


@dataclass
class AdapterFile:
    """An adapter file's contents, as numpy arrays and its JSON metadata."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, np.ndarray]

    @property
    def seal_id(self) -> str:
        return str(self._field("seal_id", str))

    @property
    def config(self) -> AdapterConfig:
        """The adapter's method and sizes, from its metadata."""
        return AdapterConfig.from_dict(self._field("config", dict))

    @property
    def task(self) -> TaskSpec:
        """The adapter's task (towers, fields, head, classes), from its metadata."""
        return TaskSpec.from_dict(self._field("task", dict))

    def _field(self, key: str, kind: type) -> Any:
        value = self.meta.get(key)
        if not isinstance(value, kind) or not value:
            raise AdapterError(f"{self.path.name}: its metadata has no valid '{key}'; retrain it or copy it again")
        return value

    def check_meta(self) -> None:
        """Refuse metadata that does not describe an adapter: a seal id, and a valid config and task that agree.

        Tensor names and shapes are checked against the seal where the adapter is used
        (sealkit/adapters/layout.py `check_tensors`), since they depend on the seal's towers.
        """
        try:
            self.seal_id, self.task  # noqa: B018  (each raises AdapterError when missing or malformed)
            method = self.config.method
        except AdapterError as exc:
            message = str(exc) if str(exc).startswith(self.path.name) else f"{self.path.name}: {exc}"
            raise AdapterError(message) from None
        if self.meta.get("method", method) != method:
            raise AdapterError(f"{self.path.name}: its metadata says method {self.meta.get('method')!r} but its config {method!r}; retrain it or copy it again")

    def check_seal(self, seal_id: str) -> None:
        if self.seal_id != seal_id:
            raise AdapterMismatchError(
                f"{self.path.name} was trained for seal {self.seal_id} ({self.meta.get('seal_name', '?')}), not for this seal {seal_id}; "
                "use the adapter with the seal it was trained on, or retrain it"
            )


def write_adapter_file(path: str | Path, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> Path:
    full_meta = {"format": ADAPTER_FORMAT, "format_version": ADAPTER_VERSION, "sealkit_version": __version__, **meta}
    full_meta[DIGEST_KEY] = tensors_digest(tensors)  # always of these tensors, even when meta came from another file
    full_meta[CONTENT_DIGEST_KEY] = content_digest(full_meta, tensors)
    data = save_numpy({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata={"sealkit": json.dumps(full_meta, sort_keys=True)})
    return atomic_write_bytes(path, data)


def read_adapter_file(path: str | Path, seal_id: str | None = None) -> AdapterFile:
    """Read and validate an adapter file; with `seal_id`, refuse one trained for another seal."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AdapterError(f"no adapter file at {path}; check the path (adapt writes one)") from None
    except OSError as exc:
        raise AdapterError(f"cannot read adapter {path}: {exc.strerror or exc}") from None
    return parse_adapter_bytes(data, path, seal_id)


def parse_adapter_bytes(data: bytes, path: str | Path, seal_id: str | None = None) -> AdapterFile:
    """An adapter file's bytes, checked as `read_adapter_file` does; `path` names it in messages."""
    path = Path(path)
    try:
        tensors = load_numpy(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get("sealkit", "null"))
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError, RecursionError):
        raise AdapterError(f"{path} is not a valid sealkit adapter file (corrupted or truncated); retrain or copy it again") from None
    if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT:
        raise AdapterError(f"{path} is a safetensors file but not a sealkit adapter")
    if meta.get("format_version") != ADAPTER_VERSION:
        raise AdapterError(f"{path} uses adapter format version {meta.get('format_version')}; this sealkit reads {ADAPTER_VERSION}")
    if meta.get(DIGEST_KEY) is not None and meta[DIGEST_KEY] != tensors_digest(tensors):  # files written before the digest have none
        raise AdapterError(f"{path} is corrupted: its tensors do not match the checksum in its header; retrain or copy it again")
    if CONTENT_DIGEST_KEY in meta and meta[CONTENT_DIGEST_KEY] != content_digest(meta, tensors):  # older files: tensors only
        raise AdapterError(f"{path} is corrupted: its metadata does not match the checksum in its header; retrain or copy it again")
    file = AdapterFile(path, meta, tensors)
    file.check_meta()
    if seal_id is not None:
        file.check_seal(seal_id)
    return file
