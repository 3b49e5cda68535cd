"""Small seeded synthetic tasks for the adaptation tests, built so the frozen backbone is misaligned.

The tiny test backbones are random networks, so "zero-shot" is whatever their random towers happen
to agree on. To make sure a task really needs adaptation, every builder here permutes the mapping
between what an input looks like and what it is called: an image of class k is painted with the
colour of class perm(k), and a query text is paired with the target of perm(k). Class names come
from the tiny tokenizer's vocabulary (tests/recipes/tiny_text.py), so none of them is an unknown token.

Everything is numpy and deterministic in its seed; images are HxWx3 uint8 arrays (or PNG files
for the CLI tests).

Speed: the adapters and batches here are tiny, and on a busy 2-core machine torch's default
thread pool spends most of its time waiting for cores (a 120-step run took 80 s with two threads and
3 s with one). The tests therefore train with one torch thread (`one_torch_thread`) and open seals
with `threads=1` for onnxruntime.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sealkit.data.dataset import Dataset, Example


def one_torch_thread():
    """Torch single-threaded inside the block (sealkit.train.probe.one_torch_thread; imported late: torch)."""
    from sealkit.train.probe import one_torch_thread as single_thread

    return single_thread()


# Names in the tiny vocabulary, and the RGB colour each name would naturally suggest.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 50, 220),
    "yellow": (230, 220, 30),
    "black": (15, 15, 15),
    "white": (240, 240, 240),
}
NAMES = list(COLOURS)
# A derangement of the six classes: no class keeps its own colour.
PERMUTATION = (2, 4, 5, 0, 1, 3)
# Objects in the tiny vocabulary, for text pairs.
OBJECTS = ["cat", "dog", "bird", "car", "ship", "horse", "frog", "shoe", "bag", "coat", "boot", "plane"]


def colour_image(rgb: tuple[int, int, int], rng: np.random.Generator, size: int = 32, noise: float = 18.0) -> np.ndarray:
    """A size x size RGB image of one colour, with per-pixel noise and a random brighter square (texture)."""
    image = np.asarray(rgb, dtype=np.float32)[None, None, :] + rng.normal(0.0, noise, size=(size, size, 3))
    y, x = rng.integers(0, size - 8, size=2)
    image[y : y + 8, x : x + 8] += 25.0
    return np.clip(image, 0, 255).astype(np.uint8)


def permuted_colour_dataset(per_class: int, seed: int, name: str = "colours", captions: str | None = None) -> Dataset:
    """Images of class k painted with colour perm(k), labelled NAMES[k] (six classes, interleaved).

    `captions` (a template such as "a photo of a {}") also gives each example a text made from its
    label, for image-text retrieval.
    """
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(per_class):
        for k, label in enumerate(NAMES):
            image = colour_image(COLOURS[NAMES[PERMUTATION[k]]], rng)
            examples.append(Example(image=image, label=label, text=captions.format(label) if captions else None))
    return Dataset(examples, name=name, class_names=list(NAMES))


def permuted_text_pairs(count: int = 12, seed: int = 0, name: str = "pairs") -> Dataset:
    """Text-text retrieval: query "a photo of a <object i>" must find target "the <object perm(i)>".

    A random text tower maps a query nearest to the target that shares its word, so the identity
    matching a frozen backbone prefers is wrong for every pair.
    """
    objects = OBJECTS[:count]
    perm = np.random.default_rng(seed).permutation(count)
    while np.any(perm == np.arange(count)):  # a derangement: no query keeps its own object
        perm = np.random.default_rng([seed, int(perm[0]), int(perm[-1])]).permutation(count)
    examples = [Example(text=f"a photo of a {objects[i]}", text_b=f"the {objects[int(perm[i])]}") for i in range(count)]
    return Dataset(examples, name=name)


def permuted_colour_texts(per_class: int, seed: int, name: str = "colour-texts") -> Dataset:
    """Texts about an object of colour perm(k), labelled NAMES[k] (text classification with a text head)."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(per_class):
        for k, label in enumerate(NAMES):
            thing = OBJECTS[int(rng.integers(len(OBJECTS)))]
            examples.append(Example(text=f"a {NAMES[PERMUTATION[k]]} {thing}", label=label))
    return Dataset(examples, name=name, class_names=list(NAMES))


def write_png_table(dataset: Dataset, folder: Path, filename: str = "data.csv") -> Path:
    """Write the dataset's images as PNG files under `folder` and a CSV (image,label) naming them."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    table = folder / filename
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label"])
        for i, example in enumerate(dataset.examples):
            path = folder / f"{Path(filename).stem}-{i:04d}.png"
            Image.fromarray(example.image).save(path)
            writer.writerow([path.name, example.label])
    return table


# --- a backbone whose deficiency is inside it -------------------------------------------------

GATE_WIDTH = 64
GATE_OUT = 32


def sphere_points(n: int) -> np.ndarray:
    """n unit vectors spread evenly over the 3-d sphere (a Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / n)
    azimuth = np.pi * (1.0 + 5.0**0.5) * i
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)


def gated_recipe(threshold: float = 3.5, sharpness: float = 4.0, seed: int = 0):
    """A one-tower image "backbone" whose useful information is shut behind a gate (imports torch).

        pixels [B,3,8,8] -> mean colour [B,3] -> proj (64 units) -> norm (LayerNorm, no affine)
          -> gate: softplus(sharpness * (z - threshold)) / sharpness -> head (Linear 64 -> 32)

    The rows of `proj` are spread evenly over the sphere and it has no bias, so after the LayerNorm
    every unit z_j is at most ~1.73 whatever the input: no input adapter can lift a unit near the
    threshold (3.5), and each unit passes at most ~2e-4 of its value. An additive delta at the gate's
    pre-activation (the `add` entry point on `norm`) can open the gate. The gate is a sharp softplus
    rather than a ReLU so that gradients (tiny, but Adam rescales them) reach that delta at the start.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    from sealkit.compile.recipe import EntryPoint, InputSpec, Recipe, TowerRecipe

    class Gate(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return F.softplus(sharpness * (z - threshold)) / sharpness

    class GatedTower(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(3, GATE_WIDTH, bias=False)
            self.norm = nn.LayerNorm(GATE_WIDTH, elementwise_affine=False)
            self.gate = Gate()
            self.head = nn.Linear(GATE_WIDTH, GATE_OUT)
            with torch.no_grad():
                self.proj.weight.copy_(torch.tensor(sphere_points(GATE_WIDTH), dtype=torch.float32))
                self.head.bias.zero_()

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.head(self.gate(self.norm(self.proj(pixels.mean(dim=(2, 3))))))

    torch.manual_seed(seed)
    module = GatedTower().eval()
    tower = TowerRecipe(
        name="image",
        modality="image",
        module=module,
        inputs=[InputSpec("pixels", torch.randn(2, 3, 8, 8), dims={0: "batch"})],
        entry_points=[EntryPoint("norm", kind="add", shape=(GATE_WIDTH,))],
        preprocessing={"kind": "image", "size": [8, 8], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    )
    return Recipe(name="gated", towers=[tower])
