"""The ONNX passes at export (sealkit/compile/onnx_passes.py): crop folding, ReLU6 masks read from the Clip's output, softmax guards dropped; same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from torch import nn

from sealkit.compile.check import relative_error
from sealkit.compile.graphs import export_vjp
from sealkit.compile.onnx_passes import compare_clip_outputs, drop_softmax_guards, fold_crops_into_convolutions


def _conv_then_crop(crop: list[int], strides=(1, 1), second_reader: bool = False) -> onnx.ModelProto:
    """x -> Conv(3x3, pads 2) -> Pad(crop) -> y (and optionally the conv output as a second output)."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.random.default_rng(0).standard_normal(108).astype(np.float32))
    pads = helper.make_tensor("crop", TensorProto.INT64, [8], crop)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[2, 2, 2, 2], strides=list(strides)),
        helper.make_node("Pad", ["c", "crop"], ["y"], mode="constant"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if second_reader:
        outputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 9])], outputs, [weight, pads])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


def test_a_crop_after_a_convolution_becomes_the_convolutions_padding():
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 9)).astype(np.float32)
    for crop in ([0, 0, -1, -1, 0, 0, -1, -1], [0, 0, 0, 0, 0, 0, -1, -2], [0, 0, -2, 0, 0, 0, 0, -2]):
        model = _conv_then_crop(crop)
        expected = _run(model, x)
        assert fold_crops_into_convolutions(model) == 1
        assert [n.op_type for n in model.graph.node] == ["Conv"] and [i.name for i in model.graph.initializer] == ["w"]
        np.testing.assert_allclose(_run(model, x), expected, rtol=1e-6, atol=1e-6)


def test_crops_that_cannot_fold_are_left_alone():
    for model in (
        _conv_then_crop([0, 0, -1, -1, 0, 0, -1, -1], strides=(2, 2)),  # a strided conv: a crop of c is not a padding of c
        _conv_then_crop([0, 0, -3, -1, 0, 0, -1, -1]),  # deeper than the padding
        _conv_then_crop([0, 0, -1, -1, 0, 0, -1, -1], second_reader=True),  # the uncropped tensor is read too
        _conv_then_crop([0, -1, 0, 0, 0, 0, 0, 0]),  # a channel crop
    ):
        assert fold_crops_into_convolutions(model) == 0
        assert [n.op_type for n in model.graph.node] == ["Conv", "Pad"]


class _SamePadded(nn.Module):
    """TF-style "same" padding as EfficientNet-Lite has it: explicit zero pads before convs with padding 0."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.ZeroPad2d(1), nn.Conv2d(4, 4, 3, groups=4), nn.ReLU6(),
            nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(4, 8, 3, stride=2, groups=4), nn.ReLU6(),
            nn.ZeroPad2d(2), nn.Conv2d(8, 6, 5),
        )  # fmt: skip

    def forward(self, x):
        return self.body(x)


def test_the_vjp_of_same_padded_convolutions_has_no_crop_and_matches_autograd():
    torch.manual_seed(0)
    module = _SamePadded().eval()
    model = export_vjp(module, (torch.randn(2, 4, 12, 12),), [{0: "batch"}], [True], ["x"], "y", {0: "batch"})
    crops = [n for n in model.graph.node if n.op_type == "Pad" and any(v < 0 for v in onnx.numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == n.input[1])))]
    assert not crops
    clip_outputs = {n.output[0] for n in model.graph.node if n.op_type == "Clip"}
    comparisons = [n for n in model.graph.node if n.op_type in ("Greater", "Less")]
    assert comparisons and all(n.input[0] in clip_outputs for n in comparisons)  # the ReLU6 masks read the activations
    # the strided depthwise conv's backward inserts zeros with a 1x1 transposed convolution, not a pad of a 6-D reshape
    assert [n.op_type for n in model.graph.node].count("ConvTranspose") == 1
    x = torch.randn(3, 4, 12, 12, requires_grad=True)
    y = module(x)
    cotangent = torch.randn_like(y)
    y.backward(cotangent)
    output, grad = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x.detach().numpy(), "grad_y": cotangent.numpy()})
    assert relative_error(output, y.detach().numpy()) < 1e-5
    assert relative_error(grad, x.grad.numpy()) < 1e-5


def _relu6_with_masks(greater_than: float = 0.0, op: str = "Greater") -> onnx.ModelProto:
    """x -> Conv -> c; y = Clip(c, 0, 6); m = op(c, greater_than) & Less(c, 6): a ReLU6 and its backward mask, as VJP graphs have them."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], np.random.default_rng(0).standard_normal(12).astype(np.float32) * 4)
    constants = [helper.make_tensor(name, TensorProto.FLOAT, [], [value]) for name, value in (("lo", 0.0), ("hi", 6.0), ("t", greater_than))]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["y"]),
        helper.make_node(op, ["c", "t"], ["above"]),
        helper.make_node("Less", ["c", "hi"], ["below"]),
        helper.make_node("And", ["above", "below"], ["m"]),
    ]
    outputs = [helper.make_tensor_value_info(name, elem, None) for name, elem in (("y", TensorProto.FLOAT), ("m", TensorProto.BOOL))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 5, 5])], outputs, [weight, *constants])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_relu6_masks_read_the_clips_output_and_stay_the_same_at_the_bounds():
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5)).astype(np.float32)
    x[0, :, 0, 0] = 0.0  # conv output exactly 0 (at the lower bound)
    model = _relu6_with_masks()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    before = session.run(["y", "m"], {"x": x})
    assert compare_clip_outputs(model) == 2
    assert [n.input[0] for n in model.graph.node if n.op_type in ("Greater", "Less")] == ["y", "y"]
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y", "m"], {"x": x})
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert 0 < before[1].mean() < 1 and not before[1][0, :, 0, 0].any()  # some masked, some not; the zeros masked


