"""The deployed form of an adapter: the torch-free TaskRuntime reproduces the trained torch pack, and
the adapter file is small, self-describing and bound to its seal.
"""

from __future__ import annotations

import pytest
import torch
from synthetic import NAMES, permuted_colour_dataset, permuted_colour_texts

import sealkit
from sealkit.adapters.config import AdapterConfig
from sealkit.adapters.file import read_adapter_file
from sealkit.adapters.layout import CLASS_EMBEDDINGS
from sealkit.compile.check import relative_error
from sealkit.errors import AdapterMismatchError
from sealkit.runtime.task import TaskRuntime
from sealkit.train.api import adapt
from sealkit.train.loop import TrainConfig
from sealkit.train.objectives import make_objective
from sealkit.train.saving import load_adapter

# probe=False: the start is the untrained head, so the kept adapter is a trained one and the parity
# covers trained input adapters (a fitted start can itself be the best on these tiny sets)
CONFIG = TrainConfig(steps=8, batch=12, lr=2e-2, seed=0, probe=False)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def image_adapter(pair_seal, tmp_path_factory):
    """An image classifier (text head) trained with dga: the default image input adapter (the prompt) + output adapters."""
    out = tmp_path_factory.mktemp("image") / "colours.adapter"
    train, val = permuted_colour_dataset(3, seed=1), permuted_colour_dataset(2, seed=2)
    adapt(pair_seal, train, val, out, method="dga", task="classify", config=CONFIG, progress=False)
    return out


@pytest.fixture(scope="module")
def text_adapter(pair_seal, tmp_path_factory):
    """A text classifier (text head) trained with lga and two learnable prompt tokens per text."""
    out = tmp_path_factory.mktemp("text") / "words.adapter"
    train, val = permuted_colour_texts(3, seed=1), permuted_colour_texts(2, seed=2)
    adapt(pair_seal, train, val, out, task="classify", config=CONFIG, adapter_config=AdapterConfig(method="lga", text_prompts=2), progress=False)
    return out


def _torch_side(seal, adapter, items):
    """Embeddings, class logits and labels from the torch pack rebuilt from the adapter file."""
    pack, _ = load_adapter(adapter, seal)
    pack.eval()
    task = make_objective(seal, pack.task)
    with torch.no_grad():
        embeddings = task.embed(pack, pack.task.query_tower, items)
        logits = task.logits(pack, embeddings, task.class_embeddings(pack))
    labels = [pack.task.class_names[i] for i in logits.argmax(dim=-1).tolist()]
    return pack, embeddings.numpy(), logits.numpy(), labels


def _check_parity(seal, adapter, items, modality):
    pack, expected, expected_logits, expected_labels = _torch_side(seal, adapter, items)
    runtime = TaskRuntime(seal, adapter)
    got = runtime.embed(items, modality)
    assert got.shape == expected.shape
    assert relative_error(got, expected) < 1e-5
    assert relative_error(runtime.class_logits(got), expected_logits) < 1e-5
    predictions = runtime.classify(items, modality, top_k=2)
    assert [p[0].label for p in predictions] == expected_labels
    assert all(len(p) == 2 and p[0].score >= p[1].score for p in predictions)
    return pack, runtime


def test_the_numpy_runtime_reproduces_an_image_dga_adapter(pair_seal, image_adapter):
    images = [e.image for e in permuted_colour_dataset(2, seed=7).examples]
    pack, runtime = _check_parity(pair_seal, image_adapter, images, "image")
    assert runtime.method == "dga"
    # the input adapter was trained (the prompt starts at zero), so the parity covers it; the conv net's parity: the multi-scale test below
    assert float(pack.towers["image"].input.prompt.detach().abs().max()) > 0


def test_the_numpy_runtime_reproduces_a_text_lga_adapter_with_prompt_tokens(pair_seal, text_adapter):
    texts = [e.text for e in permuted_colour_texts(2, seed=7).examples] + ["a photo of a dog", "red"]
    pack, runtime = _check_parity(pair_seal, text_adapter, texts, "text")
    assert runtime.method == "lga"
    adapters = pack.towers["text"]
    assert adapters.input.prompts.shape == (2, 64) and len(adapters.entries) == len(pair_seal.manifest.towers["text"].entry_points) > 0
    assert float(adapters.input.up.weight.detach().abs().max()) > 0
    assert any(float(p.detach().abs().max()) > 0 for name, p in adapters.entries.items() if p.dim() == 1)  # the add delta moved
    # the runtime's class embeddings are the ones precomputed at save time; they match the pack's
    task = make_objective(pair_seal, pack.task)
    with torch.no_grad():
        classes = task.class_embeddings(pack).numpy()
    assert relative_error(runtime.tensors[CLASS_EMBEDDINGS], classes) < 1e-5


