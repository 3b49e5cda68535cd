"""Save an AdapterPack to an adapter file and load it back for further training or evaluation.

Imports torch (the adapt path). Deployment reads the same file with numpy only (adapters/file.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sealkit.adapters.file import read_adapter_file, write_adapter_file
from sealkit.adapters.validate import validate_adapter
from sealkit.adapters.modules import AdapterConfig
from sealkit.adapters.pack import AdapterPack, TaskSpec
from sealkit.errors import AdapterError
from sealkit.runtime.seal import Seal

CLASS_EMBEDDINGS = "task.class_embeddings"


def save_adapter(path: str | Path, pack: AdapterPack, extra_meta: dict[str, Any] | None = None, class_embeddings: np.ndarray | None = None) -> Path:
    """Write the pack's parameters and metadata (seal id, method, task, sizes, anything in extra_meta)."""
    tensors = {name: value.detach().cpu().numpy() for name, value in pack.state_dict().items()}
    if class_embeddings is not None:
        tensors[CLASS_EMBEDDINGS] = np.asarray(class_embeddings, dtype=np.float32)
    meta = {
        "seal_id": pack.seal_id,
        "seal_name": pack.seal_name,
        "method": pack.config.method,
        "config": pack.config.to_dict(),
        "task": pack.task.to_dict(),
        "out_dim": pack.out_dim,
        "towers": {
            name: {
                "input_adapter": adapters.input is not None,
                "entries": {k: list(v.shape) for k, v in adapters.entries.items()},
                "output_dim": pack.out_dim,
            }
            for name, adapters in pack.towers.items()
        },
        "parameters": pack.parameter_counts(),
        "shapes": {name: list(value.shape) for name, value in tensors.items()},
        **(extra_meta or {}),
    }
    validate_adapter(meta, tensors, path)  # never write an adapter that would be refused at load (e.g. NaN weights)
    return write_adapter_file(path, meta, tensors)


def load_adapter(path: str | Path, seal: Seal) -> tuple[AdapterPack, dict[str, Any]]:
    """Rebuild the trained pack for `seal`; refuses an adapter trained for another seal."""
    file = read_adapter_file(path, seal.seal_id)
    meta = file.meta
    try:
        pack = AdapterPack(seal, AdapterConfig.from_dict(meta["config"]), TaskSpec.from_dict(meta["task"]))
        state = {k: torch.from_numpy(v.copy()) for k, v in file.tensors.items() if k != CLASS_EMBEDDINGS}
        pack.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, TypeError) as exc:
        raise AdapterError(f"{path} does not match the adapter layout this sealkit builds ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    return pack, meta
