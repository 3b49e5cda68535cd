"""The adapter's tensors: their names and shapes, derived from the config, the task and the seal.

One function, `adapter_layout`, says which tensors an adapter of a given config has for a given
seal. The torch modules (sealkit/train/modules.py) are built so that their state_dict has exactly
these names and shapes (a test checks it), and the numpy runtime validates every adapter file
against it before use, so a missing or misshapen tensor is an error, never a silent identity.
Never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sealkit.adapters.config import AdapterConfig, TaskSpec, auto_hidden
from sealkit.errors import AdapterError
from sealkit.seal.manifest import TowerSpec

Shape = tuple[int, ...]

# Names inside the adapter file. Per tower: towers.<tower>.<part>.<parameter>.
INPUT, ENTRIES, OUTPUT = "input", "entries", "output"
HEAD_WEIGHT, HEAD_BIAS = "head.weight", "head.bias"
LOGIT_SCALE = "logit_scale"
MAX_LOGIT_SCALE = 100.0  # the learned temperature exp(logit_scale) is clamped here, in training and at inference
CLASS_EMBEDDINGS = "task.class_embeddings"  # precomputed class-prompt embeddings (text heads), not trained


def tower_prefix(tower: str, part: str) -> str:
    return f"towers.{tower}.{part}."


def branch_suffix(dilation: int) -> str:
    """Names of an image branch's convs: conv_in/conv_out for dilation 1 (the original adapter), conv_in_d2/conv_out_d2 for 2, ..."""
    return "" if dilation == 1 else f"_d{dilation}"


def image_input_shapes(channels: int, width: int, dilations: tuple[int, ...] = (1,), prompt_size: tuple[int, int] | None = None) -> dict[str, Shape]:
    """The residual 3x3 conv net on pixels, one branch conv_out(gelu(conv_in(x))) per dilation, summed
    (none when `width` is 0), and a `prompt` pattern [channels, H, W] added to every image when `prompt_size` is given."""
    shapes: dict[str, Shape] = {}
    if prompt_size is not None:
        shapes["prompt"] = (channels, *prompt_size)
    for dilation in dilations if width > 0 else ():
        suffix = branch_suffix(dilation)
        shapes.update(
            {
                f"conv_in{suffix}.weight": (width, channels, 3, 3),
                f"conv_in{suffix}.bias": (width,),
                f"conv_out{suffix}.weight": (channels, width, 3, 3),
                f"conv_out{suffix}.bias": (channels,),
            }
        )
    return shapes


def text_input_shapes(dim: int, rank: int, prompts: int, context: int = 0) -> dict[str, Shape]:
    """The per-token residual MLP on token embeddings, an optional depthwise conv across tokens, and optional prompt tokens."""
    shapes: dict[str, Shape] = {"down.weight": (rank, dim), "down.bias": (rank,), "up.weight": (dim, rank), "up.bias": (dim,)}
    if context > 0:
        shapes["context.weight"] = (dim, 1, context)
    if prompts > 0:
        shapes["prompts"] = (prompts, dim)
    return shapes


def output_shapes(dim_in: int, dim_out: int, hidden: int) -> dict[str, Shape]:
    """[proj] (only when widths differ) plus a residual MLP of width `hidden` (none when 0)."""
    shapes: dict[str, Shape] = {}
    if dim_in != dim_out:
        shapes.update({"proj.weight": (dim_out, dim_in), "proj.bias": (dim_out,)})
    if hidden > 0:
        shapes.update({"down.weight": (hidden, dim_in), "down.bias": (hidden,), "up.weight": (dim_out, hidden), "up.bias": (dim_out,)})
    return shapes


def output_dim(config: AdapterConfig, towers: Mapping[str, TowerSpec]) -> int:
    """The embedding width after the output adapters: the towers' common width, else the shared space."""
    dims = {int(spec.output.shape[-1]) for spec in towers.values()}
    return dims.pop() if len(dims) == 1 else int(config.shared_dim)


def output_hidden(config: AdapterConfig, spec: TowerSpec) -> int:
    return config.output_hidden if config.output_hidden >= 0 else auto_hidden(spec.parameters, int(spec.output.shape[-1]))


@dataclass(frozen=True)
class TowerLayout:
    """One tower's adapter tensors, by part, with names relative to the part's prefix."""

    name: str
    modality: str
    input: dict[str, Shape]
    entries: dict[str, Shape]
    output: dict[str, Shape]

    def parts(self) -> dict[str, dict[str, Shape]]:
        return {INPUT: self.input, ENTRIES: self.entries, OUTPUT: self.output}


