"""Fit the output stage on cached frozen features before any step through the seal.

A bare learning rate trains a linear head badly: on a new 10-class image folder `output` at the old
default reached 0.74 where a logistic-regression probe on the same features reaches 0.90. So every
run (with `TrainConfig.probe`) first fits the output stage where it is cheap, on backbone outputs
computed once:

1. A linear head is fitted exactly: multinomial logistic regression by full-batch L-BFGS, with its
   L2 strength (scikit-learn's C) chosen on the validation split's cross-entropy from `C_GRID`.
2. The whole output side (head, output adapters, temperature) then gets a learning rate picked on
   the validation split: a short AdamW run (PICK_STEPS, or the run's steps if fewer) from the fitted
   start per rate in `LR_GRID`, the larger rate on ties. The rate is the run's `output_lr` unless the
   caller fixed one. Text heads and retrieval have no exact fit: for them the picked short run
   itself becomes the fitted start when it beats the untrained start on validation.

The pack is left at the fitted start (step 0 of the run, itself a candidate for the best).
Imports torch (the adapt path only).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sealkit.data.dataset import Dataset
from sealkit.train.config import TrainConfig
from sealkit.train.loop import batch_indices
from sealkit.train.objectives import ClassifyObjective, Objective
from sealkit.train.pack import AdapterPack

C_GRID = tuple(10.0**k for k in range(-3, 5))  # scikit-learn's C: 1/C is the L2 strength on the summed loss
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
PICK_STEPS = 60
LBFGS_ITERATIONS = 300
MAX_FIT_EXAMPLES = 20000  # a seeded, class-balanced subset of larger training sets (memory of the full-batch fit)


@dataclass
class ProbeResult:
    """What the fit chose and how well the fitted start scores on validation (cached features)."""

    output_lr: float
    metric: float
    c: float | None = None
    scores: dict[str, float] = field(default_factory=dict)  # "C=..." and "lr=..." -> validation metric
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def cached_backbone(pack: AdapterPack) -> Iterator[AdapterPack]:
    """Within the block the pack reads frozen backbone outputs from the objective's cache (as `output` does)."""
    before = pack.cached_backbone
    pack.cached_backbone = True
    try:
        yield pack
    finally:
        pack.cached_backbone = before


def _minimise_logistic(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, labels: torch.Tensor, strength: float) -> None:
    """Full-batch L-BFGS on mean cross-entropy + strength / 2 * ||weight||^2, from the tensors' current values."""
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=LBFGS_ITERATIONS, history_size=20, tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, labels) + 0.5 * strength * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)


