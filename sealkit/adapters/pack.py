"""AdapterPack: everything a task trains on top of a seal, and how it wraps the sealed towers.

Per tower: an input adapter (dga, lga), entry-point tensors (lga) and an output adapter; per task:
a linear head (classification without a text tower) and a learnable temperature. `backbone`
runs input adapter -> seal (forward graph, VJP on backward) and `embed` adds the output adapter.
Imports torch (the adapt path only).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from sealkit.adapters.modules import (
    METHODS,
    AdapterConfig,
    ImageInputAdapter,
    OutputAdapter,
    TextInputAdapter,
    auto_hidden,
    count_parameters,
    entry_parameters,
)
from sealkit.errors import AdapterError, ExposureError
from sealkit.runtime.inputs import TextBatch, tower_feeds
from sealkit.runtime.seal import Seal, Tower
from sealkit.train.seal_function import seal_forward

TASKS = ("classify", "retrieve")


@dataclass
class TaskSpec:
    """What the task is, in terms of the seal's towers.

    classify: `query_tower` encodes the inputs; head "text" scores them against class-name prompts
    encoded by `key_tower`, head "linear" uses a linear layer. retrieve: `query_field` items
    (through `query_tower`) are matched with `key_field` items (through `key_tower`).
    """

    task: str
    query_tower: str
    query_field: str
    key_tower: str | None = None
    key_field: str | None = None
    head: str = "none"
    class_names: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TaskSpec":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @property
    def towers(self) -> list[str]:
        return list(dict.fromkeys([t for t in (self.query_tower, self.key_tower) if t]))


class TowerAdapters(nn.Module):
    def __init__(self, tower_spec, config: AdapterConfig, out_dim: int):
        super().__init__()
        dim = int(tower_spec.output.shape[-1])
        self.input: nn.Module | None = None
        if config.method in ("dga", "lga"):
            if tower_spec.modality == "image":
                channels = int(tower_spec.inputs[0].shape[1])
                self.input = ImageInputAdapter(channels, config.image_width)
            else:
                width = int(tower_spec.inputs[0].shape[-1])
                self.input = TextInputAdapter(width, config.text_rank, config.text_prompts, config.prompt_init_std)
        self.entries = entry_parameters(tower_spec.entry_points, config.prompt_init_std) if config.method == "lga" else nn.ParameterDict()
        hidden = config.output_hidden if config.output_hidden >= 0 else auto_hidden(tower_spec.parameters, dim)
        self.output = OutputAdapter(dim, out_dim, hidden)


class AdapterPack(nn.Module):
    def __init__(self, seal: Seal, config: AdapterConfig, task: TaskSpec):
        super().__init__()
        if config.method not in METHODS:
            raise AdapterError(f"unknown method {config.method!r}; use one of {', '.join(METHODS)}")
        self.config = config
        self.task = task
        self.seal_id = seal.seal_id
        self.seal_name = seal.manifest.name
        specs = {name: seal.manifest.towers[name] for name in task.towers}
        if config.method == "lga":
            bare = [name for name, spec in specs.items() if not spec.entry_points]
            if bare:
                raise ExposureError(
                    f"method lga needs entry points, but seal '{seal.manifest.name}' is {seal.manifest.exposure} and tower(s) {bare} expose none; "
                    "use --method dga, or ask the owner for a seal exported with --exposure light"
                )
        dims = {int(spec.output.shape[-1]) for spec in specs.values()}
        self.out_dim = dims.pop() if len(dims) == 1 else int(config.shared_dim)
        self.towers = nn.ModuleDict({name: TowerAdapters(spec, config, self.out_dim) for name, spec in specs.items()})
        self.head = nn.Linear(self.out_dim, len(task.class_names)) if task.head == "linear" else None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    # --- running ------------------------------------------------------------------------------
    def backbone(self, tower: Tower, inputs: np.ndarray | TextBatch) -> torch.Tensor:
        """Input adapter -> sealed tower (with entry tensors for lga). Differentiable."""
        adapters = self.towers[tower.name]
        entries = dict(adapters.entries) or None
        if isinstance(inputs, TextBatch):
            embeddings = torch.from_numpy(inputs.token_embeddings)
            mask = torch.from_numpy(inputs.attention_mask)
            if adapters.input is not None:
                embeddings, mask = adapters.input(embeddings, mask)
            return seal_forward(tower, tower_feeds(tower, embeddings, mask), entries)
        pixels = torch.from_numpy(inputs)
        if adapters.input is not None:
            pixels = adapters.input(pixels)
        return seal_forward(tower, tower_feeds(tower, pixels), entries)

    def output(self, tower_name: str, features: torch.Tensor) -> torch.Tensor:
        return self.towers[tower_name].output(features)

    @property
    def uses_backbone_gradients(self) -> bool:
        """False for the `output` method: the backbone's outputs can be cached and reused."""
        return self.config.method != "output"

    @property
    def temperature_scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=100.0)

    # --- reporting ----------------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, adapters in self.towers.items():
            if adapters.input is not None:
                counts[f"{name}.input"] = count_parameters(adapters.input)
            if len(adapters.entries):
                counts[f"{name}.entries"] = sum(p.numel() for p in adapters.entries.values())
            counts[f"{name}.output"] = count_parameters(adapters.output)
        if self.head is not None:
            counts["head"] = count_parameters(self.head)
        counts["temperature"] = 1
        return counts