def test_comparisons_other_than_the_clips_bounds_are_left_alone():
    for model in (_relu6_with_masks(greater_than=1.0), _relu6_with_masks(op="GreaterOrEqual")):
        assert compare_clip_outputs(model) == 1  # only Less(c, 6) qualifies
        assert next(n for n in model.graph.node if n.op_type in ("Greater", "GreaterOrEqual")).input[0] == "c"


def _guarded_softmax(compare_with: float = float("-inf"), backward_then: float = 0.0) -> onnx.ModelProto:
    """torch's attention softmax with its fully-masked-row guard, and the guard's backward on a gradient g."""
    constants = [
        helper.make_tensor("limit", TensorProto.FLOAT, [], [compare_with]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("then", TensorProto.FLOAT, [], [backward_then]),
    ]
    nodes = [
        helper.make_node("Softmax", ["s"], ["p"], axis=-1),
        helper.make_node("Equal", ["s", "limit"], ["e"]),
        helper.make_node("Not", ["e"], ["ne"]),
        helper.make_node("Cast", ["ne"], ["nf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["nf"], ["any"], axes=[-1], keepdims=1),
        helper.make_node("Cast", ["any"], ["anyb"], to=TensorProto.BOOL),
        helper.make_node("Not", ["anyb"], ["all_masked"]),
        helper.make_node("Shape", ["p"], ["shape"]),
        helper.make_node("Expand", ["zero", "shape"], ["zeros"]),
        helper.make_node("Where", ["all_masked", "zeros", "p"], ["guarded"]),
        helper.make_node("Where", ["all_masked", "then", "g"], ["guarded_g"]),
        helper.make_node("Identity", ["guarded"], ["y"]),  # graph outputs are read by another op, as in an exported graph
        helper.make_node("Identity", ["guarded_g"], ["dy"]),
    ]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 3, 4, 4]) for name in ("s", "g")]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("y", "dy")]
    graph = helper.make_graph(nodes, "g", inputs, outputs, constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run_guarded(model: onnx.ModelProto, s: np.ndarray, g: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y", "dy"], {"s": s, "g": g})


def test_softmax_guards_are_dropped_with_their_condition_and_finite_scores_give_the_same_numbers():
    rng = np.random.default_rng(0)
    s, g = (rng.standard_normal((2, 3, 4, 4)).astype(np.float32) for _ in range(2))
    s[0, 1, :, 2:] = -10000.0  # a finite mask bias, as BERT's
    model = _guarded_softmax()
    before = _run_guarded(model, s, g)
    assert drop_softmax_guards(model) == 2
    assert [n.op_type for n in model.graph.node] == ["Softmax", "Identity", "Identity"]  # the condition, the zeros and both Wheres are gone
    assert [n.input[0] for n in model.graph.node[1:]] == ["p", "g"]
    assert [i.name for i in model.graph.initializer] == []
    after = _run_guarded(model, s, g)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])


def test_wheres_that_are_not_the_softmax_guard_are_left_alone():
    assert drop_softmax_guards(_guarded_softmax(compare_with=0.0)) == 0  # a condition other than "all -inf"
    model = _guarded_softmax(backward_then=1.0)  # the forward guard goes, a Where that does not select zeros stays
    assert drop_softmax_guards(model) == 1
    assert [n.op_type for n in model.graph.node].count("Where") == 1


def test_a_text_towers_vjp_loses_every_guard_and_keeps_its_outputs():
    """The tiny text recipe (finite mask bias, 3 attention blocks): 3 guards and their 3 backwards, same outputs and gradients."""
    from sealkit.compile.recipe import load_recipe

    tower = load_recipe(Path(__file__).parent / "recipes" / "tiny_text.py").towers[0]
    assert tower.finite_attention_bias
    args = tuple(spec.example for spec in tower.inputs)
    vjp = export_vjp(tower.module, args, [s.dims for s in tower.inputs], [True, False], [s.name for s in tower.inputs], "embedding", {0: "batch"})
    guarded = vjp.SerializeToString()
    assert drop_softmax_guards(vjp) == 6
    assert not any(n.op_type in ("Where", "Equal", "ReduceMax") for n in vjp.graph.node)
    rng = np.random.default_rng(0)
    mask = np.ones((3, 9), np.int64)
    mask[1, 4:] = 0
    feeds = {"token_embeddings": rng.standard_normal((3, 9, 64)).astype(np.float32), "attention_mask": mask, "grad_embedding": rng.standard_normal((3, 48)).astype(np.float32)}
    want = ort.InferenceSession(guarded, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = ort.InferenceSession(vjp.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
