"""How long and how fast to train: TrainConfig, a plain dataclass stored in the adapter's metadata.

Kept apart from the loop so `import sealkit; sealkit.TrainConfig(...)` needs no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TEXT_LR = 4e-3  # the input side's default peak rate on text towers (docs/results.md)
IMAGE_LR = 1e-2  # ... and on image towers
OUTPUT_LR = 2e-3  # the output side's rate when neither a probe fit nor `output_lr` / `lr` sets it


@dataclass
class TrainConfig:
    """Steps, batch, AdamW learning rates (warmup then cosine), seed, and evaluation/checkpoint intervals.

    The input side (input adapters, entries), which trains through the seal, peaks at `lr` on text
    towers and at `image_lr` on image towers; left None they are 4e-3 and 1e-2, and an `lr` given
    alone applies to image towers too. `output_lr` drives the output side (head, output adapters,
    temperature). With `probe` the output stage is first fitted on cached frozen features
    (sealkit/train/probe.py), and an `output_lr` of None is the rate picked there on the validation
    split; without a probe it is `lr`, else 2e-3.

    Why two input rates: on the benchmark (docs/results.md) image towers train best at 1e-2 (lga on
    mnist: +1.8 points over 2e-3 with entries in every block), while text towers diverge there (lga on
    rt-sentiment fell from 0.72 to 0.40 validation accuracy at 1e-2); at 4e-3 both dga and lga on
    rt-sentiment beat 2e-3 on validation (3 seeds each: +1.1 and +0.6 points).
    """

    steps: int = 200
    batch: int = 32
    lr: float | None = None
    image_lr: float | None = None
    output_lr: float | None = None
    probe: bool = True
    weight_decay: float = 1e-4
    warmup: float = 0.05  # fraction of the steps
    seed: int = 0
    eval_every: int = 0  # 0: five evaluations over the run
    checkpoint_every: int = 0  # 0: at every evaluation
    max_eval: int = 2000  # validation examples used at each interval (seeded subset)

    def input_lr(self, modality: str) -> float:
        """The input side's peak rate on a tower of `modality` ("image" or "text")."""
        if modality == "image":
            return self.image_lr if self.image_lr is not None else self.lr if self.lr is not None else IMAGE_LR
        return self.lr if self.lr is not None else TEXT_LR

    def fallback_output_lr(self) -> float:
        """The output side's rate when no probe fit chose one: `output_lr`, else `lr`, else OUTPUT_LR."""
        return self.output_lr if self.output_lr is not None else self.lr if self.lr is not None else OUTPUT_LR

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
