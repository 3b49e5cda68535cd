"""The image prompt (dga's default image input adapter): one learnable pattern the size of the seal's input, added to
every image. The torch module, the layout and the numpy runtime agree; it starts as the identity; it
trains through the seal and the deploy runtime applies it; files written before it keep their conv net.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import NAMES, permuted_colour_dataset
from torch_helpers import randomised
from typer.testing import CliRunner

from sealkit.adapters import functional as F
from sealkit.adapters.config import AdapterConfig, TaskSpec
from sealkit.adapters.file import read_adapter_file, write_adapter_file
from sealkit.adapters.layout import adapter_layout
from sealkit.adapters.summary import input_adapters
from sealkit.cli import app
from sealkit.errors import AdapterError, SealkitError
from sealkit.runtime.task import TaskRuntime
from sealkit.train.api import adapt
from sealkit.train.loop import TrainConfig
from sealkit.train.modules import ImageInputAdapter
from sealkit.train.pack import AdapterPack

pytestmark = pytest.mark.usefixtures("torch_one_thread")

LINEAR = TaskSpec("classify", "image", "image", head="linear", class_names=list(NAMES))


@pytest.mark.parametrize("width", [0, 4])
def test_numpy_prompt_adapter_equals_torch(width):
    module = ImageInputAdapter(3, width, (1,), prompt_size=(6, 7))
    params = randomised(module, width)
    assert ("conv_in.weight" in params) == (width > 0) and params["prompt"].shape == (3, 6, 7)
    pixels = np.random.default_rng(0).normal(size=(2, 3, 6, 7)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(F.image_input(params, pixels), expected, rtol=1e-5, atol=1e-5)
    if width == 0:  # the prompt alone: every image moves by the same pattern
        np.testing.assert_allclose(F.image_input(params, pixels) - pixels, np.broadcast_to(params["prompt"], pixels.shape), atol=1e-6)


def test_the_prompt_starts_as_the_identity():
    pixels = torch.randn(2, 3, 5, 5)
    assert torch.equal(ImageInputAdapter(3, 0, (1,), prompt_size=(5, 5))(pixels), pixels)
    assert torch.equal(ImageInputAdapter(3, 4, (1, 2), prompt_size=(5, 5))(pixels), pixels)


@pytest.mark.parametrize("config", [AdapterConfig(method="dga", image_width=16), AdapterConfig(method="lga", image_prompt=True)], ids=["with-conv", "alone"])
def test_the_pack_has_exactly_the_layouts_tensors(pair_seal, config):
    pack = AdapterPack(pair_seal, config, LINEAR)
    shapes = {name: tuple(np.atleast_1d(value.numpy()).shape) for name, value in pack.state_dict().items()}
    layout = adapter_layout(config, LINEAR, pair_seal.manifest.towers).shapes(with_class_embeddings=False)
    assert shapes == layout
    size = tuple(pair_seal.manifest.towers["image"].inputs[0].shape[1:])
    assert layout["towers.image.input.prompt"] == size
    assert ("towers.image.input.conv_in.weight" in layout) == (config.image_width > 0)


def test_the_prompt_trains_through_the_seal_and_the_runtime_applies_it(pair_seal, tmp_path):
    data = permuted_colour_dataset(1, seed=0)
    out = tmp_path / "prompt.adapter"
    config = AdapterConfig(method="dga")  # the default image adapter: the prompt alone
    adapt(pair_seal, data, data, out, method="dga", task="classify", head="linear", adapter_config=config, config=TrainConfig(steps=3, batch=4, lr=5e-2, probe=False), progress=False, zero_shot=False)
    trained = read_adapter_file(out)
    prompt = trained.tensors["towers.image.input.prompt"]
    assert np.abs(prompt).max() > 0  # the gradient reached it through the seal's VJP
    assert trained.meta["config"]["image_prompt"] is True
    zeroed = read_adapter_file(write_adapter_file(tmp_path / "zeroed.adapter", dict(trained.meta), {**trained.tensors, "towers.image.input.prompt": np.zeros_like(prompt)}))
    images = [e.image for e in permuted_colour_dataset(1, seed=5).examples]
    assert not np.allclose(TaskRuntime(pair_seal, trained).embed(images, "image"), TaskRuntime(pair_seal, zeroed).embed(images, "image"))


def test_bad_prompt_settings_are_adapter_errors():
    with pytest.raises(AdapterError, match="image_width 0 leaves the image input adapter empty"):
        AdapterConfig(method="dga", image_width=0, image_prompt=False)
    with pytest.raises(AdapterError, match="image_prompt must be true or false"):
        AdapterConfig(method="dga", image_prompt="yes")
    with pytest.raises(AdapterError, match=r"image_dilations \[1, 2\] shape a conv net, and image_width 0 has none"):
        AdapterConfig(method="dga", image_dilations=(1, 2))
    with pytest.raises(AdapterError, match="image_width must be a positive integer"):
        AdapterConfig(method="dga", image_width=-1, image_prompt=True)
    old = AdapterConfig.from_dict({"method": "dga"})  # a file written before the prompt: the conv net it was trained with
    assert (old.image_prompt, old.image_width) == (False, 16)
    defaults = {method: (AdapterConfig(method=method).image_prompt, AdapterConfig(method=method).image_width) for method in ("dga", "lga")}
    assert defaults == {"dga": (True, 0), "lga": (False, 16)}  # by measurement on mnist (docs/results.md)
    assert (AdapterConfig(method="dga", image_prompt=False).image_width, AdapterConfig(method="lga", image_prompt=True).image_width) == (16, 0)
    stored = AdapterConfig(method="lga", image_prompt=True).to_dict()
    assert (stored["image_prompt"], stored["image_width"]) == (True, 0)  # files hold the resolved values


def test_the_cli_refuses_an_empty_image_adapter_and_describes_the_flags(tmp_path):
    result = CliRunner().invoke(app, ["adapt", str(tmp_path / "no.seal"), "--train", str(tmp_path / "no.csv"), "--out", str(tmp_path / "x.adapter"), "--no-image-prompt", "--image-width", "0"])
    assert isinstance(result.exception, SealkitError) and "image_width 0 leaves the image input adapter empty" in str(result.exception), result.exception
    text = " ".join(CliRunner().invoke(app, ["adapt", "--help"]).output.split())
    assert "--image-prompt" in text and "--no-image-prompt" in text and "visual prompt" in text
    result = CliRunner().invoke(app, ["adapt", str(tmp_path / "no.seal"), "--train", str(tmp_path / "no.csv"), "--out", str(tmp_path / "x.adapter"), "--image-dilations", "1,2"])
    assert isinstance(result.exception, SealkitError) and "give a width too (--image-width 16)" in str(result.exception), result.exception


def test_inspect_names_the_prompt():
    assert input_adapters(AdapterConfig(method="dga", image_width=0, image_prompt=True)).startswith("image: no conv, a learnable prompt pattern;")
    assert input_adapters(AdapterConfig(method="dga", image_width=16)).startswith("image: residual 3x3 conv, 16 channels, dilation 1, a learnable prompt pattern;")
