"""The adapt workflow in a few calls: build adapters for a task, fit them, evaluate, save.

    seal = open_seal("model.seal", key="keys/seal.key")
    result = adapt(seal, load_dataset("train.csv", ...), val, method="dga", task="classify", out="task.adapter")
    metrics = evaluate(seal, test, adapter="task.adapter")

`sealkit adapt` and `sealkit eval` are thin wrappers around these. Imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sealkit.adapters.config import METHODS, AdapterConfig
from sealkit.data.dataset import Dataset
from sealkit.errors import AdapterError, SealkitError, TrainingError
from sealkit.fileio import check_output_path, remove_stale_temps
from sealkit.runtime.evaluate import evaluate_adapter
from sealkit.runtime.seal import Seal
from sealkit.train.checks import check_classes
from sealkit.train.loop import FitResult, TrainConfig, fit
from sealkit.train.objectives import ClassifyObjective, Objective, build_task_spec, make_objective
from sealkit.train.pack import AdapterPack
from sealkit.train.probe import fit_output_stage
from sealkit.train.saving import load_adapter, save_adapter


@dataclass
class AdaptResult:
    adapter_path: Path
    checkpoint_path: Path
    zero_shot: dict[str, float] | None
    baseline_kind: str  # "zero-shot" (frozen backbone) or "untrained" (adapters at init: towers not aligned)
    fit: FitResult
    parameters: dict[str, int]
    backbone_parameters: int
    main_metric: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def adapter_parameters(self) -> int:
        return sum(self.parameters.values())


def checkpoint_path_for(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def _class_embeddings(objective: Objective, pack: AdapterPack) -> np.ndarray | None:
    if isinstance(objective, ClassifyObjective) and objective.spec.head == "text":
        with torch.no_grad():
            return objective.class_embeddings(pack).numpy()
    return None


def resolve_adapter_config(method: str | None, adapter_config: AdapterConfig | None) -> AdapterConfig:
    """The run's adapter config: `adapter_config` as given, or the defaults for `method` (dga when neither).

    The caller's config object is never changed; a `method` that contradicts it is an error.
    """
    if method is not None and method not in METHODS:
        raise AdapterError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if adapter_config is None:
        return AdapterConfig(method=method or "dga")
    if method is not None and method != adapter_config.method:
        raise AdapterError(f"method {method!r} contradicts adapter_config.method {adapter_config.method!r}; give one of them")
    return adapter_config


def adapt(
    seal: Seal,
    train: Dataset,
    val: Dataset | None,
    out: str | Path,
    method: str | None = None,
    task: str = "classify",
    config: TrainConfig | None = None,
    adapter_config: AdapterConfig | None = None,
    head: str | None = None,
    templates: list[str] | None = None,
    recall_ks: tuple[int, ...] = (1, 5, 10),
    resume: bool = False,
    progress: bool = True,
    zero_shot: bool = True,
    init_from: str | Path | None = None,
) -> AdaptResult:
    """Train `method` adapters for `task` on `train`, keep the best on `val`, write `out`.

    `method` (output, dga or lga; default dga) or `adapter_config` (method and sizes) choose the adapters.

    With `config.probe` (the default) the output stage is first fitted on cached frozen features
    (sealkit/train/probe.py), so dga and lga fine-tune through the seal from a fitted probe, and the
    fitted start is step 0, a candidate for the best.

    `init_from` starts from another adapter of the same seal and task (e.g. an `output` run before a
    `dga` run): every parameter with the same name and shape is copied (the probe then keeps its
    head and only picks the output learning rate).
    """
    config = config or TrainConfig()
    adapter_config = resolve_adapter_config(method, adapter_config)
    out = Path(out)
    if out.suffix == ".ckpt":
        raise SealkitError("out names the adapter file; the checkpoint is written next to it as <out>.ckpt")
    check_output_path(out, "out")  # before any training
    for written in (out, checkpoint_path_for(out)):
        remove_stale_temps(written)
    spec = build_task_spec(seal, train, task, head=head, templates=templates)
    if val is not None and len(val):
        build_task_spec(seal, val, task, head=spec.head, templates=spec.templates)  # same fields present
    warnings = check_classes(seal, spec)  # one class: DataError; classes the tokenizer cannot tell apart: warnings
    objective = make_objective(seal, spec, recall_ks)
    torch.manual_seed(config.seed)
    pack = AdapterPack(seal, adapter_config, spec)
    eval_set = (val if val is not None and len(val) else train).subset(config.max_eval, seed=config.seed)
    baseline, baseline_kind = None, "zero-shot"
    if zero_shot:
        if objective.zero_shot_defined():
            baseline = objective.evaluate(None, eval_set)
        else:  # unaligned towers or a linear head: the honest "before" is the untrained adapters
            baseline, baseline_kind = objective.evaluate(pack, eval_set), "untrained"
    if init_from is not None:
        copied = init_pack_from(pack, init_from, seal)
        if not copied:
            raise SealkitError(f"{init_from} shares no parameters with this run's adapters; is it for the same task?")
    probe = None
    if config.probe and not resume:  # a resumed run takes its learning rates from the checkpoint
        probe = fit_output_stage(objective, pack, train, eval_set, config, fit_head=init_from is None)
    checkpoint = checkpoint_path_for(out)
    meta_base = {
        "probe": probe.to_dict() if probe else None,
        "train_config": config.to_dict(),
        "train_examples": len(train),
        "zero_shot": baseline,
        "baseline_kind": baseline_kind,
        "init_from": str(init_from) if init_from else None,
        "recall_ks": list(recall_ks),
    }

    def on_best(best_pack: AdapterPack, metrics: dict[str, float], step: int) -> None:
        # keep a usable adapter on disk from the first evaluation on (Ctrl-C leaves it behind)
        embeddings = _class_embeddings(objective, best_pack)
        if embeddings is not None and not np.isfinite(embeddings).all():  # finite weights, overflowing outputs
            raise TrainingError(f"the class embeddings became NaN or infinite at step {step}: training diverged; lower the learning rate", topic="lr")
        save_adapter(out, best_pack, {**meta_base, "metrics": metrics, "best_step": step, "complete": False}, embeddings)

    output_lr = config.output_lr if config.output_lr is not None or probe is None else probe.output_lr
    result = fit(objective, pack, train, val, config, checkpoint, resume=resume, on_best=on_best, progress=progress, output_lr=output_lr)
    if not result.interrupted:
        save_adapter(
            out,
            pack,
            {**meta_base, "metrics": result.best_metrics, "best_step": result.best_step, "history": result.history, "complete": True, "seconds": result.seconds},
            _class_embeddings(objective, pack),
        )
    backbone = sum(seal.manifest.towers[t].parameters for t in spec.towers)
    return AdaptResult(out, checkpoint, baseline, baseline_kind, result, pack.parameter_counts(), backbone, objective.main_metric, {"warnings": warnings})


def init_pack_from(pack: AdapterPack, path: str | Path, seal: Seal) -> list[str]:
    """Copy every same-named, same-shaped parameter from another adapter of this seal; returns their names."""
    other, meta = load_adapter(path, seal)
    if meta["task"]["task"] != pack.task.task:
        raise SealkitError(f"{path} is a {meta['task']['task']} adapter; this run is {pack.task.task}")
    own = pack.state_dict()
    copied = {k: v for k, v in other.state_dict().items() if k in own and own[k].shape == v.shape}
    pack.load_state_dict(copied, strict=False)
    return sorted(copied)


def evaluate(
    seal: Seal,
    data: Dataset,
    adapter: str | Path | None = None,
    task: str = "classify",
    head: str | None = None,
    templates: list[str] | None = None,
    recall_ks: tuple[int, ...] = (1, 5, 10),
) -> dict[str, float]:
    """Metrics of an adapter on `data` (on the torch-free runtime), or of the frozen backbone (zero-shot) without one."""
    if adapter is not None:
        return evaluate_adapter(seal, data, adapter, recall_ks=recall_ks)
    spec = build_task_spec(seal, data, task, head=head, templates=templates)
    objective = make_objective(seal, spec, recall_ks)
    if not objective.zero_shot_defined():
        raise SealkitError(
            "zero-shot evaluation is undefined here: "
            + ("a linear head must be trained" if spec.head == "linear" else "the two towers' outputs differ in width and are not aligned")
            + "; train adapters (method output is the linear probe) and evaluate with them"
        )
    return objective.evaluate(None, data)
