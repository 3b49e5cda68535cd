"""The torch-free adapter core and the torch trainer agree: the pack's tensors are exactly the layout's,
the numpy maths equal the torch modules, and the runtime refuses an adapter that does not fit its layout.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import NAMES, permuted_colour_dataset
from torch_helpers import randomised

from sealkit.adapters import functional as F
from sealkit.adapters.config import AdapterConfig, TaskSpec
from sealkit.adapters.file import read_adapter_file, write_adapter_file
from sealkit.adapters.layout import LOGIT_SCALE, adapter_layout
from sealkit.errors import AdapterError
from sealkit.runtime.task import TaskRuntime
from sealkit.train.api import adapt
from sealkit.train.config import TrainConfig
from sealkit.train.modules import ImageInputAdapter, OutputAdapter, TextInputAdapter
from sealkit.train.pack import AdapterPack

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CLASSES = list(NAMES)
CASES = {
    "image-output-text-head": (AdapterConfig(method="output"), TaskSpec("classify", "image", "image", "text", "class", "text", CLASSES, ["{}"])),
    "image-dga-linear-head": (AdapterConfig(method="dga", image_width=8), TaskSpec("classify", "image", "image", head="linear", class_names=CLASSES)),
    "text-lga-prompts": (AdapterConfig(method="lga", text_prompts=3, output_hidden=0), TaskSpec("classify", "text", "text", "text", "class", "text", CLASSES, ["{}"])),
    "pair-lga-retrieve": (AdapterConfig(method="lga", output_hidden=24), TaskSpec("retrieve", "image", "image", "text", "text")),
}


def _file_shapes(state: dict) -> dict:
    return {name: tuple(np.atleast_1d(value.detach().numpy()).shape) for name, value in state.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_torch_pack_has_exactly_the_layouts_tensors(pair_seal, case):
    config, task = CASES[case]
    pack = AdapterPack(pair_seal, config, task)
    layout = adapter_layout(config, task, pair_seal.manifest.towers)
    assert _file_shapes(pack.state_dict()) == layout.shapes(with_class_embeddings=False)
    assert pack.out_dim == layout.out_dim


@pytest.mark.parametrize("dilations", [(1,), (1, 2), (2, 3), (1, 2, 4)])
def test_numpy_image_input_adapter_equals_torch(dilations):
    """The plain adapter (dilation 1) and the multi-scale ones (several dilated branches)."""
    module = ImageInputAdapter(3, 5, dilations)
    params = randomised(module, 0)
    pixels = np.random.default_rng(0).normal(size=(2, 3, 9, 7)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(F.image_input(params, pixels), expected, rtol=1e-4, atol=1e-5)


def test_numpy_text_input_adapter_with_prompts_equals_torch():
    module = TextInputAdapter(8, 4, prompts=2)
    params = randomised(module, 1)
    embeddings = np.random.default_rng(1).normal(size=(3, 5, 8)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], np.int64)
    with torch.no_grad():
        expected, expected_mask = module(torch.from_numpy(embeddings), torch.from_numpy(mask))
    got, got_mask = F.text_input(params, embeddings, mask)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got_mask, expected_mask.numpy())


@pytest.mark.parametrize("dims", [(6, 6, 4), (6, 3, 4), (6, 3, 0)])
def test_numpy_output_adapter_equals_torch(dims):
    module = OutputAdapter(*dims)
    params = randomised(module, 2)
    features = np.random.default_rng(2).normal(size=(4, dims[0])).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(F.output(params, features), expected, rtol=1e-4, atol=1e-5)


# --- the caller's config decides the method (issue: adapter_config=lga used to train dga) ---------


def test_adapter_config_method_is_what_trains(pair_seal, tmp_path):
    config = AdapterConfig(method="lga")
    data = permuted_colour_dataset(1, seed=0)
    result = adapt(pair_seal, data, data, tmp_path / "lga.adapter", adapter_config=config, config=TrainConfig(steps=1, batch=4), progress=False, zero_shot=False)
    file = read_adapter_file(result.adapter_path)
    assert file.meta["method"] == "lga" and config.method == "lga"
    assert any(".entries." in name for name in file.tensors)


def test_a_method_contradicting_the_config_is_an_error(pair_seal, tmp_path):
    data = permuted_colour_dataset(1, seed=0)
    with pytest.raises(AdapterError, match="method 'dga' contradicts adapter_config.method 'lga'"):
        adapt(pair_seal, data, data, tmp_path / "x.adapter", method="dga", adapter_config=AdapterConfig(method="lga"), progress=False)


# --- the runtime validates an adapter against its layout ------------------------------------------


@pytest.fixture(scope="module")
def trained(pair_seal, tmp_path_factory):
    out = tmp_path_factory.mktemp("core") / "colours.adapter"
    data = permuted_colour_dataset(1, seed=0)
    adapt(pair_seal, data, data, out, method="dga", config=TrainConfig(steps=1, batch=4), progress=False, zero_shot=False)
    return read_adapter_file(out)


def _rewritten(trained, tmp_path, change) -> str:
    tensors = dict(trained.tensors)
    change(tensors)
    return write_adapter_file(tmp_path / "changed.adapter", trained.meta, tensors)


def _first(tensors: dict, part: str) -> str:
    return next(name for name in sorted(tensors) if part in name)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.pop(_first(t, "input.prompt")), r"does not match its own configuration \(missing \['towers.image.input.prompt'\]\)"),
        (lambda t: t.update(extra=np.zeros(2, np.float32)), r"unexpected \['extra'\]"),
        (lambda t: t.update({_first(t, "output.up.weight"): np.zeros((1, 1), np.float32)}), r"tensor towers\.\w+\.output\.up\.weight has shape \[1, 1\], expected"),
        (lambda t: t.update({LOGIT_SCALE: np.array([np.nan], np.float32)}), r"logit_scale holds NaN"),
        (lambda t: t.update({_first(t, "input.prompt"): t[_first(t, "input.prompt")].astype(np.int32)}), r"is int32, expected floating point"),
    ],
    ids=["missing", "extra", "shape", "nan", "dtype"],
)
def test_the_runtime_refuses_an_adapter_that_does_not_fit_its_layout(pair_seal, trained, tmp_path, change, message):
    TaskRuntime(pair_seal, trained)  # the untouched adapter loads
    with pytest.raises(AdapterError, match=message) as info:
        TaskRuntime(pair_seal, _rewritten(trained, tmp_path, change))
    assert "\n" not in str(info.value)


def test_image_input_adapter_keeps_only_pixel_sized_tensors_for_backward_and_gets_the_plain_gradients():
    """The hidden layer is recomputed in the backward (memory), with the gradients of the plain computation."""
    module = ImageInputAdapter(3, 8)
    randomised(module, 2)
    pixels = torch.randn(2, 3, 9, 7, generator=torch.Generator().manual_seed(3), requires_grad=True)
    saved: list[int] = []

    def pack_hook(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda tensor: tensor):
        out = module(pixels)
    assert saved and max(saved) <= pixels.numel()  # no [2, 8, 9, 7] hidden activation kept
    out.square().sum().backward()
    got = [pixels.grad.clone()] + [p.grad.clone() for p in module.parameters()]

    pixels.grad = None
    module.zero_grad()
    plain = pixels + module.conv_out(torch.nn.functional.gelu(module.conv_in(pixels), approximate="tanh"))
    plain.square().sum().backward()
    expected = [pixels.grad] + [p.grad for p in module.parameters()]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
    assert out.is_contiguous()
