"""Split a VJP graph into a forward that also returns its residuals and a backward that starts from them.

A VJP graph computes the forward again before its backward, so a training step that runs the
forward graph and then the VJP graph pays for two forwards. Splitting the VJP graph where the
cotangent enters gives one forward per step: `forward_saved` returns the output plus every
intermediate tensor the backward reads (the residuals, i.e. intermediate activations), the device
keeps them, and `backward` maps (residuals, cotangent) to the gradients. Nodes that read only
weights and constants are copied into the backward rather than saved. A residual that is a widening
Cast (a ReLU6 mask cast from bool to float) is saved before the cast, which the backward redoes:
1 byte per element kept instead of 4; likewise a residual that is a Transpose is saved untransposed.
Imports onnx only.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper

from sealkit.errors import ExportError

RESIDUAL_PREFIX = "residual_"


@dataclass
class SplitGraphs:
    forward_saved: onnx.ModelProto
    backward: onnx.ModelProto
    residuals: list[onnx.ValueInfoProto]  # name (residual_<i>) and type of each saved tensor
    shapes: list[tuple[int | str, ...]]  # each residual's shape as inferred from the VJP graph ("?": unknown)


def _producers(graph: onnx.GraphProto) -> dict[str, int]:
    return {name: i for i, node in enumerate(graph.node) for name in node.output if name}


def _reaching(graph: onnx.GraphProto, sources: set[str]) -> set[int]:
    """Indices of the nodes that read (transitively) any name in `sources`; nodes are in topological order."""
    tainted, found = set(sources), set()
    for i, node in enumerate(graph.node):
        if any(name in tainted for name in node.input):
            found.add(i)
            tainted.update(name for name in node.output if name)
    return found


def _needed(graph: onnx.GraphProto, outputs: list[str], allowed: set[int], stop: set[str]) -> list[int]:
    """The nodes among `allowed` that `outputs` depend on, without looking past names in `stop`."""
    producers = _producers(graph)
    keep: set[int] = set()
    pending = [n for n in outputs if n not in stop]
    while pending:
        name = pending.pop()
        index = producers.get(name)
        if index is None or index in keep or index not in allowed:
            continue
        keep.add(index)
        pending.extend(n for n in graph.node[index].input if n and n not in stop)
    return sorted(keep)


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    graph = inferred.graph
    return {v.name: v for v in list(graph.value_info) + list(graph.input) + list(graph.output)}


def _model(source: onnx.ModelProto, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
    used = {name for node in nodes for name in node.input}
    initializers = [init for init in source.graph.initializer if init.name in used]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=list(source.opset_import), ir_version=source.ir_version)
    model.functions.extend(source.functions)
    return model


def _recomputed_in_backward(graph: onnx.GraphProto, residual_names: list[str], types: dict[str, onnx.ValueInfoProto], producers: dict[str, int], data_nodes: set[int]) -> tuple[list[str], set[int]]:
    """Residuals the backward can cheaply recompute, replaced by their producer's input; returns them and the nodes to redo.

    Two kinds, followed through chains of them:
    - a widening Cast, e.g. a ReLU6 backward mask saved as bool (1 byte per element) rather than float32;
    - a Transpose (attention's K^T and V^T, as autograd saves them for the backward's batched products).
      Saved, the forward must write the transposed copy out (MiniLM, batch 8: 24 Transposes, 14% of
      forward_saved's time); recomputed, onnxruntime fuses it into the backward's MatMul as a
      transposed operand, and its input is often a residual already.
    """

    def itemsize(name: str) -> int:
        elem = types[name].type.tensor_type.elem_type if name in types else 0
        return helper.tensor_dtype_to_np_dtype(elem).itemsize if elem else 0

    def recomputable(node: onnx.NodeProto, name: str) -> bool:
        if producers.get(node.input[0]) not in data_nodes:
            return False
        if node.op_type == "Transpose":
            return True
        return node.op_type == "Cast" and 0 < itemsize(node.input[0]) < itemsize(name)

    names: list[str] = []
    moved: set[int] = set()
    for name in residual_names:
        while recomputable(graph.node[producers[name]], name):
            moved.add(producers[name])
            name = graph.node[producers[name]].input[0]
        if name not in names:
            names.append(name)
    return names, moved


def _just_in_time(nodes: list[onnx.NodeProto], early: dict[str, onnx.NodeProto]) -> list[onnx.NodeProto]:
    """`nodes` with each node of `early` (by output name) placed right before its first reader.

    onnxruntime runs nodes in graph order where it can, so recomputed Casts listed first would widen
    every saved mask at once; placed next to their readers, one wide mask at a time is alive. A
    recomputed node that reads another (a chain) is placed before it in turn.
    """
    ordered: list[onnx.NodeProto] = []

    def place(node: onnx.NodeProto) -> None:
        for name in node.input:
            if name in early:
                place(early.pop(name))
        ordered.append(node)

    for node in nodes:
        place(node)
    return ordered + list(early.values())


def _output_under_new_names(nodes: list[onnx.NodeProto], names: dict[str, str]) -> None:
    """Rename tensors at their producer and every reader, in place.

    Returning a residual under its new name through an Identity node adds a node per residual for
    onnxruntime to run (MiniLM: 46 Identity kernels, 2 of forward_saved's 78 ms in its profiler; the
    training step took 0.99x [0.97-1.00] the time without them).
    """
    for node in nodes:
        for k, name in enumerate(node.input):
            node.input[k] = names.get(name, name)
        for k, name in enumerate(node.output):
            node.output[k] = names.get(name, name)


def _typed(name: str, like: onnx.ValueInfoProto) -> onnx.ValueInfoProto | None:
    """A value info with `like`'s element type and rank, every axis free: residual shapes vary with batch and sequence."""
    tensor = like.type.tensor_type
    if not tensor.elem_type or not tensor.HasField("shape"):
        return None
    return helper.make_tensor_value_info(name, tensor.elem_type, [f"{name}_{axis}" for axis in range(len(tensor.shape.dim))])


def _shapes_from_inputs(graph: onnx.GraphProto, cotangent: str, batch_source: str) -> None:
    """Make Shape nodes on the cotangent read the batch size from an input instead, in place.

    Symbolic tracing takes the batch size from whichever tensor has it, the cotangent included, so
    forward nodes may read the cotangent's shape; that would pull the whole forward into the backward.
    The cotangent is [batch, fixed dims...], so its shape is the input's batch size and constants.
    """
    spec = next(v for v in graph.input if v.name == cotangent)
    fixed = [d.dim_value for d in spec.type.tensor_type.shape.dim][1:]
    if any(d <= 0 for d in fixed):
        raise ExportError(f"the cotangent '{cotangent}' must have fixed sizes after its batch axis")
    rank = 1 + len(fixed)
    nodes = []
    for node in graph.node:
        if node.op_type != "Shape" or node.input[0] != cotangent:
            nodes.append(node)
            continue
        attrs = {a.name: a.i for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", rank)
        start, end = (start + rank if start < 0 else start), min(end + rank if end < 0 else end, rank)
        out = node.output[0]
        batch = f"{out}__batch"
        nodes.append(helper.make_node("Shape", [batch_source], [batch], start=0, end=1))
        parts = ([batch] if start == 0 else []) + ([f"{out}__fixed"] if end > max(start, 1) else [])
        if end > max(start, 1):
            values = fixed[max(start, 1) - 1 : end - 1]
            nodes.append(helper.make_node("Constant", [], [f"{out}__fixed"], value=helper.make_tensor(f"{out}__fixed", onnx.TensorProto.INT64, [len(values)], values)))
        nodes.append(helper.make_node("Concat", parts, [out], axis=0) if len(parts) > 1 else helper.make_node("Identity", parts, [out]))
    del graph.node[:]
    graph.node.extend(nodes)


def split_vjp(vjp: onnx.ModelProto, cotangent: str, what: str = "tower") -> SplitGraphs:
    """Split a VJP graph at its cotangent input into `forward_saved` and `backward` graphs.

    `forward_saved` takes the VJP graph's inputs (without the cotangent) and returns its first output
    followed by the residuals; `backward` takes the residuals, the cotangent and whichever original
    inputs the backward reads, and returns the remaining outputs (the gradients).
    """
    graph = vjp.graph
    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ExportError(f"{what}: a VJP graph with control flow cannot be split into forward and backward graphs")
    input_names = [v.name for v in graph.input if v.name != cotangent]
    if len(input_names) == len(graph.input):
        raise ExportError(f"{what}: the VJP graph has no input '{cotangent}'")
    output_names = [v.name for v in graph.output]
    vjp = onnx.ModelProto.FromString(vjp.SerializeToString())
    graph = vjp.graph
    _shapes_from_inputs(graph, cotangent, input_names[0])
    initializer_names = {init.name for init in graph.initializer}
    producers = _producers(graph)
    everything = set(range(len(graph.node)))

    backward_nodes = _reaching(graph, {cotangent})
    data_nodes = _reaching(graph, set(input_names))  # nodes that depend on an input: not constants
    # what the backward part reads from outside itself (and gradients the forward part computed)
    outside = [name for i in sorted(backward_nodes) for name in graph.node[i].input if name and producers.get(name) not in backward_nodes]
    outside += [name for name in output_names[1:] if producers.get(name) not in backward_nodes]
    residual_names: list[str] = []
    for name in dict.fromkeys(outside):
        if name == cotangent or name in input_names or name in initializer_names:
            continue
        if producers.get(name) in data_nodes:
            residual_names.append(name)

    types = _value_types(vjp)
    residual_names, recomputed = _recomputed_in_backward(graph, residual_names, types, producers, data_nodes)
    renamed = {name: f"{RESIDUAL_PREFIX}{i}" for i, name in enumerate(residual_names)}
    typed = {name: _typed(renamed[name], types[name]) if name in types else None for name in residual_names}
    missing = [name for name, value in typed.items() if value is None]
    if missing:
        raise ExportError(f"{what}: cannot infer the type and rank of the residual tensors {missing[:3]} of the VJP graph")
    residuals = [typed[name] for name in residual_names]
    shapes = [tuple(d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in types[name].type.tensor_type.shape.dim) for name in residual_names]

    # forward_saved: the forward part, each residual returned under its new name
    forward_outputs = [output_names[0], *residual_names]
    forward_nodes = [onnx.NodeProto.FromString(graph.node[i].SerializeToString()) for i in _needed(graph, forward_outputs, everything - backward_nodes, set())]
    _output_under_new_names(forward_nodes, {name: renamed[name] for name in residual_names if name != output_names[0]})
    forward_nodes += [helper.make_node("Identity", [output_names[0]], [renamed[output_names[0]]])] if output_names[0] in renamed else []
    by_name = {v.name: v for v in graph.input}
    forward_saved = _model(vjp, forward_nodes, [by_name[n] for n in input_names], [graph.output[0], *residuals])

    # backward: the backward part, plus constant-only nodes it reads, reading residuals by their new names
    stop = set(residual_names) | set(input_names) | {cotangent}
    allowed = backward_nodes | (everything - data_nodes - backward_nodes) | recomputed
    backward_nodes_list, early = [], {}
    for i in _needed(graph, output_names[1:], allowed, stop):
        node = onnx.NodeProto.FromString(graph.node[i].SerializeToString())
        for k, name in enumerate(node.input):
            node.input[k] = renamed.get(name, name)
        if i in recomputed:
            early[node.output[0]] = node
        else:
            backward_nodes_list.append(node)
    backward_nodes_list = _just_in_time(backward_nodes_list, early)
    gradient_outputs = []
    for value in graph.output[1:]:
        if value.name in renamed:  # a gradient the forward part computed comes back as a residual
            backward_nodes_list.append(helper.make_node("Identity", [renamed[value.name]], [value.name]))
        gradient_outputs.append(value)
    read = {name for node in backward_nodes_list for name in node.input}
    backward_inputs = [by_name[n] for n in input_names if n in read] + residuals + [by_name[cotangent]]
    backward = _model(vjp, backward_nodes_list, backward_inputs, gradient_outputs)
    for model, label in ((forward_saved, "forward_saved"), (backward, "backward")):
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"{what}: the split {label} graph is invalid: {str(exc).splitlines()[0]}") from None
    return SplitGraphs(forward_saved, backward, residuals, shapes)
