"""One training step per method on one backbone and batch, shared by the speed and memory benchmarks.

A step is what `sealkit adapt`'s loop does (sealkit/train/loop.py): a batch of examples -> the task
loss -> backward -> AdamW step. The methods, all on the same synthetic image-classification batch
(linear head) and the same backbone:

  dga-seal            dga adapters through the seal; with residual graphs when the seal has them
  dga-seal-recompute  the same, forced to the plain forward + VJP graphs (the recompute mode)
  lga-seal            lga (dga + entry points) through a light seal
  dga-torch           the same dga adapters around the recipe's own torch module, frozen: the
                      white-box loop that backpropagates through the same backbone
  lora, full          white-box LoRA (HF peft) and full fine-tuning, as benchmarks/quality.py runs them

Imports torch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sealkit.adapters.config import AdapterConfig  # noqa: E402
from sealkit.data.dataset import Dataset, Example  # noqa: E402
from sealkit.runtime.inputs import tower_inputs  # noqa: E402
from sealkit.train.config import TrainConfig  # noqa: E402
from sealkit.train.loop import learning_rate  # noqa: E402
from sealkit.train.objectives import ClassifyObjective, build_task_spec  # noqa: E402
from sealkit.train.pack import AdapterPack  # noqa: E402

METHODS = ("dga-seal", "dga-seal-recompute", "lga-seal", "dga-torch", "lora", "full")
CLASSES = 10


WORDS = ["a", "the", "photo", "of", "small", "large", "red", "green", "blue", "movie", "film", "story", "good", "bad", "great", "fun", "boring", "plot", "hero", "love"]


def synthetic_data(modality: str, count: int, size: int, seed: int = 0, words: int = 62) -> Dataset:
    """Random uint8 images at the backbone's size (no resize cost), or random texts of `words`
    words, with balanced labels."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(count):
        label = f"c{i % CLASSES}"
        if modality == "image":
            examples.append(Example(image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8), label=label))
        else:
            examples.append(Example(text=" ".join(rng.choice(WORDS, words)), label=label))
    return Dataset(examples, name="synthetic", class_names=[f"c{i}" for i in range(CLASSES)])


class _RecomputeTower:
    """A sealed tower that hides its residual graphs, so training runs forward + VJP as a plain seal does."""

    has_residual_graphs = False

    def __init__(self, tower):
        self._tower = tower

    def __getattr__(self, name):
        return getattr(self._tower, name)


class TorchBackboneTask(ClassifyObjective):
    """ClassifyObjective with the backbone run by torch: input adapter -> frozen torch module -> output adapter."""

    modules: dict

    def embed(self, pack, tower_name, items):
        tower = self.seal.tower(tower_name)
        adapters = pack.towers[tower_name]
        batch = tower_inputs(tower, items)
        if tower.spec.modality == "image":
            pixels = torch.from_numpy(batch.values)
            if adapters.input is not None:
                pixels = adapters.input(pixels)
            return pack.output(tower_name, self.modules[tower_name](pixels))
        embeddings, mask = torch.from_numpy(batch.values), torch.from_numpy(batch.mask)
        if adapters.input is not None:
            embeddings, mask = adapters.input(embeddings, mask)
        return pack.output(tower_name, self.modules[tower_name](embeddings, mask))


def make_step(method: str, seal, recipe, batch: int, lr: float = 1e-3, seed: int = 0) -> Callable[[], float]:
    """A closure that runs one training step of `method` on the next batch and returns the loss.

    The data are images when the seal has an image tower, else texts.
    """
    torch.manual_seed(seed)
    image = next((t for t in seal.towers.values() if t.spec.modality == "image"), None)
    size = int(image.spec.inputs[0].shape[-1]) if image is not None else 0
    data = synthetic_data("image" if image is not None else "text", max(4 * batch, 32), size, seed)
    spec = build_task_spec(seal, data, "classify", head="linear")
    base = method.split("-")[0]
    if method in ("lora", "full"):
        from quality import attach_whitebox, make_whitebox_task

        task = make_whitebox_task(ClassifyObjective)(seal, spec)
        pack = AdapterPack(seal, AdapterConfig(method="output"), spec)
        attach_whitebox(pack, recipe, method)
    elif method == "dga-torch":
        task = TorchBackboneTask(seal, spec)
        pack = AdapterPack(seal, AdapterConfig(method="dga"), spec)
        modules = {}
        for tower in recipe.towers:
            module = tower.module.eval()
            module.requires_grad_(False)
            modules[tower.name] = module
        task.modules = modules
    else:
        task = ClassifyObjective(seal, spec)
        pack = AdapterPack(seal, AdapterConfig(method=base), spec)
        if method == "dga-seal-recompute":
            seal.towers = {name: _RecomputeTower(t) for name, t in seal.towers.items()}
    config = TrainConfig(steps=10**6, batch=batch, lr=lr)
    parameters = [p for p in pack.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=config.weight_decay)
    state = {"step": 0}

    def step() -> float:
        i = state["step"]
        examples = [data.examples[(i * batch + k) % len(data)] for k in range(batch)]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(i, config)
        loss = task.loss(pack, examples)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state["step"] = i + 1
        return float(loss.detach())

    return step

