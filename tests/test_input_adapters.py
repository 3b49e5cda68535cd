"""The multi-scale image input adapter (dilated conv branches) and the text input adapter that sees its
neighbours (a masked depthwise convolution across tokens): the torch pack, the layout and the numpy
runtime agree, padding never leaks into real tokens, older adapter files load unchanged, and
`sealkit adapt` takes both as flags.
"""

from __future__ import annotations

import json

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
from sealkit.adapters.summary import describe_adapter, input_adapters
from sealkit.cli import app
from sealkit.errors import AdapterError, CheckpointError, SealkitError
from sealkit.runtime.task import TaskRuntime
from sealkit.train.api import adapt
from sealkit.train.loop import TrainConfig
from sealkit.train.modules import ImageInputAdapter, TextInputAdapter
from sealkit.train.pack import AdapterPack

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CLASSES = list(NAMES)
CASES = {
    "image-dga-multiscale": (AdapterConfig(method="dga", image_width=8, image_dilations=(1, 2)), TaskSpec("classify", "image", "image", head="linear", class_names=CLASSES)),
    "image-dga-dilated-only": (AdapterConfig(method="dga", image_width=16, image_dilations=(3, 2)), TaskSpec("classify", "image", "image", "text", "class", "text", CLASSES, ["{}"])),
    "text-dga-context-prompts": (AdapterConfig(method="dga", text_context=3, text_prompts=2), TaskSpec("classify", "text", "text", "text", "class", "text", CLASSES, ["{}"])),
    "pair-lga-both": (AdapterConfig(method="lga", image_width=16, image_prompt=False, image_dilations=(1, 2, 4), text_context=5, output_hidden=8), TaskSpec("retrieve", "image", "image", "text", "text")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_torch_pack_has_exactly_the_layouts_tensors(pair_seal, case):
    config, task = CASES[case]
    pack = AdapterPack(pair_seal, config, task)
    shapes = {name: tuple(np.atleast_1d(value.numpy()).shape) for name, value in pack.state_dict().items()}
    assert shapes == adapter_layout(config, task, pair_seal.manifest.towers).shapes(with_class_embeddings=False)


def test_the_layout_names_each_branch_and_the_context_kernel(pair_seal):
    config, task = CASES["pair-lga-both"]
    shapes = adapter_layout(config, task, pair_seal.manifest.towers).shapes()
    image = sorted(name.removeprefix("towers.image.input.") for name in shapes if name.startswith("towers.image.input.") and name.endswith("weight"))
    assert image == ["conv_in.weight", "conv_in_d2.weight", "conv_in_d4.weight", "conv_out.weight", "conv_out_d2.weight", "conv_out_d4.weight"]
    assert shapes["towers.text.input.context.weight"] == (64, 1, 5)


def test_a_dilated_branch_sees_further_than_the_plain_adapter():
    """A pixel 4 away changes the output only through the dilation-2 branch (the plain branch sees 2 pixels away at most)."""
    params = randomised(ImageInputAdapter(3, 4, (1, 2)), 1)
    pixels = np.zeros((1, 3, 11, 11), np.float32)
    poked = pixels.copy()
    poked[0, :, 5, 9] = 1.0
    plain = {k: v for k, v in params.items() if "_d2" not in k}
    assert np.allclose(F.image_input(plain, poked)[0, :, 5, 5], F.image_input(plain, pixels)[0, :, 5, 5])
    assert not np.allclose(F.image_input(params, poked)[0, :, 5, 5], F.image_input(params, pixels)[0, :, 5, 5])


MASK = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], np.int64)


@pytest.mark.parametrize("kernel, prompts", [(3, 0), (5, 2)])
def test_numpy_context_text_adapter_equals_torch(kernel, prompts):
    module = TextInputAdapter(8, 4, prompts=prompts, context=kernel)
    params = randomised(module, 2)
    embeddings = np.random.default_rng(2).normal(size=(3, 6, 8)).astype(np.float32)
    with torch.no_grad():
        expected, expected_mask = module(torch.from_numpy(embeddings), torch.from_numpy(MASK))
    got, got_mask = F.text_input(params, embeddings, MASK)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got_mask, expected_mask.numpy())


def test_the_context_mixes_neighbours_but_padding_never_leaks_into_real_tokens():
    params = randomised(TextInputAdapter(8, 4, context=5), 3)
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(3, 6, 8)).astype(np.float32)
    other_padding = np.where(MASK[..., None] == 1, embeddings, rng.normal(size=embeddings.shape) * 100).astype(np.float32)
    real = MASK == 1
    np.testing.assert_array_equal(F.text_input(params, embeddings, MASK)[0][real], F.text_input(params, other_padding, MASK)[0][real])
    neighbour = embeddings.copy()
    neighbour[1, 3] += 1.0  # a real token two places from token 1 changes it through the context kernel
    changed = F.text_input(params, neighbour, MASK)[0][1] != F.text_input(params, embeddings, MASK)[0][1]
    assert changed[1].any() and not changed[0].any()  # kernel 5 reaches 2 tokens, not 3


def test_new_adapters_start_as_the_identity():
    pixels = torch.randn(2, 3, 8, 8)
    assert torch.equal(ImageInputAdapter(3, 4, (1, 2))(pixels), pixels)
    embeddings, mask = torch.randn(2, 5, 8), torch.from_numpy(MASK[:2, :5])
    assert torch.equal(TextInputAdapter(8, 4, context=3)(embeddings, mask)[0], embeddings)


