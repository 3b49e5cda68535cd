"""Fold inference-mode BatchNorm into the preceding convolution before sealing.

The ONNX optimizer folds BatchNorm into the forward graph's convolutions but not into the VJP
graph's, so without this the two graphs would carry different copies of every conv weight.
Folding first makes both graphs share one set of weights and drops BatchNorm from the VJP.
Imports torch.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """For each (conv path, batchnorm path), fold the BatchNorm into the conv and make it Identity.

    The BatchNorm module is replaced by nn.Identity, so an entry point declared on its path still
    sees the same (now folded) output.
    """
    model.eval()
    modules = dict(model.named_modules())
    for conv_path, bn_path in pairs:
        conv, bn = modules[conv_path], modules[bn_path]
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(f"cannot fold {bn_path} into {conv_path}: expected Conv2d and BatchNorm2d")
        _set(model, conv_path, fuse_conv_bn_eval(conv, bn))
        _set(model, bn_path, nn.Identity())
    return model


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module)
