"""The adapters' maths in numpy: what the deployed runtime runs instead of the torch modules.

Each function takes one part's tensors (names as in layout.py, prefix removed) and reproduces the
torch module of sealkit/train/modules.py; GELU is the tanh form on both sides. A test checks the
two agree on random weights. Never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sealkit.adapters.layout import branch_suffix

Params = Mapping[str, np.ndarray]


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (what the torch adapters use)."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return x @ weight.T + bias


def conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, dilation: int = 1) -> np.ndarray:
    """A 3x3, stride 1 convolution with `dilation` and padding `dilation` (same size): [N,C,H,W] -> [N,O,H,W]."""
    n, c, h, w = x.shape
    span = 2 * dilation + 1  # the taps sit at offsets -dilation, 0, +dilation
    padded = np.pad(x, ((0, 0), (0, 0), (dilation, dilation), (dilation, dilation)))
    windows = sliding_window_view(padded, (span, span), axis=(2, 3))[..., ::dilation, ::dilation]  # [N, C, H, W, 3, 3]
    columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)
    out = columns @ weight.reshape(weight.shape[0], -1).T + bias
    return out.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


def image_input(params: Params, pixels: np.ndarray) -> np.ndarray:
    """pixels + the sum over branches of conv_out(gelu(conv_in(pixels))) [+ prompt]; the identity when the adapter has no input part.

    The branches are the dilations named in the tensors: conv_in/conv_out (dilation 1), conv_in_d2/conv_out_d2 (2), ...
    """
    if not params:
        return pixels
    out = pixels + params["prompt"] if "prompt" in params else pixels
    for dilation in image_dilations(params):
        suffix = branch_suffix(dilation)
        hidden = gelu(conv3x3(pixels, params[f"conv_in{suffix}.weight"], params[f"conv_in{suffix}.bias"], dilation))
        out = out + conv3x3(hidden, params[f"conv_out{suffix}.weight"], params[f"conv_out{suffix}.bias"], dilation)
    return out.astype(np.float32)


def image_dilations(params: Params) -> list[int]:
    """The dilations of an image input adapter's branches, read from its tensor names (checked against the layout on load)."""
    dilations = []
    for name in params:
        if name.startswith("conv_in") and name.endswith(".weight"):
            suffix = name[len("conv_in") : -len(".weight")]
            dilations.append(int(suffix[2:]) if suffix else 1)
    return sorted(dilations)


def token_context(embeddings: np.ndarray, mask: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A depthwise convolution across tokens ([N,L,D], weight [D,1,K], padding K//2), zero at padding, blind to padding."""
    kernel = weight.shape[-1]
    keep = mask.astype(embeddings.dtype)[..., None]
    padded = np.pad(embeddings * keep, ((0, 0), (kernel // 2, kernel // 2), (0, 0)))
    windows = sliding_window_view(padded, kernel, axis=1)  # [N, L, D, K]
    return np.einsum("nldk,dk->nld", windows, weight[:, 0, :]) * keep


def text_input(params: Params, embeddings: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """e + up(gelu(down(e))) per token [+ a masked depthwise conv across tokens], then prompt tokens after the first token (mask extended)."""
    if not params:
        return embeddings, mask
    hidden = gelu(linear(embeddings, params["down.weight"], params["down.bias"]))
    x = embeddings + linear(hidden, params["up.weight"], params["up.bias"])
    if "context.weight" in params:
        x = x + token_context(embeddings, mask, params["context.weight"])
    x = x.astype(np.float32)
    if "prompts" in params:
        prompts = np.broadcast_to(params["prompts"], (x.shape[0],) + params["prompts"].shape)
        x = np.concatenate([x[:, :1], prompts, x[:, 1:]], axis=1).astype(np.float32)
        ones = np.ones((mask.shape[0], prompts.shape[1]), dtype=mask.dtype)
        mask = np.concatenate([mask[:, :1], ones, mask[:, 1:]], axis=1)
    return x, mask


def output(params: Params, features: np.ndarray) -> np.ndarray:
    """[proj](features) + up(gelu(down(features)))."""
    y = linear(features, params["proj.weight"], params["proj.bias"]) if "proj.weight" in params else features
    if "down.weight" in params:
        y = y + linear(gelu(linear(features, params["down.weight"], params["down.bias"])), params["up.weight"], params["up.bias"])
    return y.astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
