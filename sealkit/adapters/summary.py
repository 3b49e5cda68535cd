"""What an adapter file holds, for `sealkit inspect FILE.adapter` and docs/format.md. Torch-free.

An adapter file is a safetensors file: its tensors are the adapters' parameters (plus precomputed
class-prompt embeddings for text-head classifiers) and its metadata key "sealkit" is one JSON
document (seal binding, task, method, configuration, training record, checksum).
"""

from __future__ import annotations

from typing import Any

from sealkit.adapters.config import AdapterConfig
from sealkit.adapters.file import AdapterFile

TRAINING_KEYS = ("train_config", "train_examples", "best_step", "metrics", "zero_shot", "baseline_kind", "init_from", "complete", "seconds", "recall_ks")


def module_of(tensor: str) -> str:
    """towers.<tower>.<input|output|entries>.*  ->  towers.<tower>.<part>; head.* -> head; else the name."""
    parts = tensor.split(".")
    if parts[0] == "towers" and len(parts) >= 3:
        return ".".join(parts[:3])
    if parts[0] == "head":
        return "head"
    return tensor


def input_adapters(config: AdapterConfig) -> str | None:
    """The input adapters' design in words (None for the output method): image branches, text bottleneck, context, prompts."""
    if not config.has_input_adapters:
        return None
    image = "image: no conv"
    if config.image_width:
        scales = "dilation " + ", ".join(str(d) for d in config.image_dilations)
        image = f"image: residual 3x3 conv, {config.image_width} channels, {scales}" + (" (multi-scale)" if len(config.image_dilations) > 1 else "")
    if config.image_prompt:
        image += ", a learnable prompt pattern"
    context = f", depthwise conv across tokens of kernel {config.text_context}" if config.text_context else ", per token"
    prompts = f", {config.text_prompts} prompt token(s)" if config.text_prompts else ""
    return f"{image}; text: rank-{config.text_rank} bottleneck{context}{prompts}"


def describe_adapter(file: AdapterFile) -> dict[str, Any]:
    """Task, method, classes, parameters per module, the seal it binds to, and the training record."""
    meta = file.meta
    modules: dict[str, dict[str, Any]] = {}
    for name, array in sorted(file.tensors.items()):
        row = modules.setdefault(module_of(name), {"tensors": 0, "parameters": 0, "shapes": {}})
        row["tensors"] += 1
        row["parameters"] += int(array.size)
        row["shapes"][name] = list(array.shape)
    task = dict(meta.get("task") or {})
    history = meta.get("history") or []
    return {
        "path": str(file.path),
        "format": f"{meta.get('format')} v{meta.get('format_version')} (safetensors + JSON metadata key 'sealkit')",
        "sealkit_version": meta.get("sealkit_version"),
        "seal": {"id": meta.get("seal_id"), "name": meta.get("seal_name")},
        "task": task.get("task"),
        "method": meta.get("method"),
        "head": task.get("head"),
        "towers": {"query": task.get("query_tower"), "key": task.get("key_tower")},
        "classes": task.get("class_names") or [],
        "templates": task.get("templates") or [],
        "config": meta.get("config") or {},
        "input_adapters": input_adapters(file.config),
        "parameters": {"total": sum(m["parameters"] for m in modules.values()), "by_module": modules},
        "training": {**{k: meta[k] for k in TRAINING_KEYS if k in meta}, "evaluations": len(history)},
        "tensors_sha256": meta.get("tensors_sha256"),
    }
