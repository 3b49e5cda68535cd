"""How long and how fast to train: TrainConfig, a plain dataclass stored in the adapter's metadata.

Kept apart from the loop so `import sealkit; sealkit.TrainConfig(...)` needs no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class TrainConfig:
    """Steps, batch, AdamW learning rates (warmup then cosine), seed, and evaluation/checkpoint intervals.

    Two parameter groups: `lr` drives the input side (input adapters, entries), which trains through
    the seal; `output_lr` drives the output side (head, output adapters, temperature). With `probe`
    the output stage is first fitted on cached frozen features (sealkit/train/probe.py), and an
    `output_lr` of None is the rate picked there on the validation split.
    """

    steps: int = 200
    batch: int = 32
    lr: float = 2e-3
    output_lr: float | None = None
    probe: bool = True
    weight_decay: float = 1e-4
    warmup: float = 0.05  # fraction of the steps
    seed: int = 0
    eval_every: int = 0  # 0: five evaluations over the run
    checkpoint_every: int = 0  # 0: at every evaluation
    max_eval: int = 2000  # validation examples used at each interval (seeded subset)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
