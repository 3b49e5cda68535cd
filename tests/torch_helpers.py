"""Test helpers that need torch (kept out of synthetic.py, which torch-free tests import)."""

from __future__ import annotations

import numpy as np
import torch


def randomised(module: torch.nn.Module, seed: int) -> dict[str, np.ndarray]:
    """Give every parameter of `module` seeded random values (0.3 std) and return its state as numpy arrays.

    Adapters start as the identity; random values make a numpy-vs-torch comparison exercise every term.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    return {name: value.detach().numpy() for name, value in module.state_dict().items()}
