"""Issue 12, items 3 and 5: adapter files are checked before use, in one place.

The metadata is checked when a file is read (AdapterFile.check_meta: a seal id, and a config and task
that parse); the tensors are checked against the adapter's layout for the seal it is used with
(sealkit/adapters/layout.py), by every command and the server, since every one goes through
TaskRuntime or load_adapter. A one-byte change in the metadata is caught by the checksum (which
now covers the metadata), and a file whose checksum was recomputed by a hostile tool is still
refused when its metadata or tensors do not make an adapter. Files written before the metadata
checksum (tensor digest only) still load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as save_numpy

from sealkit.adapters.file import CONTENT_DIGEST_KEY, DIGEST_KEY, read_adapter_file, write_adapter_file
from sealkit.errors import AdapterError
from sealkit.runtime.task import TaskRuntime

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def good(text_adapter) -> Path:
    return text_adapter


def _variant(good: Path, folder: Path, name: str, meta_change=None, tensor_change=None) -> Path:
    file = read_adapter_file(good)
    meta, tensors = dict(file.meta), dict(file.tensors)
    if meta_change:
        meta_change(meta)
    if tensor_change:
        tensor_change(tensors)
    return write_adapter_file(folder / f"{name}.adapter", meta, tensors)  # a valid checksum over the bad content


def _key(tensors: dict, suffix: str) -> str:
    return next(k for k in tensors if k.endswith(suffix))


def _pop(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _task(**changes):
    return lambda d: d.__setitem__("task", {**d["task"], **changes})


def _tensor(suffix, fn):
    return lambda t: t.__setitem__(_key(t, suffix), fn(t[_key(t, suffix)]))


BAD_META = {
    "no task": (_pop("task"), "has no valid 'task'"),
    "no config": (_pop("config"), "has no valid 'config'"),
    "no seal_id": (_pop("seal_id"), "has no valid 'seal_id'"),
    "numeric seal_id": (_set("seal_id", 7), "has no valid 'seal_id'"),
    "method contradicts config": (_set("method", "lora"), "its metadata says method 'lora' but its config 'dga'"),
    "unknown method": (lambda m: m.__setitem__("config", {**m["config"], "method": "lora"}), "unknown method 'lora'"),
    "task a string": (_set("task", "classify"), "has no valid 'task'"),
    "unknown task kind": (_task(task="segment"), "unknown task 'segment'"),
    "no query tower": (_task(query_tower=None), "names no query tower"),
    "class names not strings": (_task(class_names=[1, 2, 3, 4, 5, 6]), "class_names must be a list of strings"),
}

# Refused where the adapter meets its seal (predict, eval, serve: TaskRuntime).
BAD_TENSORS = {
    "missing input tensor": (lambda t: t.pop(_key(t, "input.down.weight")), "missing ['towers.text.input.down.weight']"),
    "NaN weights": (_tensor("output.up.weight", lambda v: np.full_like(v, np.nan)), "NaN or infinite"),
    "infinite scale": (_tensor("logit_scale", lambda v: np.full_like(v, np.inf)), "NaN or infinite"),
    "integer tensor": (_tensor("input.up.bias", lambda v: v.astype(np.int32)), "is int32, expected floating point"),
    "reshaped up": (_tensor("input.up.weight", lambda v: np.zeros((v.shape[0] + 1, v.shape[1]), np.float32)), "input.up.weight has shape"),
    "extra class row": (_tensor("task.class_embeddings", lambda v: np.concatenate([v, v[:1]])), "task.class_embeddings has shape [7,"),
    "unknown tensor": (lambda t: t.__setitem__("backdoor", np.zeros(3, np.float32)), "unexpected ['backdoor']"),
    "other tower": (lambda t: t.__setitem__("towers.image.output.proj.weight", np.zeros((2, 2), np.float32)), "unexpected ['towers.image.output.proj.weight']"),
}


@pytest.mark.parametrize("case", list(BAD_META), ids=list(BAD_META))
def test_bad_metadata_is_refused_on_read(case, good, tmp_path):
    change, message = BAD_META[case]
    path = _variant(good, tmp_path, "bad", meta_change=change)
    with pytest.raises(AdapterError, match="^bad.adapter") as caught:
        read_adapter_file(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("case", list(BAD_TENSORS), ids=list(BAD_TENSORS))
def test_bad_tensors_are_refused_before_use(case, good, text_seal, tmp_path):
    change, message = BAD_TENSORS[case]
    path = _variant(good, tmp_path, "bad", tensor_change=change)
    with pytest.raises(AdapterError, match="^bad.adapter") as caught:
        TaskRuntime(text_seal, path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_fewer_class_names_than_class_embeddings_is_refused_before_use(good, text_seal, tmp_path):
    path = _variant(good, tmp_path, "fewer", meta_change=_task(class_names=["red", "green"]))
    with pytest.raises(AdapterError, match=r"fewer.adapter: tensor task.class_embeddings has shape \[6, \d+\], expected \[2, \d+\]"):
        TaskRuntime(text_seal, path)


def test_shapes_that_do_not_fit_the_seal_are_refused_by_the_runtime(good, text_seal, tmp_path):
    def wider(t):  # the text input adapter made one wider, consistently: the seal's tokens are narrower
        prefix = "towers.text.input."
        rank, width = t[prefix + "down.weight"].shape
        t[prefix + "down.weight"] = np.zeros((rank, width + 1), np.float32)
        t[prefix + "up.weight"] = np.zeros((width + 1, rank), np.float32)
        t[prefix + "up.bias"] = np.zeros(width + 1, np.float32)
        t[prefix + "prompts"] = np.zeros((t[prefix + "prompts"].shape[0], width + 1), np.float32)

    path = _variant(good, tmp_path, "wide", meta_change=_pop("shapes"), tensor_change=wider)
    read_adapter_file(path)  # nothing wrong in the file alone
    with pytest.raises(AdapterError, match=r"wide.adapter: tensor towers.text.input.down.weight has shape \[\d+, \d+\], expected"):
        TaskRuntime(text_seal, path)


def test_a_one_byte_metadata_change_is_caught_by_the_checksum(good, tmp_path):
    data = good.read_bytes()
    assert data.count(b'\\"method\\"') >= 1  # the metadata is a JSON string inside the header's JSON
    path = tmp_path / "edited.adapter"
    path.write_bytes(data.replace(b'\\"method\\"', b'\\"methoe\\"', 1))
    with pytest.raises(AdapterError, match="edited.adapter is corrupted: its metadata does not match the checksum"):
        read_adapter_file(path)


def test_files_from_before_the_metadata_checksum_still_load(good, text_seal, tmp_path):
    file = read_adapter_file(good)
    meta = {k: v for k, v in file.meta.items() if k != CONTENT_DIGEST_KEY}
    assert DIGEST_KEY in meta
    path = tmp_path / "old.adapter"
    path.write_bytes(save_numpy(file.tensors, metadata={"sealkit": json.dumps(meta, sort_keys=True)}))
    runtime = TaskRuntime(text_seal, path)
    np.testing.assert_array_equal(runtime.embed(["a red cat"], "text"), TaskRuntime(text_seal, good).embed(["a red cat"], "text"))
    # ... and their tensor digest is still checked
    tensors = dict(file.tensors)
    key = _key(tensors, "output.up.bias")
    tensors[key] = tensors[key] + 1
    path.write_bytes(save_numpy(tensors, metadata={"sealkit": json.dumps(meta, sort_keys=True)}))
    with pytest.raises(AdapterError, match="its tensors do not match the checksum"):
        read_adapter_file(path)


def test_predict_refuses_a_bad_adapter_with_one_line(good, tiny_text_seal, keys, tmp_path):
    import os
    import subprocess
    import sys

    path = _variant(good, tmp_path, "fewer", meta_change=_task(class_names=["red"]))
    env = dict(os.environ, NO_COLOR="1", COLUMNS="300")
    env.pop("SEALKIT_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "sealkit", "predict", str(tiny_text_seal), "a red cat", "--adapter", str(path), "--key", str(keys["key"])],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == AdapterError.exit_code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "fewer.adapter: tensor task.class_embeddings has shape" in errors[0] and "Traceback" not in result.stderr
