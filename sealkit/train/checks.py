"""Checks of a task before training: problems that would otherwise train silently into nonsense.

A single class gives accuracy 1.0 whatever the adapters do; class names that the seal's tokenizer
maps to the same tokens (e.g. two words both outside its vocabulary) give identical prompts, so
the text head cannot tell them apart and the loss stays at log(2). Imports no torch.
"""

from __future__ import annotations

import logging

from sealkit.errors import DataError
from sealkit.runtime.seal import Seal

log = logging.getLogger("sealkit.train")


def check_classes(seal: Seal, spec) -> list[str]:
    """Refuse a classification task with fewer than two classes; return (and log) warnings for
    class prompts that tokenize identically. `spec` is the run's TaskSpec."""
    if spec.task != "classify":
        return []
    if len(spec.class_names) < 2:
        raise DataError(f"classification needs at least 2 classes, the data has {len(spec.class_names)} ({', '.join(spec.class_names) or 'none'}); accuracy on one class says nothing")
    if spec.head != "text" or not spec.key_tower:
        return []
    tower = seal.tower(spec.key_tower)
    template = spec.templates[0] if spec.templates else "{}"
    ids, _ = tower.text_encoder([template.format(name) for name in spec.class_names])
    seen: dict[bytes, str] = {}
    warnings = []
    for name, row in zip(spec.class_names, ids):
        key = row.tobytes()
        if key in seen:
            warnings.append(f"classes {seen[key]!r} and {name!r} tokenize identically with this seal's tokenizer (e.g. both unknown words), so the text head cannot tell them apart; rename them or use the linear head")
        else:
            seen[key] = name
    for warning in warnings:
        log.warning(warning)
    return warnings
