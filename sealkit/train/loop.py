"""The training loop of `sealkit adapt`, written out so it reads top to bottom.

Each step: a deterministic batch -> task loss (adapters -> seal forward -> adapters) -> backward
(the seal's VJP graph) -> AdamW step with warmup + cosine learning rate. It evaluates on the
validation set at intervals, keeps the best adapters, and writes a checkpoint atomically at
intervals, at the end and on Ctrl-C, so `--resume` continues exactly where it stopped.
Imports torch (the adapt path only).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sealkit.adapters.pack import AdapterPack
from sealkit.data.dataset import Dataset
from sealkit.errors import CheckpointError, SealkitError
from sealkit.fileio import atomic_write_bytes
from sealkit.train.tasks import Task

CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    steps: int = 200
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05  # fraction of the steps
    seed: int = 0
    eval_every: int = 0  # 0: five evaluations over the run
    checkpoint_every: int = 0  # 0: at every evaluation
    max_eval: int = 2000  # validation examples used at each interval (seeded subset)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    best_metric: float
    best_step: int
    final_metrics: dict[str, float]
    best_metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    steps_done: int = 0
    seconds: float = 0.0
    interrupted: bool = False


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    warmup = max(1, int(config.warmup * config.steps))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def batch_indices(step: int, n: int, batch: int, seed: int) -> np.ndarray:
    """The examples of `step`: a seeded permutation per epoch, so any step can be recomputed on resume."""
    start = step * batch
    out = []
    while len(out) < min(batch, n):
        epoch, offset = divmod(start + len(out), n)
        order = np.random.default_rng((seed, epoch)).permutation(n)
        take = min(batch - len(out), n - offset)
        out.extend(order[offset : offset + take].tolist())
    return np.asarray(out)


def _state_bytes(obj: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write_bytes(path, _state_bytes({"version": CHECKPOINT_VERSION, **state}))


def load_checkpoint(path: Path, identity: dict) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path} to resume from; run without --resume to start fresh") from None
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it and run without --resume") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} is not a sealkit checkpoint of this version; delete it and run without --resume")
    saved = state.get("identity", {})
    changed = sorted(k for k in identity if saved.get(k) != identity[k])
    if changed:
        raise CheckpointError(f"checkpoint {path} is from a different run ({', '.join(changed)} differ); use the same settings or delete it")
    return state


def fit(
    task: Task,
    pack: AdapterPack,
    train: Dataset,
    val: Dataset | None,
    config: TrainConfig,
    checkpoint_path: Path,
    resume: bool = False,
    on_best: Callable[[AdapterPack, dict[str, float], int], None] | None = None,
    progress: bool = True,
) -> FitResult:
    """Train `pack` on `train` for `task`; evaluate on `val`; checkpoint to `checkpoint_path`."""
    if len(train) == 0:
        raise SealkitError("the training set is empty")
    torch.manual_seed(config.seed)
    eval_every = config.eval_every or max(1, config.steps // 5)
    checkpoint_every = config.checkpoint_every or eval_every
    val_subset = val.subset(config.max_eval, seed=config.seed) if val is not None and len(val) else None
    parameters = [p for p in pack.parameters() if p.requires_grad]
    decay = [p for n, p in pack.named_parameters() if p.requires_grad and p.dim() >= 2 and "entries" not in n]
    no_decay = [p for n, p in pack.named_parameters() if p.requires_grad and not (p.dim() >= 2 and "entries" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr
    )
    identity = {"seal_id": pack.seal_id, "method": pack.config.method, "task": pack.task.task, "config": config.to_dict(), "train_size": len(train)}

    step = 0
    best = {"metric": -math.inf, "step": -1, "metrics": {}, "state": None}
    history: list[dict[str, Any]] = []
    if resume:
        state = load_checkpoint(checkpoint_path, identity)
        pack.load_state_dict(state["pack"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step, best, history = state["step"], state["best"], state["history"]

    def checkpoint() -> None:
        save_checkpoint(
            checkpoint_path,
            {
                "identity": identity,
                "pack": pack.state_dict(),
                "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "best": best,
                "history": history,
            },
        )

    def evaluate_now() -> dict[str, float]:
        pack.eval()
        metrics = task.evaluate(pack, val_subset if val_subset is not None else train.subset(config.max_eval, seed=config.seed))
        pack.train()
        score = metrics[task.main_metric]
        history.append({"step": step, **metrics})
        if score > best["metric"]:
            best.update(metric=score, step=step, metrics=metrics, state={k: v.detach().clone() for k, v in pack.state_dict().items()})
            if on_best is not None:
                on_best(pack, metrics, step)
        return metrics

    bar = None
    if progress:
        from sealkit.train.progress import make_progress

        bar = make_progress(config.steps, step, f"{pack.config.method}/{pack.task.task}")
    started = time.perf_counter()
    seen = 0
    interrupted = False
    last_metrics: dict[str, float] = history[-1] if history else {}
    pack.train()
    try:
        while step < config.steps:
            examples = [train.examples[i] for i in batch_indices(step, len(train), config.batch, config.seed)]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, config)
            loss = task.loss(pack, examples)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 5.0)
            optimizer.step()
            step += 1
            seen += len(examples)
            if bar is not None:
                rate = seen / max(1e-9, time.perf_counter() - started)
                postfix = {"loss": f"{loss.item():.3f}", "ex/s": f"{rate:.1f}"}
                if last_metrics:
                    postfix[task.main_metric] = f"{last_metrics.get(task.main_metric, float('nan')):.3f}"
                bar.set_postfix(postfix)
                bar.update(1)
            if step % eval_every == 0 or step == config.steps:
                last_metrics = evaluate_now()
            if step % checkpoint_every == 0 or step == config.steps:
                checkpoint()
    except KeyboardInterrupt:
        interrupted = True
        checkpoint()
    finally:
        if bar is not None:
            bar.close()
    if best["state"] is not None:
        pack.load_state_dict(best["state"])
    return FitResult(
        best_metric=best["metric"],
        best_step=best["step"],
        final_metrics=last_metrics,
        best_metrics=best["metrics"],
        history=history,
        steps_done=step,
        seconds=time.perf_counter() - started,
        interrupted=interrupted,
    )
