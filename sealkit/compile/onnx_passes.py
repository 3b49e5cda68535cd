"""Rewrites of exported ONNX graphs that onnxruntime does not do itself. Never imports torch.

fold_crops_into_convolutions: a convolution padded by P whose output is then cropped by c (a Pad
with negative amounts) computes exactly the same as one padded by P - c. VJP graphs are full of
that pattern: TF-style "same" padding (an explicit ZeroPad2d before a conv with padding 0, as in
EfficientNet-Lite) has a crop as its backward, right after the input-gradient convolution. The
crop copies the whole gradient tensor; in EfficientNet-Lite0's VJP (224 px, batch 8) its 21 crops
took a quarter of the run.

compare_clip_outputs: a ReLU6 backward mask is (x > 0) & (x < 6) on the activation's input x, the
output of a convolution that also feeds the Clip. With two readers onnxruntime can fuse neither the
Clip into the convolution nor keep x in its blocked (NCHWc) layout. For y = clip(x, lo, hi) with
lo < hi, x > lo exactly when y > lo, and x < hi exactly when y < hi, so the comparisons can read y:
same masks, bit for bit. In EfficientNet-Lite0's forward_saved graph (224 px, batch 8, 1 thread) that
took the run to 0.89x of its time, the VJP graph's to 0.95x (benchmarks/pass_ab.py).

drop_softmax_guards: torch's attention (math kernel) follows every softmax with a guard for rows
that may attend to nothing: where(row of scores all -inf, 0, softmax), and its backward with the same
where. In ONNX that is Equal(scores, -inf) -> Not -> Cast -> ReduceMax -> Cast -> Not, zeros and a
Where over each attention matrix, twice. A module that masks with a finite bias (BERT's -10000)
never has such a row, so every guard returns the softmax unchanged; a recipe declares that
(TowerRecipe.finite_attention_bias) and export drops them. MiniLM's residual step: 0.95x the time,
outputs and gradients bit for bit the same (docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def _constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of an initializer or Constant node output, or None when `name` is computed."""
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _constant_ints(graph: onnx.GraphProto, name: str) -> list[int] | None:
    value = _constant(graph, name)
    return None if value is None else [int(v) for v in value.reshape(-1)]


def _constant_scalar(graph: onnx.GraphProto, name: str) -> float | None:
    value = _constant(graph, name) if name else None
    return None if value is None or value.size != 1 else float(value.reshape(-1)[0])


