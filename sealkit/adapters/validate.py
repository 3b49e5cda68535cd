"""Check an adapter file's contents before anything uses them: one place for predict, eval and serve.

A file can pass its checksum and still be unusable: written by a buggy or hostile tool, edited by
hand, or trained into NaNs. Such a file used to load and then fail on every request (a 500), or
silently skip a missing input adapter. `validate_adapter` checks what can be checked from the file
alone (metadata schema, tensor names, dtypes, finiteness, shapes consistent with each other and
with the metadata); `validate_for_seal` checks the shapes against the seal's towers. Both raise
one-line AdapterErrors. numpy only (the runtime's path).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, NoReturn

import numpy as np

from sealkit.errors import AdapterError

METHODS = ("output", "dga", "lga")
TASKS = ("classify", "retrieve")
HEADS = ("none", "text", "linear")
CLASS_EMBEDDINGS = "task.class_embeddings"
# input adapter tensors (after "towers.T.input.") and their number of dimensions, per modality
INPUT_LAYOUTS = {
    "image": {"conv_in.weight": 4, "conv_in.bias": 1, "conv_out.weight": 4, "conv_out.bias": 1},
    "text": {"down.weight": 2, "down.bias": 1, "up.weight": 2, "up.bias": 1},
}
OUTPUT_PAIRS = ("proj", "down", "up")
_TOWER_TENSOR = re.compile(r"^towers\.([^.]+)\.(input|entries|output)\.(.+)$")

Fail = Callable[[str], NoReturn]


def _failer(path: str | Path) -> Fail:
    name = Path(path).name

    def fail(problem: str) -> NoReturn:
        raise AdapterError(f"{name} is not a usable adapter: {problem}; retrain it or copy it again")

    return fail


def validate_adapter(meta: dict[str, Any], tensors: dict[str, np.ndarray], path: str | Path) -> None:
    """Raise AdapterError unless the metadata and tensors form an adapter the runtime can run."""
    fail = _failer(path)
    task = _check_meta(meta, fail)
    _check_tensors(tensors, fail)
    towers = [t for t in (task["query_tower"], task.get("key_tower")) if t]
    out_dims = set()
    for tower in towers:
        _check_input(meta, tensors, tower, fail)
        out_dims.add(_check_output(tensors, tower, fail))
    for name in tensors:
        match = _TOWER_TENSOR.match(name)
        if match and match.group(1) not in towers:
            fail(f"tensor '{name}' belongs to tower '{match.group(1)}', which the task does not use")
    out_dims.discard(None)  # an identity output adapter (no tensors) keeps the tower's width
    if len(out_dims) > 1:
        fail(f"the towers' output adapters disagree on the embedding width ({sorted(out_dims)})")
    out_dim = out_dims.pop() if out_dims else meta.get("out_dim")
    if meta.get("out_dim") is not None and meta["out_dim"] != out_dim:
        fail(f"out_dim is {meta['out_dim']} in the metadata but {out_dim} in the tensors")
    _check_head(task, tensors, out_dim, fail)
    shapes = meta.get("shapes")
    if shapes is not None:
        if not isinstance(shapes, dict) or set(shapes) != set(tensors):
            missing = sorted(set(shapes) - set(tensors)) if isinstance(shapes, dict) else []
            fail(f"its tensors do not match the names its metadata lists{' (missing ' + ', '.join(missing) + ')' if missing else ''}")
        for name, shape in shapes.items():
            scalar = shape in ([], [1]) and tensors[name].shape in ((), (1,))  # safetensors may store a scalar as [1]
            if list(tensors[name].shape) != shape and not scalar:
                fail(f"tensor '{name}' has shape {list(tensors[name].shape)}, its metadata says {shape}")


def validate_for_seal(meta: dict[str, Any], tensors: dict[str, np.ndarray], path: str | Path, manifest) -> None:
    """Raise AdapterError unless the adapter's shapes fit the towers of this seal (a `Manifest`)."""
    fail = _failer(path)
    task = meta["task"]
    for tower in [t for t in (task["query_tower"], task.get("key_tower")) if t]:
        spec = manifest.towers.get(tower)
        if spec is None:
            fail(f"it uses tower '{tower}' that the seal does not have (towers: {sorted(manifest.towers)})")
        prefix = f"towers.{tower}."
        width = spec.output.shape[-1]
        first = tensors.get(prefix + "output.proj.weight", tensors.get(prefix + "output.down.weight"))
        got = first.shape[1] if first is not None else _output_width(tensors, tower)
        if isinstance(width, int) and got is not None and got != width:
            fail(f"its output adapter for tower '{tower}' takes width {got}, the seal's tower gives {width}")
        layout = INPUT_LAYOUTS.get(spec.modality, {})
        inputs = {k[len(prefix + "input.") :] for k in tensors if k.startswith(prefix + "input.")}
        if inputs and not set(layout) <= inputs:
            fail(f"its input adapter for tower '{tower}' is not a {spec.modality} input adapter")
        if inputs:
            want = spec.inputs[0].shape[1] if spec.modality == "image" else spec.inputs[0].shape[-1]
            have = tensors[prefix + ("input.conv_in.weight" if spec.modality == "image" else "input.down.weight")].shape[1]
            if isinstance(want, int) and have != want:
                fail(f"its input adapter for tower '{tower}' takes width {have}, the seal's tower takes {want}")
        entries = {k[len(prefix + "entries.") :]: v for k, v in tensors.items() if k.startswith(prefix + "entries.")}
        if entries:
            known = {ep.name: tuple(ep.shape) for ep in spec.entry_points}
            if set(entries) != set(known):
                fail(f"its entry tensors for tower '{tower}' ({sorted(entries)}) are not the seal's entry points ({sorted(known)})")
            for name, value in entries.items():
                if tuple(value.shape) != known[name]:
                    fail(f"entry tensor '{name}' has shape {list(value.shape)}, the seal's entry point has {list(known[name])}")


