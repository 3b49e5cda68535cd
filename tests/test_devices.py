"""Execution providers: `--device`/`providers=` are honoured, the active provider is reported, and a
provider this onnxruntime lacks is a one-line error naming what to install."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from sealkit.errors import DeviceError
from sealkit.runtime.providers import CPU, CUDA, active_providers, resolve_providers, session_providers
from sealkit.runtime.seal import open_seal

SEALKIT = str(Path(sys.executable).with_name("sealkit"))
no_cuda = pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this onnxruntime has CUDA")
with_cuda = pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="needs onnxruntime-gpu and a GPU")


def test_cpu_is_honoured_and_reported(tiny_image_seal, key_bytes):
    for providers in ("cpu", [CPU]):
        seal = open_seal(tiny_image_seal, key=key_bytes, providers=providers, threads=1)
        assert seal.providers == [CPU]
        assert active_providers(seal) == [CPU]  # read back from a real session


def test_names_resolve_to_provider_lists():
    assert resolve_providers("cpu") == [CPU]
    assert resolve_providers(None) == resolve_providers("auto")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_providers("tpu")
    with pytest.raises(DeviceError, match="no BogusExecutionProvider"):
        resolve_providers(["BogusExecutionProvider"])


def test_cuda_sessions_run_without_tf32():
    """TF32 put EfficientNet's input gradient 6.8e-2 away from the CPU's on an H100 (docs/gpu.md)."""
    assert session_providers([CUDA, CPU]) == [(CUDA, {"use_tf32": "0"}), CPU]
    assert session_providers([CPU]) == [CPU]


@with_cuda
def test_cuda_gradients_match_the_cpu(tiny_image_seal, key_bytes):
    import numpy as np

    cpu, cuda = (open_seal(tiny_image_seal, key=key_bytes, providers=p).tower("image") for p in ("cpu", "cuda"))
    name = cpu.spec.inputs[0].name
    x = np.random.default_rng(0).normal(size=[4, *[int(d) for d in cpu.spec.inputs[0].shape[1:]]]).astype(np.float32)
    out = cpu.forward({name: x})
    want, got = cpu.vjp({name: x}, np.ones_like(out)), cuda.vjp({name: x}, np.ones_like(out))
    error = np.linalg.norm(got.input_grads[name] - want.input_grads[name]) / np.linalg.norm(want.input_grads[name])
    assert error < 1e-2


@no_cuda
def test_cuda_without_onnxruntime_gpu_is_a_device_error(tiny_image_seal, key_bytes):
    with pytest.raises(DeviceError, match=r"no CUDAExecutionProvider .*onnxruntime-gpu.*sealkit\[gpu\]"):
        open_seal(tiny_image_seal, key=key_bytes, providers="cuda")


@no_cuda
def test_the_cli_device_option_is_one_line(tiny_image_seal, keys, tmp_path):
    result = subprocess.run([SEALKIT, "inspect", str(tiny_image_seal), "--key", str(keys["key"]), "--device", "cuda"], capture_output=True, text=True, timeout=120)
    assert result.returncode == DeviceError.exit_code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: onnxruntime here has no CUDAExecutionProvider"), result.stderr
    assert "pip install 'sealkit[gpu]'" in lines[0]

    result = subprocess.run([SEALKIT, "inspect", str(tiny_image_seal), "--key", str(keys["key"]), "--device", "cpu", "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["checks"]["providers"] == CPU


def test_every_seal_opening_command_takes_device():
    for command in ("adapt", "eval", "predict", "serve", "inspect"):
        assert "--device <auto|cpu|cuda>" in subprocess.run([SEALKIT, command, "--help"], capture_output=True, text=True, timeout=60).stdout, command
