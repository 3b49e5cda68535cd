"""The adapters' maths in numpy: what the deployed runtime runs instead of the torch modules.

Each function takes one part's tensors (names as in layout.py, prefix removed) and reproduces the
torch module of sealkit/train/modules.py; GELU is the tanh form on both sides. A test checks the
two agree on random weights. Never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Params = Mapping[str, np.ndarray]


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (what the torch adapters use)."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return x @ weight.T + bias


def conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """A 3x3, stride 1, padding 1 convolution: [N,C,H,W] -> [N,O,H,W]."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = sliding_window_view(padded, (3, 3), axis=(2, 3))  # [N, C, H, W, 3, 3]
    columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * 9)
    out = columns @ weight.reshape(weight.shape[0], -1).T + bias
    return out.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


def image_input(params: Params, pixels: np.ndarray) -> np.ndarray:
    """pixels + conv_out(gelu(conv_in(pixels))); the identity when the adapter has no input part."""
    if not params:
        return pixels
    hidden = gelu(conv3x3(pixels, params["conv_in.weight"], params["conv_in.bias"]))
    return (pixels + conv3x3(hidden, params["conv_out.weight"], params["conv_out.bias"])).astype(np.float32)


def text_input(params: Params, embeddings: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """e + up(gelu(down(e))) per token, then prompt tokens after the first token (mask extended)."""
    if not params:
        return embeddings, mask
    hidden = gelu(linear(embeddings, params["down.weight"], params["down.bias"]))
    x = (embeddings + linear(hidden, params["up.weight"], params["up.bias"])).astype(np.float32)
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