# --- pieces ------------------------------------------------------------------------------------------
def _check_meta(meta: dict[str, Any], fail: Fail) -> dict[str, Any]:
    for key in ("seal_id", "method", "task"):
        if key not in meta:
            fail(f"its metadata has no '{key}'")
    if not isinstance(meta["seal_id"], str) or not meta["seal_id"]:
        fail("its metadata's seal_id is not a string")
    if meta["method"] not in METHODS:
        fail(f"its method {meta['method']!r} is not one of {', '.join(METHODS)}")
    task = meta["task"]
    if not isinstance(task, dict):
        fail("its metadata's task is not an object")
    if task.get("task") not in TASKS:
        fail(f"its task {task.get('task')!r} is not one of {', '.join(TASKS)}")
    if not isinstance(task.get("query_tower"), str) or not task["query_tower"]:
        fail("its task names no query_tower")
    if task.get("key_tower") is not None and not isinstance(task["key_tower"], str):
        fail("its task's key_tower is not a string")
    if task.get("head", "none") not in HEADS:
        fail(f"its head {task.get('head')!r} is not one of {', '.join(HEADS)}")
    for key in ("class_names", "templates"):
        value = task.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            fail(f"its task's {key} is not a list of strings")
    if task["task"] == "classify" and (task.get("head") not in ("text", "linear") or not task.get("class_names")):
        fail("a classify adapter needs a text or linear head and class names")
    if meta.get("out_dim") is not None and (isinstance(meta["out_dim"], bool) or not isinstance(meta["out_dim"], int)):
        fail("its metadata's out_dim is not an integer")
    towers = meta.get("towers")
    if towers is not None and not (isinstance(towers, dict) and all(isinstance(v, dict) for v in towers.values())):
        fail("its metadata's towers is not an object of objects")
    return task


def _check_tensors(tensors: dict[str, np.ndarray], fail: Fail) -> None:
    allowed = {"head.weight", "head.bias", "logit_scale", CLASS_EMBEDDINGS}
    for name, value in tensors.items():
        if name not in allowed and not _TOWER_TENSOR.match(name):
            fail(f"it has an unknown tensor '{name}'")
        if value.dtype.kind != "f":
            fail(f"tensor '{name}' is {value.dtype}, not floating point")
        if not np.isfinite(value).all():
            fail(f"tensor '{name}' has NaN or infinite values (training diverged?)")
    if "logit_scale" not in tensors or tensors["logit_scale"].size != 1:
        fail("it has no scalar 'logit_scale'")


