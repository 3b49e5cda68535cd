"""`sealkit inspect TASK.adapter` shows what an adapter file holds, and the file is plain safetensors
(docs/format.md): safetensors' own reader sees the same tensors and the JSON metadata."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from sealkit.adapters.file import read_adapter_file
from sealkit.data.dataset import Dataset, Example

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SEALKIT = str(Path(sys.executable).with_name("sealkit"))
COLOURS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def adapter(text_seal, tmp_path_factory) -> Path:
    from sealkit.train.api import adapt
    from sealkit.train.loop import TrainConfig

    out = tmp_path_factory.mktemp("inspect") / "words.adapter"
    words = Dataset([Example(text=f"a {c} {o}", label=c) for c in COLOURS for o in ("cat", "dog", "car", "ship")], name="words")
    val, train = words.split(0.25, seed=0)
    adapt(text_seal, train, val, out, method="dga", task="classify", config=TrainConfig(steps=4, batch=8, eval_every=2), progress=False)
    return out


def test_inspect_json_describes_the_adapter(adapter, text_seal):
    result = subprocess.run([SEALKIT, "inspect", str(adapter), "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    file = read_adapter_file(adapter)
    assert info["seal"] == {"id": text_seal.seal_id, "name": text_seal.manifest.name}
    assert (info["task"], info["method"], info["head"]) == ("classify", "dga", "text")
    assert info["classes"] == sorted(COLOURS)
    by_module = info["parameters"]["by_module"]
    assert {"towers.text.input", "towers.text.output"} <= set(by_module)
    assert sum(m["parameters"] for m in by_module.values()) == info["parameters"]["total"] == sum(int(t.size) for t in file.tensors.values())
    assert by_module["towers.text.input"]["parameters"] == sum(int(v.size) for k, v in file.tensors.items() if k.startswith("towers.text.input."))
    training = info["training"]
    assert training["train_examples"] == 9 and training["complete"] is True and training["train_config"]["steps"] == 4
    assert training["evaluations"] == 3 and "accuracy" in training["metrics"]  # step 0 (the fitted start), 2 and 4


def test_inspect_prints_a_readable_summary(adapter, text_seal):
    result = subprocess.run([SEALKIT, "inspect", str(adapter)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for phrase in (f"adapter for seal {text_seal.seal_id}", "task classify with method dga", "classes (3): blue, green, red", "towers.text.input", "best at step", "(verified)"):
        assert phrase in result.stdout, (phrase, result.stdout)


def test_safetensors_reads_the_adapter_file_itself(adapter):
    file = read_adapter_file(adapter)
    with safe_open(str(adapter), framework="np") as handle:
        meta = json.loads(handle.metadata()["sealkit"])
        assert set(handle.keys()) == set(file.tensors)
        for name in handle.keys():  # noqa: SIM118  (safe_open is not iterable)
            assert np.array_equal(handle.get_tensor(name), file.tensors[name])
    assert meta == file.meta and meta["format"] == "sealkit-adapter"


def test_inspecting_a_broken_adapter_is_one_line(tmp_path):
    broken = tmp_path / "broken.adapter"
    broken.write_bytes(b"not a safetensors file")
    result = subprocess.run([SEALKIT, "inspect", str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 11 and result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_inspecting_an_adapter_needs_no_torch(adapter):
    from no_torch import assert_ok, run_without_torch

    result = run_without_torch(
        """
        import sealkit.cli
        sys.argv = ["sealkit", "inspect", sys.argv[1], "--json"]
        try:
            sealkit.cli.main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        """,
        str(adapter),
    )
    assert_ok(result)
    assert '"method": "dga"' in result.stdout
