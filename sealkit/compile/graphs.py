"""Compile a torch module to a plain-ONNX forward graph and a vector-Jacobian-product (VJP) graph.

The VJP path is the one verified in DEVELOPERS.md:
  torch.export (dynamic shapes) -> run_decompositions -> torch.func.vjp over ep.module()
  -> make_fx(symbolic) with a convolution_backward decomposition -> torch.onnx.export(dynamo=True).
Tracing runs under the MATH attention kernel so attention decomposes into plain ops.
Imports torch; only the owner's export path uses it.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import warnings
from collections.abc import Sequence

import onnx
import torch
import torch.nn.functional as F
from torch import nn
from torch._decomp import core_aten_decompositions
from torch.fx.experimental import _config as fx_config
from torch.fx.experimental.proxy_tensor import make_fx
from torch.nn.attention import SDPBackend, sdpa_kernel

from sealkit.compile.onnx_passes import compare_clip_outputs, fold_crops_into_convolutions
from sealkit.errors import ExportError

MAX_BATCH = 1 << 16


def _convolution_backward(grad_out, inp, weight, bias_sizes, stride, padding, dilation, transposed, output_padding, groups, mask):
    """Input gradient of a convolution (weights are frozen in a seal, so only that is ever requested).

    2-D convolutions with stride 1, and grouped (depthwise) ones, become a convolution with the
    flipped kernel; the rest (e.g. a ViT's patchify) a transposed convolution, which skips the
    zeros a strided dense kernel would multiply.
    """
    if transposed:
        raise NotImplementedError("the VJP of a transposed convolution is not supported")
    if mask[1] or mask[2]:
        raise NotImplementedError("weight gradients are never exported")
    grad_input = None
    if mask[0] and inp.dim() == 4 and (groups > 1 or all(s == 1 for s in stride)):
        grad_input = _conv2d_input_grad(grad_out, inp, weight, stride, padding, dilation, groups)
    if mask[0] and grad_input is None:
        spatial = inp.dim() - 2
        output_padding = []
        for i in range(spatial):
            kernel = weight.shape[2 + i]
            covered = (grad_out.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel - 1) + 1
            output_padding.append(inp.shape[2 + i] - covered)
        transpose = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[spatial]
        grad_input = transpose(grad_out, weight, None, stride, padding, output_padding, groups, dilation)
    return grad_input, None, None


def _dilate2d(x: torch.Tensor, stride: Sequence[int]) -> torch.Tensor:
    """Insert stride-1 zeros between neighbouring pixels: [N, C, H, W] -> [N, C, (H-1)sh+1, (W-1)sw+1].

    A depthwise 1x1 transposed convolution of ones with that stride computes exactly this (each
    output pixel is one input pixel times 1, or zero). onnxruntime runs it about 9x faster than the
    pad of a reshaped 6-D tensor used before (3.6 against 32 ms at [8, 96, 56, 56], 2 threads), which
    took a quarter of EfficientNet-Lite0's backward graph.
    """
    channels = x.shape[1]
    ones = torch.ones(channels, 1, 1, 1, dtype=x.dtype, device=x.device)
    return F.conv_transpose2d(x, ones, None, tuple(stride), 0, 0, channels)


def _conv2d_input_grad(grad_out, inp, weight, stride, padding, dilation, groups):
    """Input gradient of a 2-D convolution as a stride-1 convolution with the flipped, transposed kernel.

    onnxruntime's ConvTranspose is slow as the whole input gradient of grouped (depthwise) and 1x1
    convolutions, while its Conv has fast kernels for both; the stride becomes zeros inserted into
    grad_out (`_dilate2d`), the padding a pad or a crop.
    """
    c_out, c_in_per_group, kh, kw = weight.shape
    kernel = weight.reshape(groups, c_out // groups, c_in_per_group, kh, kw).transpose(1, 2).reshape(c_in_per_group * groups, c_out // groups, kh, kw)
    if kh > 1 or kw > 1:
        kernel = kernel.flip(-2, -1)
    grad = _dilate2d(grad_out, stride) if any(s > 1 for s in stride) else grad_out
    pads = []
    for i in (1, 0):  # F.pad lists the last axis first
        before = dilation[i] * (weight.shape[2 + i] - 1) - padding[i]
        after = inp.shape[2 + i] - grad.shape[2 + i] + padding[i]  # the output size decides the rest
        pads += [before, after]
    if any(p < 0 for p in pads):  # padding wider than the kernel: left to the transposed convolution
        return None
    if pads[0] == pads[1] and pads[2] == pads[3]:  # symmetric: the convolution pads, no extra copy
        return F.conv2d(grad, kernel, None, 1, (pads[2], pads[0]), dilation, groups)
    return F.conv2d(F.pad(grad, pads), kernel, None, 1, 0, dilation, groups)


def _hardtanh_backward(grad_output, inp, min_val, max_val):
    """ReLU6 and friends: a multiply by a float mask, which onnxruntime vectorises (its Where is slow)."""
    return grad_output * ((inp > min_val) & (inp < max_val)).to(grad_output.dtype)


def _decompositions() -> dict:
    table = dict(core_aten_decompositions())
    table[torch.ops.aten.convolution_backward.default] = _convolution_backward
    table[torch.ops.aten.hardtanh_backward.default] = _hardtanh_backward
    return table


class _Flat(nn.Module):
    """Wraps a traced function so torch.onnx.export sees an ordinary module."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def torch_dims(dims_per_input: Sequence[dict[int, str]], max_sequence: int) -> tuple[dict[int, torch.export.Dim], ...]:
    """Shared torch.export Dims for named dynamic axes ("batch", "sequence").

    The sequence axis is traced with min=3: slicing around prompt tokens makes torch guard against
    a length of 2, a guard that is spurious for the ONNX graph (tests check lengths 2 and up).
    """
    named = {
        "batch": torch.export.Dim("batch", min=1, max=MAX_BATCH),
        "sequence": torch.export.Dim("sequence", min=3, max=max_sequence),
    }
    return tuple({axis: named[name] for axis, name in dims.items()} for dims in dims_per_input)


def _dynamic_shapes(module: nn.Module, dims: Sequence[dict[int, str]], max_sequence: int):
    """torch.export wants one entry per forward parameter: a `*args` forward gets one tuple of all."""
    shapes = torch_dims(dims, max_sequence)
    parameters = inspect.signature(module.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return (shapes,)
    return shapes


@contextlib.contextmanager
def _quiet():
    """torch.onnx prints progress and warnings per export; the CLI shows its own progress instead.

    stderr too: on a failed trace torch.export prints the partial graph there, while the error itself
    reaches the user as one ExportError line.
    """
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "torch.fx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _failing_op(exc: BaseException) -> str:
    text = f"{exc}"
    match = re.search(r"(aten[.:]+[A-Za-z_0-9]+(?:\.[A-Za-z_0-9]+)?)", text)
    if match:
        return match.group(1)
    match = re.search(r"(?:operator|op|Op)[ :'\"`]+([A-Za-z_0-9.:]+)", text)
    return match.group(1) if match else "unknown op"


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None and exc.__cause__ is not exc:
        exc = exc.__cause__
    return exc


def _export_error(what: str, exc: BaseException) -> ExportError:
    root = _root_cause(exc)
    lines = [ln.strip() for ln in str(root).strip().splitlines() if ln.strip()]
    first = (lines or [type(root).__name__])[0][:240]
    op = _failing_op(root) if _failing_op(root) != "unknown op" else _failing_op(exc)
    return ExportError(f"{what} failed to export at {op}: {type(root).__name__}: {first}")


def _to_onnx(module: nn.Module, args: tuple, input_names: list[str], output_names: list[str], dynamic_shapes) -> onnx.ModelProto:
    program = torch.onnx.export(
        module,
        args,
        dynamo=True,
        input_names=input_names,
        output_names=output_names,
        dynamic_shapes=dynamic_shapes,
        optimize=True,
        verbose=False,
    )
    return program.model_proto


def export_forward(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    dims: Sequence[dict[int, str]],
    input_names: list[str],
    output_name: str,
    what: str = "tower",
    max_sequence: int = 256,
) -> onnx.ModelProto:
    """The forward graph: inputs -> output."""
    module = module.eval()
    try:
        with _quiet(), sdpa_kernel(SDPBackend.MATH), torch.no_grad():
            return _to_onnx(module, args, input_names, [output_name], _dynamic_shapes(module, dims, max_sequence))
    except Exception as exc:
        raise _export_error(f"{what} (forward graph)", exc) from None


def export_vjp(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    dims: Sequence[dict[int, str]],
    differentiable: Sequence[bool],
    input_names: list[str],
    output_name: str,
    output_dims: dict[int, str],
    what: str = "tower",
    max_sequence: int = 256,
) -> onnx.ModelProto:
    """The VJP graph: (inputs, grad_output) -> (output, grad of each differentiable input)."""
    module = module.eval()
    diff_positions = [i for i, d in enumerate(differentiable) if d]
    try:
        with _quiet(), sdpa_kernel(SDPBackend.MATH):
            program = torch.export.export(module, args, dynamic_shapes=_dynamic_shapes(module, dims, max_sequence)).run_decompositions()
            graph_module = program.module()

            def vjp(*flat: torch.Tensor):
                inputs, cotangent = list(flat[:-1]), flat[-1]

                def with_diff(*diff_args: torch.Tensor) -> torch.Tensor:
                    full = list(inputs)
                    for position, value in zip(diff_positions, diff_args):
                        full[position] = value
                    return graph_module(*full)

                output, pullback = torch.func.vjp(with_diff, *[inputs[i] for i in diff_positions])
                return (output, *pullback(cotangent))

            with torch.no_grad():
                example_out = module(*args)
            cotangent = torch.randn_like(example_out)
            # No duck shaping: a fixed axis that happens to equal the example batch (an entry
            # tensor's leading 2) must not be unified with the batch, or the batch gets fixed.
            with fx_config.patch(use_duck_shape=False):
                traced = make_fx(vjp, tracing_mode="symbolic", _allow_non_fake_inputs=True, decomposition_table=_decompositions())(*args, cotangent)
            names = list(input_names) + [f"grad_{output_name}"]
            outputs = [output_name] + [f"grad_{input_names[i]}" for i in diff_positions]
            model = _to_onnx(_Flat(traced), (*args, cotangent), names, outputs, _dynamic_shapes(_Flat(traced), [*dims, output_dims], max_sequence))
            fold_crops_into_convolutions(model)
            compare_clip_outputs(model)
            return model
    except ExportError:
        raise
    except Exception as exc:
        raise _export_error(f"{what} (VJP graph)", exc) from None