def _check_input(meta: dict[str, Any], tensors: dict[str, np.ndarray], tower: str, fail: Fail) -> None:
    prefix = f"towers.{tower}.input."
    present = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    expected = meta["method"] in ("dga", "lga")
    declared = (meta.get("towers") or {}).get(tower, {}).get("input_adapter")
    if declared is not None and bool(declared) != expected:
        fail(f"its metadata says input_adapter={declared} for tower '{tower}', which method {meta['method']} contradicts")
    if not expected:
        if present:
            fail(f"method output has no input adapter, but tower '{tower}' has input tensors")
        return
    layout = next((layout for layout in INPUT_LAYOUTS.values() if set(layout) <= set(present)), None)
    if layout is None:
        fail(f"the input adapter of tower '{tower}' is missing tensors (has {sorted(present) or 'none'})")
    extra = set(present) - set(layout) - ({"prompts"} if "down.weight" in layout else set())
    if extra:
        fail(f"the input adapter of tower '{tower}' has unknown tensors {sorted(extra)}")
    for key, ndim in layout.items():
        if present[key].ndim != ndim:
            fail(f"tensor '{prefix}{key}' has {present[key].ndim} dimensions, expected {ndim}")
    if "conv_in.weight" in layout:
        w_in, w_out = present["conv_in.weight"].shape, present["conv_out.weight"].shape
        consistent = w_in[2:] == w_out[2:] == (3, 3) and w_out == (w_in[1], w_in[0], 3, 3)
        consistent = consistent and present["conv_in.bias"].shape == (w_in[0],) and present["conv_out.bias"].shape == (w_in[1],)
    else:
        down, up = present["down.weight"].shape, present["up.weight"].shape
        consistent = up == (down[1], down[0]) and present["down.bias"].shape == (down[0],) and present["up.bias"].shape == (down[1],)
        if "prompts" in present:
            consistent = consistent and present["prompts"].ndim == 2 and present["prompts"].shape[1] == down[1]
    if not consistent:
        fail(f"the input adapter of tower '{tower}' has inconsistent shapes")


def _linear(tensors: dict[str, np.ndarray], name: str, fail: Fail) -> tuple[int, int] | None:
    weight, bias = tensors.get(name + ".weight"), tensors.get(name + ".bias")
    if weight is None and bias is None:
        return None
    if weight is None or bias is None or weight.ndim != 2 or bias.shape != (weight.shape[0],):
        fail(f"'{name}' needs a 2-D weight and a matching bias")
    return int(weight.shape[0]), int(weight.shape[1])


def _output_width(tensors: dict[str, np.ndarray], tower: str) -> int | None:
    up = tensors.get(f"towers.{tower}.output.up.weight")
    return int(up.shape[0]) if up is not None else None


def _check_output(tensors: dict[str, np.ndarray], tower: str, fail: Fail) -> int | None:
    """The output adapter's shapes agree with each other; returns its output width (None: identity)."""
    prefix = f"towers.{tower}.output."
    unknown = {k for k in tensors if k.startswith(prefix) and k[len(prefix) :].split(".")[0] not in OUTPUT_PAIRS}
    if unknown:
        fail(f"unknown output adapter tensors {sorted(unknown)}")
    proj, down, up = (_linear(tensors, prefix + part, fail) for part in OUTPUT_PAIRS)
    if (down is None) != (up is None):
        fail(f"the output adapter of tower '{tower}' has only one of down/up")
    if proj is None and down is None:
        return None
    dim_in = proj[1] if proj else down[1]
    dim_out = proj[0] if proj else (up[0] if up else dim_in)
    if down is not None and (down[1] != dim_in or up[1] != down[0] or up[0] != dim_out):
        fail(f"the output adapter of tower '{tower}' has inconsistent shapes")
    if proj is None and dim_out != dim_in:
        fail(f"the output adapter of tower '{tower}' changes width without a projection")
    return dim_out


def _check_head(task: dict[str, Any], tensors: dict[str, np.ndarray], out_dim: int | None, fail: Fail) -> None:
    classes = len(task.get("class_names") or [])
    head = _linear(tensors, "head", fail)
    embeddings = tensors.get(CLASS_EMBEDDINGS)
    if task["task"] != "classify":
        if head is not None or embeddings is not None:
            fail("a retrieve adapter has classification tensors")
        return
    shape = tuple(head) if task["head"] == "linear" and head else (embeddings.shape if embeddings is not None and embeddings.ndim == 2 else None)
    if shape is not None and out_dim is None:
        out_dim = shape[1]  # identity output adapters: the seal check compares it with the tower
    if task["head"] == "linear":
        if head != (classes, out_dim):
            fail(f"the linear head is {list(head) if head else 'missing'}; {classes} class names and width {out_dim} need [{classes}, {out_dim}]")
    elif embeddings is None or embeddings.shape != (classes, out_dim):
        got = list(embeddings.shape) if embeddings is not None else "missing"
        fail(f"the class embeddings are {got}; {classes} class names and width {out_dim} need [{classes}, {out_dim}]")
