"""Save an AdapterPack to an adapter file and load it back for further training or evaluation.

Imports torch (the adapt path). Deployment reads the same file with numpy only (sealkit/adapters/file.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sealkit.adapters.file import read_adapter_file, write_adapter_file
from sealkit.adapters.layout import CLASS_EMBEDDINGS, check_tensors
from sealkit.runtime.seal import Seal
from sealkit.train.pack import AdapterPack


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
            name: {"input_adapter": bool(tower.input), "entries": {k: list(v) for k, v in tower.entries.items()}, "output_dim": pack.out_dim}
            for name, tower in pack.layout.towers.items()
        },
        "parameters": pack.parameter_counts(),
        "shapes": {name: list(value.shape) for name, value in tensors.items()},
        **(extra_meta or {}),
    }
    check_tensors(pack.layout, tensors, Path(path).name)  # never write an adapter that would be refused at load (e.g. NaN weights)
    return write_adapter_file(path, meta, tensors)


def load_adapter(path: str | Path, seal: Seal) -> tuple[AdapterPack, dict[str, Any]]:
    """Rebuild the trained pack for `seal`; refuses an adapter trained for another seal or not matching its layout."""
    file = read_adapter_file(path, seal.seal_id)
    pack = AdapterPack(seal, file.config, file.task)
    check_tensors(pack.layout, file.tensors, file.path.name)
    pack.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in file.tensors.items() if k != CLASS_EMBEDDINGS}, strict=True)
    return pack, file.meta