# --- configuration: old files, JSON round trip, bad values ------------------------------------------


def test_an_old_config_without_the_new_fields_means_the_old_adapters():
    old = {"method": "dga", "image_width": 16, "text_rank": 32, "text_prompts": 0, "output_hidden": -1, "shared_dim": 128, "prompt_init_std": 0.02}
    config = AdapterConfig.from_dict(old)
    assert config.image_dilations == (1,) and config.text_context == 0
    new = AdapterConfig(method="dga", image_width=16, image_dilations=[2, 1], text_context=3)
    assert new.image_dilations == (1, 2)  # JSON gives a list; the config keeps a sorted tuple
    assert AdapterConfig.from_dict(json.loads(json.dumps(new.to_dict()))) == new


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"image_dilations": []}, "non-empty list of positive integers"),
        ({"image_dilations": [0]}, "non-empty list of positive integers"),
        ({"image_dilations": "1,2"}, "non-empty list of positive integers"),
        ({"image_dilations": [1, 1]}, "lists a dilation twice"),
        ({"text_context": 2}, "odd kernel size of 3 or more"),
        ({"text_context": 1}, "odd kernel size of 3 or more"),
        ({"text_context": -3}, "odd kernel size of 3 or more"),
    ],
)
def test_bad_new_fields_are_adapter_errors(fields, message):
    with pytest.raises(AdapterError, match=message):
        AdapterConfig(**fields)


@pytest.fixture(scope="module")
def plain_adapter(pair_seal, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "colours.adapter"
    data = permuted_colour_dataset(1, seed=0)
    conv = AdapterConfig(method="dga", image_width=16, image_prompt=False)  # the image adapter before the prompt
    adapt(pair_seal, data, data, out, adapter_config=conv, config=TrainConfig(steps=2, batch=4, lr=2e-2), progress=False, zero_shot=False)
    return read_adapter_file(out)


def test_an_adapter_file_written_before_the_new_fields_loads_and_predicts_as_before(pair_seal, plain_adapter, tmp_path):
    meta = dict(plain_adapter.meta)
    meta["config"] = {k: v for k, v in meta["config"].items() if k not in ("image_dilations", "text_context", "image_prompt")}
    old = read_adapter_file(write_adapter_file(tmp_path / "old.adapter", meta, dict(plain_adapter.tensors)))
    assert "image_dilations" not in old.meta["config"]
    images = [e.image for e in permuted_colour_dataset(1, seed=5).examples]
    np.testing.assert_array_equal(TaskRuntime(pair_seal, old).embed(images, "image"), TaskRuntime(pair_seal, plain_adapter).embed(images, "image"))


# --- the CLI flags -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, phrase",
    [
        (["--image-dilations", "1,x"], "--image-dilations takes comma-separated integers"),
        (["--image-dilations", "0,1"], "--image-dilations needs distinct positive integers"),
        (["--image-dilations", "2,2"], "--image-dilations needs distinct positive integers"),
        (["--text-context", "4"], "--text-context must be 0 (none) or an odd kernel size"),
        (["--text-context", "1"], "--text-context must be 0 (none) or an odd kernel size"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_input_adapter_flags_are_one_line_errors_before_any_work(flags, phrase, tmp_path):
    result = CliRunner().invoke(app, ["adapt", str(tmp_path / "no.seal"), "--train", str(tmp_path / "no.csv"), "--out", str(tmp_path / "x.adapter"), *flags])
    assert isinstance(result.exception, SealkitError) and phrase in str(result.exception), result.exception


def test_the_flags_are_described_in_help():
    text = " ".join(CliRunner().invoke(app, ["adapt", "--help"]).output.split())
    assert "--image-dilations" in text and "sees 9x9" in text
    assert "--text-context" in text and "depthwise convolution across tokens" in text


def test_resuming_with_other_adapter_sizes_is_a_checkpoint_error(pair_seal, tmp_path):
    """The checkpoint's tensors would not fit the new adapters: refused by name, not an internal error."""
    data = permuted_colour_dataset(1, seed=0)
    out = tmp_path / "x.adapter"
    adapt(pair_seal, data, data, out, method="dga", config=TrainConfig(steps=1, batch=4), progress=False, zero_shot=False)
    with pytest.raises(CheckpointError, match=r"from a different run \(adapter differ\)"):
        adapt(pair_seal, data, data, out, adapter_config=AdapterConfig(method="dga", image_width=16, image_dilations=(1, 2)), config=TrainConfig(steps=1, batch=4), resume=True, progress=False, zero_shot=False)


def test_inspect_names_the_input_adapters(plain_adapter, tmp_path):
    assert input_adapters(AdapterConfig(method="output")) is None
    described = input_adapters(AdapterConfig(method="lga", image_width=24, image_prompt=False, image_dilations=(1, 2), text_context=5, text_prompts=2))
    assert described == "image: residual 3x3 conv, 24 channels, dilation 1, 2 (multi-scale); text: rank-32 bottleneck, depthwise conv across tokens of kernel 5, 2 prompt token(s)"
    assert describe_adapter(plain_adapter)["input_adapters"] == "image: residual 3x3 conv, 16 channels, dilation 1; text: rank-32 bottleneck, per token"
    printed = " ".join(CliRunner().invoke(app, ["inspect", str(plain_adapter.path)]).output.split())
    assert "input adapters: image: residual 3x3 conv, 16 channels, dilation 1;" in printed
