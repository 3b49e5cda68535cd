"""AdapterPack: the torch modules a task trains on top of a seal, and how they wrap the sealed towers.

Per tower: an input adapter (dga, lga), entry-point tensors (lga) and an output adapter; per task:
a linear head (classification without a text tower) and a learnable temperature. Sizes and names
come from the torch-free layout (sealkit/adapters/layout.py), so the state_dict is the adapter file.
`backbone` runs input adapter -> seal (forward graph, VJP on backward); `output` the output adapter.
Imports torch (the adapt path only).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sealkit.adapters.config import AdapterConfig, TaskSpec
from sealkit.adapters.layout import ENTRIES, INPUT, MAX_LOGIT_SCALE, AdapterLayout, TowerLayout, adapter_layout, image_prompt_size, output_hidden
from sealkit.errors import ExposureError
from sealkit.runtime.inputs import TowerInputs
from sealkit.runtime.seal import Seal, Tower
from sealkit.seal.manifest import TowerSpec
from sealkit.train.modules import ImageInputAdapter, OutputAdapter, TextInputAdapter, count_parameters, entry_parameters
from sealkit.train.seal_function import seal_forward


class TowerAdapters(nn.Module):
    """One tower's input adapter (or None), entry tensors and output adapter."""

    def __init__(self, spec: TowerSpec, layout: TowerLayout, config: AdapterConfig, out_dim: int):
        super().__init__()
        self.input: nn.Module | None = None
        if layout.input:
            if spec.modality == "image":
                self.input = ImageInputAdapter(int(spec.inputs[0].shape[1]), config.image_width, config.image_dilations, image_prompt_size(config, spec))
            else:
                self.input = TextInputAdapter(int(spec.inputs[0].shape[-1]), config.text_rank, config.text_prompts, config.prompt_init_std, config.text_context)
        self.entries = entry_parameters(spec.entry_points, config.prompt_init_std) if layout.entries else nn.ParameterDict()
        self.output = OutputAdapter(int(spec.output.shape[-1]), out_dim, output_hidden(config, spec))


class AdapterPack(nn.Module):
    """Everything one task trains; its state_dict has exactly the names and shapes of `self.layout`."""

    def __init__(self, seal: Seal, config: AdapterConfig, task: TaskSpec):
        super().__init__()
        self.config = config
        self.task = task
        self.seal_id = seal.seal_id
        self.seal_name = seal.manifest.name
        specs = {name: seal.manifest.towers[name] for name in task.towers}
        if config.has_entries:
            bare = [name for name, spec in specs.items() if not spec.entry_points]
            if bare:
                raise ExposureError(
                    f"method lga needs entry points, but seal '{seal.manifest.name}' is {seal.manifest.exposure} and tower(s) {bare} expose none; "
                    "use method dga, or ask the owner for a light seal",
                    topic="exposure",
                )
        self.layout: AdapterLayout = adapter_layout(config, task, seal.manifest.towers)
        self.out_dim = self.layout.out_dim
        self.towers = nn.ModuleDict({name: TowerAdapters(spec, self.layout.towers[name], config, self.out_dim) for name, spec in specs.items()})
        self.head = nn.Linear(self.out_dim, len(task.class_names)) if task.head == "linear" else None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.cached_backbone = False  # True while the output stage is fitted on cached frozen features (train/probe.py)

    # --- running ------------------------------------------------------------------------------
    def backbone(self, tower: Tower, inputs: TowerInputs) -> torch.Tensor:
        """Input adapter -> sealed tower (with entry tensors for lga). Differentiable."""
        adapters = self.towers[tower.name]
        entries = dict(adapters.entries) or None
        values = torch.from_numpy(inputs.values)
        if inputs.mask is None:
            adapted = TowerInputs(adapters.input(values) if adapters.input is not None else values)
        elif adapters.input is not None:
            adapted = TowerInputs(*adapters.input(values, torch.from_numpy(inputs.mask)))
        else:
            adapted = TowerInputs(values, inputs.mask)
        return seal_forward(tower, adapted.feeds(tower), entries)

    def output(self, tower_name: str, features: torch.Tensor) -> torch.Tensor:
        return self.towers[tower_name].output(features)

    @property
    def uses_backbone_gradients(self) -> bool:
        """False for the `output` method (and while fitting the output stage): backbone outputs are cached and reused."""
        return self.config.method != "output" and not self.cached_backbone

    @staticmethod
    def side(parameter_name: str) -> str:
        """"input" for input adapters and entries (they train through the seal), "output" for the rest (head, output adapters, temperature)."""
        return "input" if f".{INPUT}." in parameter_name or f".{ENTRIES}." in parameter_name else "output"

    def modality_of(self, parameter_name: str) -> str:
        """"image" or "text": the modality of the tower a parameter belongs to ("towers.<tower>.<part>...."); "text" for the head and temperature."""
        parts = parameter_name.split(".")
        tower = parts[1] if len(parts) > 2 and parts[0] == "towers" else None
        return self.layout.towers[tower].modality if tower in self.layout.towers else "text"

    @property
    def temperature_scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

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