def fit_linear_head(pack: AdapterPack, features: torch.Tensor, labels: torch.Tensor, val_features: torch.Tensor, val_labels: torch.Tensor, c_grid=C_GRID) -> tuple[float, dict[str, float]]:
    """Logistic regression on `features` (after the output adapter at its start) into `pack.head`.

    Minimises mean cross-entropy + ||W||^2 / (2 C n), scikit-learn's objective divided by C n, for each
    C from strong to weak regularisation (warm-started), and keeps the C with the lowest validation
    cross-entropy: validation accuracy is too coarse to choose by (on Fashion-MNIST, 500 validation
    images, it was flat within 0.6 points over the grid and picked an over-fitted C that lost 1.7
    test points to scikit-learn). Returns that C and every C's validation accuracy.
    """
    assert pack.head is not None
    x, xv = features.double(), val_features.double()
    weight = torch.zeros(pack.head.out_features, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(pack.head.out_features, dtype=torch.float64, requires_grad=True)
    best: tuple[float, float, torch.Tensor, torch.Tensor] | None = None
    scores: dict[str, float] = {}
    for c in sorted(c_grid):
        _minimise_logistic(weight, bias, x, labels, strength=1.0 / (c * len(x)))
        with torch.no_grad():
            logits = xv @ weight.T + bias
            accuracy = float((logits.argmax(dim=-1) == val_labels).double().mean())
            log_loss = float(F.cross_entropy(logits, val_labels))
        scores[f"C={c:g}"] = accuracy
        if best is None or log_loss < best[0]:
            best = (log_loss, c, weight.detach().clone(), bias.detach().clone())
    assert best is not None
    with torch.no_grad():
        pack.head.weight.copy_(best[2].float())
        pack.head.bias.copy_(best[3].float())
    return best[1], scores


def _warm_cache(objective: Objective, dataset: Dataset) -> None:
    """Backbone outputs of every item the output stage will see, computed once."""
    spec = objective.spec
    sides = [(spec.query_tower, spec.query_field)]
    if spec.task == "retrieve":
        sides.append((spec.key_tower, spec.key_field))
    for tower, name in sides:
        objective.frozen_features(tower, [getattr(e, name) for e in dataset.examples])


def _short_run(objective: Objective, pack: AdapterPack, train: Dataset, config: TrainConfig, lr: float) -> None:
    params = [p for name, p in pack.named_parameters() if p.requires_grad and pack.side(name) == "output"]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    pack.train()
    for step in range(max(1, min(PICK_STEPS, config.steps))):
        examples = [train.examples[i] for i in batch_indices(step, len(train), config.batch, config.seed)]
        loss = objective.loss(pack, examples)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
    pack.eval()


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch single-threaded inside the block. The fit is many tiny tensor operations on cached
    features; more threads only add overhead (the tests use it for the same reason).

    Measured on the 2-core machine under load: a 30-step mnist dga run spent 50 s in this fit with
    one torch thread and 240 s with two (docs/results.md, "Reproduce").
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_output_stage(objective: Objective, pack: AdapterPack, train: Dataset, val: Dataset, config: TrainConfig, fit_head: bool = True) -> ProbeResult:
    """Fit `pack`'s output stage on cached frozen features (module docstring); the pack ends at the fitted start."""
    started = time.perf_counter()
    scores: dict[str, float] = {}
    c = None
    if len(train) > MAX_FIT_EXAMPLES:
        train = train.subset(MAX_FIT_EXAMPLES, seed=config.seed)
    with cached_backbone(pack):
        _warm_cache(objective, train)
        _warm_cache(objective, val)
    with cached_backbone(pack), one_torch_thread():
        if fit_head and isinstance(objective, ClassifyObjective) and pack.head is not None:
            spec = objective.spec
            with torch.no_grad():
                x = pack.output(spec.query_tower, objective.embed(None, spec.query_tower, [getattr(e, spec.query_field) for e in train.examples]))
                xv = pack.output(spec.query_tower, objective.embed(None, spec.query_tower, [getattr(e, spec.query_field) for e in val.examples]))
            c, c_scores = fit_linear_head(pack, x, torch.from_numpy(objective.labels(train.examples)), xv, torch.from_numpy(objective.labels(val.examples)))
            scores.update(c_scores)
        pack.eval()
        start = {k: v.detach().clone() for k, v in pack.state_dict().items()}
        metric = objective.evaluate(pack, val)[objective.main_metric]
        picked, picked_score, picked_state = LR_GRID[0], -np.inf, start
        for lr in LR_GRID:
            _short_run(objective, pack, train, config, lr)
            score = objective.evaluate(pack, val)[objective.main_metric]
            scores[f"lr={lr:g}"] = score
            if score >= picked_score:  # on ties the larger rate: the run itself may be shorter than PICK_STEPS
                picked, picked_score = lr, score
                picked_state = {k: v.detach().clone() for k, v in pack.state_dict().items()}
            pack.load_state_dict(start)
        if c is None and picked_score > metric:
            # no exact fit (a text head, retrieval): the picked short run is the fitted start when it
            # scores better on validation than the untrained one (rt-sentiment: 0.65, zero-shot)
            pack.load_state_dict(picked_state)
            metric = picked_score
    pack.train()
    return ProbeResult(output_lr=picked, metric=metric, c=c, scores=scores, seconds=time.perf_counter() - started)