@pytest.fixture(scope="module")
def multiscale_adapter(pair_seal, tmp_path_factory):
    """An image classifier trained with dga through a multi-scale input adapter (dilations 1 and 2)."""
    out = tmp_path_factory.mktemp("multiscale") / "colours.adapter"
    train, val = permuted_colour_dataset(3, seed=1), permuted_colour_dataset(2, seed=2)
    adapt(pair_seal, train, val, out, task="classify", config=CONFIG, adapter_config=AdapterConfig(method="dga", image_width=8, image_dilations=(1, 2)), progress=False)
    return out


@pytest.fixture(scope="module")
def context_adapter(pair_seal, tmp_path_factory):
    """A text classifier trained with dga, a depthwise convolution of kernel 3 across tokens and one prompt token."""
    out = tmp_path_factory.mktemp("context") / "words.adapter"
    train, val = permuted_colour_texts(3, seed=1), permuted_colour_texts(2, seed=2)
    adapt(pair_seal, train, val, out, task="classify", config=CONFIG, adapter_config=AdapterConfig(method="dga", text_context=3, text_prompts=1), progress=False)
    return out


def test_the_numpy_runtime_reproduces_a_multiscale_image_adapter(pair_seal, multiscale_adapter):
    images = [e.image for e in permuted_colour_dataset(2, seed=7).examples]
    pack, runtime = _check_parity(pair_seal, multiscale_adapter, images, "image")
    assert runtime.config.image_dilations == (1, 2)
    adapters = pack.towers["image"].input
    assert float(adapters.conv_out.weight.detach().abs().max()) > 0 and float(adapters.conv_out_d2.weight.detach().abs().max()) > 0


def test_the_numpy_runtime_reproduces_a_text_adapter_with_context(pair_seal, context_adapter):
    texts = [e.text for e in permuted_colour_texts(2, seed=7).examples] + ["a photo of a dog", "red"]  # different lengths: padding
    pack, runtime = _check_parity(pair_seal, context_adapter, texts, "text")
    assert runtime.config.text_context == 3
    assert pack.towers["text"].input.context.weight.shape == (64, 1, 3)
    assert float(pack.towers["text"].input.context.weight.detach().abs().max()) > 0  # it trained, so the parity covers it


def test_the_runtime_refuses_inputs_of_the_other_modality(pair_seal, text_adapter):
    from sealkit.errors import DataError

    runtime = TaskRuntime(pair_seal, text_adapter)
    with pytest.raises(DataError, match=r"classifies texts, not images"):
        runtime.classify([permuted_colour_dataset(1, seed=0).examples[0].image], "image")


# --- the adapter file ----------------------------------------------------------------------------


def test_the_adapter_file_is_small_and_describes_its_task(pair_seal, image_adapter, tiny_pair_seal):
    size = image_adapter.stat().st_size
    assert size < 1_000_000
    assert size < tiny_pair_seal.stat().st_size / 5
    file = read_adapter_file(image_adapter, pair_seal.seal_id)
    meta = file.meta
    assert meta["format"] == "sealkit-adapter" and meta["sealkit_version"] == sealkit.__version__
    assert meta["seal_id"] == pair_seal.seal_id and meta["seal_name"] == pair_seal.manifest.name == "tiny-pair"
    assert meta["method"] == "dga" and meta["complete"] is True
    assert meta["task"]["task"] == "classify" and meta["task"]["head"] == "text"
    assert meta["task"]["class_names"] == NAMES
    assert meta["train_config"]["steps"] == CONFIG.steps and meta["train_examples"] == 18
    assert 0.0 <= meta["metrics"]["accuracy"] <= 1.0 and "accuracy/red" in meta["metrics"]
    assert meta["baseline_kind"] == "zero-shot" and "accuracy" in meta["zero_shot"]
    assert 0 <= meta["best_step"] <= CONFIG.steps
    # what the file holds: the pack's parameters plus the class embeddings, all declared in the metadata
    assert set(meta["shapes"]) == set(file.tensors)
    assert file.tensors[CLASS_EMBEDDINGS].shape == (len(NAMES), 48)
    parameters = sum(v.size for k, v in file.tensors.items() if k != CLASS_EMBEDDINGS)
    assert parameters == sum(meta["parameters"].values())
    assert parameters < 0.05 * sum(t.parameters for t in pair_seal.manifest.towers.values())


def test_the_adapter_file_is_bound_to_its_seal(image_adapter, pair_seal):
    file = read_adapter_file(image_adapter)
    file.check_seal(pair_seal.seal_id)
    other = "f" * len(pair_seal.seal_id)
    with pytest.raises(AdapterMismatchError, match=rf"trained for seal {pair_seal.seal_id} \(tiny-pair\), not for this seal {other}"):
        file.check_seal(other)