@dataclass(frozen=True)
class AdapterLayout:
    """Every tensor an adapter holds: per-tower parts, then the task's head and temperature."""

    towers: dict[str, TowerLayout]
    out_dim: int
    head: dict[str, Shape]
    class_embeddings: Shape | None  # saved with text-head classifiers; None otherwise

    def shapes(self, with_class_embeddings: bool = True) -> dict[str, Shape]:
        """Full tensor name -> shape, as in the adapter file (and the torch pack's state_dict)."""
        shapes: dict[str, Shape] = {}
        for tower in self.towers.values():
            for part, tensors in tower.parts().items():
                shapes.update({tower_prefix(tower.name, part) + k: v for k, v in tensors.items()})
        shapes.update(self.head)
        shapes[LOGIT_SCALE] = (1,)  # a scalar, stored as a 1-element vector (safetensors keeps no 0-d arrays from numpy)
        if with_class_embeddings and self.class_embeddings is not None:
            shapes[CLASS_EMBEDDINGS] = self.class_embeddings
        return shapes


def image_prompt_size(config: AdapterConfig, spec: TowerSpec) -> tuple[int, int] | None:
    """(H, W) of an image tower's prompt pattern: the seal's fixed input size (None without the prompt)."""
    if not config.image_prompt:
        return None
    size = spec.inputs[0].shape[2:]
    if len(size) != 2 or not all(isinstance(d, int) for d in size):
        raise AdapterError(f"the image prompt needs a seal with a fixed image size; this image tower takes {list(spec.inputs[0].shape)}: use --no-image-prompt (image_prompt false)")
    return int(size[0]), int(size[1])


def adapter_layout(config: AdapterConfig, task: TaskSpec, towers: Mapping[str, TowerSpec]) -> AdapterLayout:
    """The tensors of a `config` adapter for `task` on a seal whose towers are `towers` (name -> spec)."""
    missing = [t for t in task.towers if t not in towers]
    if missing:
        raise AdapterError(f"the task uses tower(s) {missing} that the seal does not have (it has {sorted(towers)})")
    used = {name: towers[name] for name in task.towers}
    out_dim = output_dim(config, used)
    layouts = {}
    for name, spec in used.items():
        inputs: dict[str, Shape] = {}
        if config.has_input_adapters:
            if spec.modality == "image":
                inputs = image_input_shapes(int(spec.inputs[0].shape[1]), config.image_width, config.image_dilations, image_prompt_size(config, spec))
            else:
                inputs = text_input_shapes(int(spec.inputs[0].shape[-1]), config.text_rank, config.text_prompts, config.text_context)
        entries = {ep.name: tuple(ep.shape) for ep in spec.entry_points} if config.has_entries else {}
        outputs = output_shapes(int(spec.output.shape[-1]), out_dim, output_hidden(config, spec))
        layouts[name] = TowerLayout(name, spec.modality, inputs, entries, outputs)
    classes = len(task.class_names)
    head = {HEAD_WEIGHT: (classes, out_dim), HEAD_BIAS: (classes,)} if task.head == "linear" else {}
    class_embeddings = (classes, out_dim) if task.task == "classify" and task.head == "text" else None
    return AdapterLayout(layouts, out_dim, head, class_embeddings)


def check_tensors(layout: AdapterLayout, tensors: Mapping[str, np.ndarray], where: str) -> None:
    """Refuse tensors that do not match the layout: a missing, extra or misshapen tensor, or a NaN."""
    expected = layout.shapes()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        detail = "; ".join(p for p in (f"missing {missing[:4]}" if missing else "", f"unexpected {extra[:4]}" if extra else "") if p)
        raise AdapterError(f"{where} does not match its own configuration ({detail}); retrain it or copy it again")
    for name, shape in expected.items():
        value = np.atleast_1d(tensors[name])
        if tuple(value.shape) != tuple(shape):
            raise AdapterError(f"{where}: tensor {name} has shape {list(value.shape)}, expected {list(shape)}; retrain it or copy it again")
        if value.dtype.kind != "f":
            raise AdapterError(f"{where}: tensor {name} is {value.dtype}, expected floating point; retrain it or copy it again")
        if not np.all(np.isfinite(value)):
            raise AdapterError(f"{where}: tensor {name} holds NaN or infinite values; retrain it (with a lower learning rate)")


def split_tower_tensors(tensors: Mapping[str, np.ndarray], tower: str, part: str) -> dict[str, np.ndarray]:
    """The tensors of one part of one tower, with the prefix removed (e.g. 'conv_in.weight')."""
    prefix = tower_prefix(tower, part)
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
