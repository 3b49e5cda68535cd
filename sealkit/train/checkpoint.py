"""Training checkpoints as data only: one safetensors file of tensors plus a JSON document.

A checkpoint sits next to the adapter where anyone with access to the folder can replace it, so it
must never be a pickle (`torch.load` of a pickle runs whatever code the file names). Tensors (the
pack's state, the best state so far, the optimizer's per-parameter tensors and torch's RNG state as
uint8) go into safetensors; everything else (run identity, step, metrics, history, the optimizer's
param groups and non-tensor state) into one JSON string in the safetensors metadata. A file that is
not such a checkpoint, including a checkpoint pickled by an older sealkit, is refused unread.
Imports torch (the adapt path only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from sealkit.errors import CheckpointError
from sealkit.fileio import atomic_write_bytes

CHECKPOINT_FORMAT = "sealkit-checkpoint"
CHECKPOINT_VERSION = 2  # version 1 was a torch pickle; it is refused, never loaded
_META_KEY = "sealkit_checkpoint"
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive, or a bare pickle protocol 2+


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item"):  # numpy scalars in metrics
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


def _encode_json(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, sort_keys=True)


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """Serialise a training state: {"identity", "pack", "optimizer", "torch_rng", "step", "best", "history"}."""
    tensors: dict[str, torch.Tensor] = {}
    for name, value in state["pack"].items():
        tensors[f"pack/{name}"] = value
    best = dict(state["best"])
    best_state = best.pop("state", None)
    for name, value in (best_state or {}).items():
        tensors[f"best/{name}"] = value
    optimizer = state["optimizer"]
    plain_state: dict[str, dict[str, Any]] = {}
    for index, slots in optimizer["state"].items():
        plain_state[str(index)] = {}
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{slot}"] = value
            else:
                plain_state[str(index)][slot] = value
    tensors["torch_rng"] = state["torch_rng"]
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "identity": state["identity"],
        "step": int(state["step"]),
        "best": best,
        "has_best_state": best_state is not None,
        "history": state["history"],
        "optimizer": {"param_groups": optimizer["param_groups"], "plain_state": plain_state},
    }
    contiguous = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    return save_tensors(contiguous, metadata={_META_KEY: _encode_json(meta)})


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, checkpoint_bytes(state))


def _refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} {why}; delete it and start fresh instead of resuming", topic="resume")


def load_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The training state saved at `path`, if it is a checkpoint of this version and of this run."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path} to resume from; start fresh instead of resuming", topic="resume") from None
    except OSError as exc:
        raise _refuse(path, f"is unreadable ({exc.strerror or exc})") from None
    try:
        tensors = load_tensors(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header["__metadata__"][_META_KEY])
    except (SafetensorError, ValueError, KeyError, TypeError, RecursionError, UnicodeDecodeError):
        if data.startswith(_PICKLE_MAGIC):
            raise _refuse(path, "is a pickle (written by an older sealkit, or planted); pickles are never loaded because they can run code") from None
        raise _refuse(path, "is unreadable (corrupted, truncated, or not a sealkit checkpoint)") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
        raise _refuse(path, "is not a sealkit checkpoint of this version")
    saved = meta.get("identity") if isinstance(meta.get("identity"), dict) else {}
    changed = sorted(k for k in identity if saved.get(k) != _roundtrip(identity[k]))
    if changed:
        raise CheckpointError(f"checkpoint {path} is from a different run ({', '.join(changed)} differ); use the same settings or delete it")
    try:
        return _state_from(meta, tensors)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _refuse(path, "is incomplete (a tensor or field is missing)") from None


def _roundtrip(value: Any) -> Any:
    """`value` as it reads back from JSON, so a saved identity compares equal to a fresh one."""
    return json.loads(_encode_json(value))


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _state_from(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    optimizer_state: dict[int, dict[str, Any]] = {}
    for index, slots in meta["optimizer"]["plain_state"].items():
        optimizer_state[int(index)] = dict(slots)
    for key, value in _prefixed(tensors, "optimizer/").items():
        index, slot = key.split("/", 1)
        optimizer_state.setdefault(int(index), {})[slot] = value
    best = dict(meta["best"])
    best["state"] = _prefixed(tensors, "best/") if meta.get("has_best_state") else None
    return {
        "version": meta["version"],
        "identity": meta["identity"],
        "pack": _prefixed(tensors, "pack/"),
        "optimizer": {"state": optimizer_state, "param_groups": meta["optimizer"]["param_groups"]},
        "torch_rng": tensors["torch_rng"],
        "step": int(meta["step"]),
        "best": best,
        "history": list(meta["history"]),
    }