def _attribute(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _set_ints(node: onnx.NodeProto, name: str, values: list[int]) -> None:
    for a in node.attribute:
        if a.name == name:
            del a.ints[:]
            a.ints.extend(values)
            return
    node.attribute.append(onnx.helper.make_attribute(name, values))


def _crop_of(graph: onnx.GraphProto, pad: onnx.NodeProto) -> list[int] | None:
    """For a 2-D crop of [N, C, H, W] (Pad with amounts <= 0 on H and W only): [h_begin, w_begin, h_end, w_end], else None."""
    if pad.op_type != "Pad" or _attribute(pad, "mode", b"constant") not in (b"constant", "constant") or len(pad.input) < 2 or len(pad.input) > 3:
        return None  # a fourth input (axes) is not handled
    amounts = _constant_ints(graph, pad.input[1])
    if amounts is None or len(amounts) != 8:
        return None
    n_b, c_b, h_b, w_b, n_e, c_e, h_e, w_e = amounts
    if any((n_b, c_b, n_e, c_e)) or any(v > 0 for v in (h_b, w_b, h_e, w_e)):
        return None
    return [h_b, w_b, h_e, w_e]


def fold_crops_into_convolutions(model: onnx.ModelProto) -> int:
    """Fold every crop that directly follows a stride-1 Conv (its only reader) into the Conv's padding, in place.

    Returns how many crops were folded. The Conv then writes the cropped tensor under the crop's name.
    """
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    graph_outputs = {o.name for o in graph.output}
    folded = []
    for pad in graph.node:
        crop = _crop_of(graph, pad)
        conv = producers.get(pad.input[0]) if crop is not None else None
        if conv is None or conv.op_type != "Conv" or readers.get(conv.output[0]) != 1 or conv.output[0] in graph_outputs:
            continue
        if _attribute(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or any(s != 1 for s in _attribute(conv, "strides", [1, 1])):
            continue
        conv_pads = list(_attribute(conv, "pads", [0, 0, 0, 0]))
        if len(conv_pads) != 4:
            continue
        new_pads = [p + c for p, c in zip(conv_pads, crop)]
        if any(p < 0 for p in new_pads):
            continue
        _set_ints(conv, "pads", new_pads)
        stale = conv.output[0]
        conv.output[0] = pad.output[0]
        folded.append(pad)
        kept = [v for v in graph.value_info if v.name != stale]  # the uncropped shape no longer exists
        del graph.value_info[:]
        graph.value_info.extend(kept)
    for pad in folded:
        graph.node.remove(pad)
    if folded:
        _drop_unused_initializers(graph)
    return len(folded)


def compare_clip_outputs(model: onnx.ModelProto) -> int:
    """Make every `Greater(x, lo)` and `Less(x, hi)` beside a `Clip(x, lo, hi)` read the Clip's output, in place.

    Returns how many comparisons now read a Clip's output. Only constant bounds with lo < hi qualify
    (the equivalence needs both); comparisons against other values are left alone.
    """
    graph = model.graph
    bounds: dict[str, list[tuple[float, float, str]]] = {}  # clip input -> (lo, hi, clip output)
    for node in graph.node:
        if node.op_type == "Clip" and len(node.input) == 3:
            lo, hi = _constant_scalar(graph, node.input[1]), _constant_scalar(graph, node.input[2])
            if lo is not None and hi is not None and lo < hi:
                bounds.setdefault(node.input[0], []).append((lo, hi, node.output[0]))
    moved = 0
    for node in graph.node:
        if node.op_type not in ("Greater", "Less") or node.input[0] not in bounds:
            continue
        against = _constant_scalar(graph, node.input[1])
        for lo, hi, clipped in bounds[node.input[0]]:
            if against == (lo if node.op_type == "Greater" else hi):
                node.input[0] = clipped
                moved += 1
                break
    return moved


def drop_softmax_guards(model: onnx.ModelProto) -> int:
    """Remove torch's fully-masked-row guards after softmax (and their backward), in place.

    Only exact when no row of attention scores can be all -inf: call it for modules whose attention
    masks are a finite bias. Returns how many Where nodes were dropped.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    guards = {node.input[0] for node in graph.node if node.op_type == "Where" and _is_softmax_guard(graph, producer, node)}
    outputs = {o.name for o in graph.output}
    dropped = [
        node for node in graph.node if node.op_type == "Where" and node.input[0] in guards and _is_zero(graph, producer, node.input[1]) and node.output[0] not in outputs
    ]
    if not dropped:
        return 0
    bypass = {node.output[0]: node.input[2] for node in dropped}
    for node in dropped:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in bypass:
                node.input[i] = bypass[name]
    _drop_dead_nodes(graph)
    _drop_unused_initializers(graph)
    return len(dropped)


def _is_softmax_guard(graph: onnx.GraphProto, producer: dict[str, onnx.NodeProto], where: onnx.NodeProto) -> bool:
    """Where(c, 0, Softmax(s)) with c computed from Equal(s, -inf) through Not, Cast and ReduceMax only."""
    softmax = producer.get(where.input[2])
    if softmax is None or softmax.op_type != "Softmax" or not _is_zero(graph, producer, where.input[1]):
        return False
    node = producer.get(where.input[0])
    while node is not None and node.op_type in ("Not", "Cast", "ReduceMax"):
        node = producer.get(node.input[0])
    if node is None or node.op_type != "Equal" or softmax.input[0] not in node.input:
        return False
    other = node.input[1] if node.input[0] == softmax.input[0] else node.input[0]
    value = _constant_scalar(graph, other)
    return value is not None and value == float("-inf")


def _is_zero(graph: onnx.GraphProto, producer: dict[str, onnx.NodeProto], name: str) -> bool:
    """A constant of zeros, or such a constant broadcast by Expand."""
    node = producer.get(name)
    if node is not None and node.op_type == "Expand":
        name = node.input[0]
    value = _constant(graph, name)
    return value is not None and value.size > 0 and not value.any()


def _drop_dead_nodes(graph: onnx.GraphProto) -> None:
    """Remove nodes none of whose outputs is read or is a graph output, until none is left."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [node for node in graph.node if not any(out in read for out in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Drop initializers and Constant nodes that nothing reads any more (a folded crop's amounts, a dropped guard's zeros)."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    dead = [node for node in graph.node if node.op_type == "Constant" and node.output[0] not in used]
    for node in dead:
        graph.node.remove(node)
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
