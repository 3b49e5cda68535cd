"""Which onnxruntime execution providers a seal's sessions run on: `--device cpu|cuda` or a list.

onnxruntime silently falls back to the CPU when a requested provider cannot start, so the provider
a session actually got is read back from the session (`active_providers`), and a provider this
onnxruntime build lacks is refused up front with one line saying what to install. GPU builds come
from the `onnxruntime-gpu` package, which shares the `onnxruntime` import name: install it *in place
of* onnxruntime (`pip uninstall -y onnxruntime && pip install 'sealkit[gpu]'`), never beside it.
Never imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import onnxruntime as ort

from sealkit.errors import DeviceError

if TYPE_CHECKING:
    from sealkit.runtime.seal import Seal

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
DEVICES = {"cpu": [CPU], "cuda": [CUDA, CPU]}
# Options sealkit gives a provider's sessions. TF32 off for CUDA: with onnxruntime's default (TF32 on)
# EfficientNet-Lite0's input gradient on an H100 was 6.8e-2 (relative norm) from the CPU's, with it off
# 1.3e-3, at the same speed (VJP 37.5 vs 39.4 ms, batch 32; docs/gpu.md).
PROVIDER_OPTIONS: dict[str, dict[str, str]] = {CUDA: {"use_tf32": "0"}}
GPU_HINT = "install onnxruntime-gpu in place of onnxruntime (pip uninstall -y onnxruntime && pip install 'sealkit[gpu]') on a machine with CUDA"


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu and a GPU are present (and $SEALKIT_DEVICE is not cpu), else CPU."""
    if CUDA in ort.get_available_providers() and os.environ.get("SEALKIT_DEVICE", "").lower() != "cpu":
        return [CUDA, CPU]
    return [CPU]


def resolve_providers(providers: str | Sequence[str] | None) -> list[str]:
    """None: the default; 'auto', 'cpu' or 'cuda'; or explicit provider names. Unavailable ones are a DeviceError."""
    if providers is None or (isinstance(providers, str) and providers.lower() == "auto"):
        return default_providers()
    if isinstance(providers, str):
        if providers.lower() not in DEVICES:
            raise DeviceError(f"unknown device {providers!r}; use auto, {', '.join(DEVICES)} or a list of onnxruntime provider names")
        wanted = DEVICES[providers.lower()]
    else:
        wanted = list(providers)
    if not wanted:
        raise DeviceError("no execution provider given; use --device cpu or --device cuda")
    available = ort.get_available_providers()
    missing = [p for p in wanted if p not in available]
    if missing:
        hint = GPU_HINT if CUDA in missing else "check the provider name"
        raise DeviceError(f"onnxruntime here has no {', '.join(missing)} (it has {', '.join(available)}); {hint}")
    return wanted


def session_providers(providers: Sequence[str]) -> list[str | tuple[str, dict[str, str]]]:
    """What `InferenceSession(providers=...)` gets: each provider name with sealkit's options for it."""
    return [(name, PROVIDER_OPTIONS[name]) if name in PROVIDER_OPTIONS else name for name in providers]


def active_providers(seal: Seal) -> list[str]:
    """The providers a session of this seal really runs on (loads the first tower's forward graph if none is loaded)."""
    for tower in seal.towers.values():
        for graph in list(tower._graphs.values()):
            return list(graph.session.get_providers())
    first = next(iter(seal.towers.values()))
    return list(first._graph("forward").session.get_providers())
