"""Strip ONNX graphs of every name and note, and move their weights into one shared, deduplicated pool.

After `strip_model`, no module or parameter name survives: values are `v<N>`, weights `w<N>`,
small constants `c<N>`, transposed weights `t<N>`, nodes are unnamed, and doc strings, metadata and
producer fields are empty. Large float initializers become external data pointing into the `weights`
blob, so a weight used by both the forward and the VJP graph is stored once. The ONNX optimizer
constant-folds `Transpose(W)` of small matrices, so a VJP graph can hold both `W` and `W.T`; a
matrix whose transpose is already pooled is stored once and transposed by a node in the graph.
Never imports torch or onnxruntime.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

WEIGHTS_BLOB = "weights"
EXTERNAL_MIN_BYTES = 256
ALIGN = 64


class WeightPool:
    """Deduplicated weight bytes, 64-byte aligned so the runtime can view them without copying."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._index: dict[tuple[str, tuple[int, ...], str], tuple[str, int, int]] = {}

    def add(self, array: np.ndarray) -> tuple[str, int, int]:
        raw = np.ascontiguousarray(array).tobytes()
        key = (array.dtype.str, tuple(array.shape), hashlib.sha256(raw).hexdigest())
        if key not in self._index:
            self._buffer += b"\0" * ((-len(self._buffer)) % ALIGN)
            self._index[key] = (f"w{len(self._index)}", len(self._buffer), len(raw))
            self._buffer += raw
        return self._index[key]

    def __contains__(self, array: np.ndarray) -> bool:
        raw = np.ascontiguousarray(array).tobytes()
        return (array.dtype.str, tuple(array.shape), hashlib.sha256(raw).hexdigest()) in self._index

    def to_bytes(self) -> bytes:
        return bytes(self._buffer)

    def __len__(self) -> int:
        return len(self._index)


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Move large Constant nodes into initializers so they are pooled like weights."""
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            array = numpy_helper.to_array(tensor)
            if array.dtype.kind == "f" and array.nbytes >= EXTERNAL_MIN_BYTES:
                graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
                continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _externalize(init: TensorProto, name: str, offset: int, length: int, dims: tuple[int, ...]) -> TensorProto:
    out = TensorProto()
    out.name = name
    out.data_type = init.data_type
    out.dims.extend(dims)
    out.data_location = TensorProto.EXTERNAL
    for key, value in (("location", WEIGHTS_BLOB), ("offset", str(offset)), ("length", str(length))):
        entry = out.external_data.add()
        entry.key, entry.value = key, value
    return out


def strip_model(model: onnx.ModelProto, pool: WeightPool) -> bytes:
    """Anonymise `model` in place, pool its large weights, and return its serialized bytes."""
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    graph = model.graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise ValueError("graphs with control flow (If/Loop/Scan) are not supported by the seal format")
    _constants_to_initializers(graph)

    keep_names = {v.name for v in graph.input} | {v.name for v in graph.output}
    rename: dict[str, str] = {name: name for name in keep_names}
    initializers = []
    transposes = []
    small = 0
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype.kind == "f" and array.nbytes >= EXTERNAL_MIN_BYTES:
            # a matrix whose transpose is pooled already (folded by the optimizer) is not stored again
            transposed = array.ndim == 2 and array not in pool and array.T in pool
            stored = array.T if transposed else array
            new_name, offset, length = pool.add(stored)
            # two initializers with the same content in one graph share one external tensor
            if new_name not in {i.name for i in initializers}:
                initializers.append(_externalize(init, new_name, offset, length, stored.shape))
            if transposed:
                rename[init.name] = f"t{len(transposes)}"
                transposes.append(onnx.helper.make_node("Transpose", [new_name], [rename[init.name]], perm=[1, 0]))
            else:
                rename[init.name] = new_name
        else:
            new_name = f"c{small}"
            small += 1
            rename[init.name] = new_name
            clean = numpy_helper.from_array(array, new_name)
            initializers.append(clean)
    del graph.initializer[:]
    graph.initializer.extend(initializers)

    counter = 0

    def value_name(name: str) -> str:
        nonlocal counter
        if not name:
            return name
        if name not in rename:
            rename[name] = f"v{counter}"
            counter += 1
        return rename[name]

    for node in graph.node:
        node.name = ""
        node.doc_string = ""
        del node.metadata_props[:]
        for i, name in enumerate(node.input):
            node.input[i] = value_name(name)
        for i, name in enumerate(node.output):
            node.output[i] = value_name(name)
        for attr in node.attribute:
            attr.doc_string = ""
    if transposes:  # they read only initializers, so they may run first
        nodes = transposes + list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes)
    for value in list(graph.input) + list(graph.output):
        value.doc_string = ""
        del value.metadata_props[:]
    del graph.value_info[:]
    del graph.metadata_props[:]
    graph.name = "g"
    graph.doc_string = ""
    del model.metadata_props[:]
    model.producer_name = ""
    model.producer_version = ""
    model.domain = ""
    model.model_version = 0
    model.doc_string = ""
    return model.SerializeToString()


@dataclass(frozen=True)
class ExternalWeight:
    name: str
    offset: int
    length: int
    dtype: np.dtype
    shape: tuple[int, ...]


def external_weights(model: onnx.ModelProto) -> list[ExternalWeight]:
    """The pooled weights a stripped graph refers to, so the runtime can hand them over from memory."""
    found = []
    for init in model.graph.initializer:
        if init.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in init.external_data}
        found.append(
            ExternalWeight(
                init.name,
                int(info["offset"]),
                int(info["length"]),
                np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)),
                tuple(int(d) for d in init.dims),
            )
        )
    return found


def weights_as_inputs(model: onnx.ModelProto) -> None:
    """Turn the pooled (external) initializers into graph inputs, in place.

    onnxruntime copies every initializer into each session; graph inputs it reads from the
    caller's memory. Feeding one in-memory copy to every graph is how a seal holds its weights once.
    """
    graph = model.graph
    external = [i for i in graph.initializer if i.data_location == TensorProto.EXTERNAL]
    inline = [i for i in graph.initializer if i.data_location != TensorProto.EXTERNAL]
    del graph.initializer[:]
    graph.initializer.extend(inline)
    for init in external:
        graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
