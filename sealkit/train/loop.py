"""The training loop of `sealkit adapt`, written out so it reads top to bottom.

Each step: a deterministic batch -> task loss (adapters -> seal forward -> adapters) -> backward
(the seal's VJP graph) -> AdamW step with warmup + cosine learning rate. It evaluates on the
validation set at intervals, keeps the best adapters, and writes a checkpoint atomically at
intervals, at the end and on Ctrl-C, so `--resume` continues exactly where it stopped.
Imports torch (the adapt path only).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sealkit.data.dataset import Dataset
from sealkit.errors import SealkitError, TrainingError
from sealkit.train.checkpoint import load_checkpoint, save_checkpoint
from sealkit.train.config import TrainConfig
from sealkit.train.objectives import Objective
from sealkit.train.pack import AdapterPack


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


def learning_rate(step: int, config: TrainConfig, peak: float | None = None) -> float:
    """Linear warmup, then cosine decay to 10% of the peak (the text input rate unless given)."""
    peak = config.input_lr("text") if peak is None else peak
    warmup = max(1, int(config.warmup * config.steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def parameter_groups(pack: AdapterPack, config: TrainConfig, output_lr: float) -> list[dict[str, Any]]:
    """AdamW groups: input side (input adapters, entries) peaks at `config.input_lr` of its tower's
    modality; output side (head, output adapters, temperature) at `output_lr`; weight decay on
    matrices, never on entries.

    The groups depend on the parameters only, never on the rates' values, so a resumed run's
    optimizer state matches the groups it was saved with.
    """
    groups: dict[tuple[str, str, bool], list[torch.nn.Parameter]] = {}
    for name, p in pack.named_parameters():
        if p.requires_grad:
            side = pack.side(name)
            modality = pack.modality_of(name) if side == "input" else ""
            groups.setdefault((side, modality, p.dim() >= 2 and "entries" not in name), []).append(p)
    return [
        {"params": params, "weight_decay": config.weight_decay if decay else 0.0, "peak_lr": config.input_lr(modality) if side == "input" else output_lr}
        for (side, modality, decay), params in groups.items()
    ]


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


def _kept(step: int | None, path: Path) -> str:
    return f"the last good checkpoint (step {step}) is kept in {path}" if step is not None else "no checkpoint was written yet"


def interrupt_on_signals() -> Callable[[], None]:
    """Make SIGTERM and SIGHUP stop training like Ctrl-C (checkpoint, then exit); returns the undo.

    Only in the main thread (Python delivers signals there); elsewhere it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, interrupt)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore


def fit(
    task: Objective,
    pack: AdapterPack,
    train: Dataset,
    val: Dataset | None,
    config: TrainConfig,
    checkpoint_path: Path,
    resume: bool = False,
    on_best: Callable[[AdapterPack, dict[str, float], int], None] | None = None,
    progress: bool = True,
    output_lr: float | None = None,
) -> FitResult:
    """Train `pack` on `train` for `task`; evaluate on `val`; checkpoint to `checkpoint_path`.

    The output side trains at `output_lr` (default: `config.fallback_output_lr()`). A fresh
    run evaluates its start (step 0) first, so the kept adapters are never worse on validation than
    the (fitted) adapters it began with.
    """
    if len(train) == 0:
        raise SealkitError("the training set is empty")
    torch.manual_seed(config.seed)
    eval_every = config.eval_every or max(1, config.steps // 5)
    checkpoint_every = config.checkpoint_every or eval_every
    val_subset = val.subset(config.max_eval, seed=config.seed) if val is not None and len(val) else None
    parameters = [p for p in pack.parameters() if p.requires_grad]
    output_lr = output_lr if output_lr is not None else config.fallback_output_lr()
    optimizer = torch.optim.AdamW(parameter_groups(pack, config, output_lr), lr=config.input_lr("text"))
    identity = {"seal_id": pack.seal_id, "method": pack.config.method, "task": pack.task.task, "config": config.to_dict(), "train_size": len(train), "adapter": pack.config.to_dict()}  # fmt: skip

    step = 0
    best = {"metric": -math.inf, "step": -1, "metrics": {}, "state": None}
    history: list[dict[str, Any]] = []
    if resume:
        state = load_checkpoint(checkpoint_path, identity)
        pack.load_state_dict(state["pack"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step, best, history = state["step"], state["best"], state["history"]

    saved = {"step": step if resume else None}

    def checkpoint() -> None:
        saved["step"] = step
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
    if not resume:
        last_metrics = evaluate_now()  # step 0: the start is a candidate for the best
    restore_signals = interrupt_on_signals()
    try:
        while step < config.steps:
            examples = [train.examples[i] for i in batch_indices(step, len(train), config.batch, config.seed)]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, config, group["peak_lr"])
            loss = task.loss(pack, examples)
            if not torch.isfinite(loss):
                raise TrainingError(f"the loss became {loss.item()} at step {step + 1}: training diverged; {_kept(saved['step'], checkpoint_path)}; lower the learning rate", topic="lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 5.0)
            optimizer.step()
            if not all(bool(torch.isfinite(p).all()) for p in parameters):
                raise TrainingError(f"the adapter weights became NaN or infinite at step {step + 1}: training diverged; {_kept(saved['step'], checkpoint_path)}; lower the learning rate", topic="lr")
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
    except TrainingError:
        raise  # the weights are not finite: keep the last good checkpoint as it is
    except SealkitError:
        checkpoint()  # e.g. an unreadable file at this step: keep the steps done so far, then report it
        raise
    finally:
        restore_signals()
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
