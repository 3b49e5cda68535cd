"""The device runtime: inputs are checked against the manifest, weights are held once, text towers work.

Bad inputs must fail before onnxruntime sees them, with an InputError that names the input, so a
device user learns what to fix instead of reading an onnxruntime stack trace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sealkit.compile.recipe import load_recipe
from sealkit.errors import InputError, SealkitError
from sealkit.runtime.seal import open_seal
from sealkit.seal.container import write_seal
from sealkit.seal.manifest import Manifest

RECIPES = Path(__file__).resolve().parent / "recipes"


@pytest.fixture(scope="module")
def text_recipe():
    return load_recipe(RECIPES / "tiny_text.py")


def pixels(batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 3, 32, 32)).astype(np.float32)


def entries_for(tower, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {ep.name: rng.normal(0, 0.1, ep.shape).astype(np.float32) for ep in tower.entry_points}


def text_feeds(tower, batch: int = 2, length: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(seed).integers(4, 100, size=(batch, length))
    return {"token_embeddings": tower.embed_tokens(ids), "attention_mask": np.ones((batch, length), np.int64)}


# --- input checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 3, 16, 16), np.float32), r"'pixels'.*shape \[batch, 3, 32, 32\].*\[2, 3, 16, 16\]"),
        (np.zeros((3, 32, 32), np.float32), r"'pixels'.*shape"),
        (np.zeros((2, 32, 32, 3), np.float32), r"'pixels'.*shape"),
        (np.zeros((0, 3, 32, 32), np.float32), r"'pixels'.*empty"),
        (np.zeros((2, 3, 32, 32), np.float64), r"'pixels'.*float32.*float64"),
        (np.zeros((2, 3, 32, 32), np.int64), r"'pixels'.*float32.*int64"),
        ([[0.0]], r"'pixels'.*numpy array"),
    ],
    ids=["wrong-size", "missing-axis", "channels-last", "empty-batch", "float64", "int64", "not-an-array"],
)
def test_a_wrong_input_shape_or_dtype_is_an_input_error_naming_the_input(image_seal, bad, message):
    tower = image_seal.tower("image")
    with pytest.raises(InputError, match=message):
        tower.forward({"pixels": bad})
    with pytest.raises(InputError, match=message):
        tower.vjp({"pixels": bad}, np.zeros((2, 48), np.float32))


def test_a_missing_or_unknown_input_is_an_input_error_naming_it(text_seal):
    tower = text_seal.tower("text")
    feeds = text_feeds(tower)
    with pytest.raises(InputError, match="'attention_mask'"):
        tower.forward({"token_embeddings": feeds["token_embeddings"]})
    with pytest.raises(InputError, match="'token_embeddings'"):
        tower.vjp({"attention_mask": feeds["attention_mask"]}, np.zeros((2, 48), np.float32))
    with pytest.raises(InputError, match="token_type_ids"):
        tower.forward({**feeds, "token_type_ids": feeds["attention_mask"]})
    with pytest.raises(InputError, match="pass a dict"):
        tower.forward(feeds["token_embeddings"])


def test_inputs_that_disagree_on_a_dynamic_size_are_an_input_error(text_seal):
    tower = text_seal.tower("text")
    feeds = text_feeds(tower, batch=2, length=6)
    with pytest.raises(InputError, match=r"'attention_mask'.*sequence size 5"):
        tower.forward({**feeds, "attention_mask": np.ones((2, 5), np.int64)})
    with pytest.raises(InputError, match=r"'attention_mask'.*batch size 3"):
        tower.forward({**feeds, "attention_mask": np.ones((3, 6), np.int64)})
    with pytest.raises(InputError, match=r"'attention_mask'.*int64.*float32"):
        tower.forward({**feeds, "attention_mask": np.ones((2, 6), np.float32)})


def test_a_wrong_cotangent_is_an_input_error_naming_it(image_seal):
    tower = image_seal.tower("image")
    with pytest.raises(InputError, match=r"'grad_embedding'.*batch size 3"):
        tower.vjp(pixels(2), np.zeros((3, 48), np.float32))
    with pytest.raises(InputError, match=r"'grad_embedding'.*shape"):
        tower.vjp(pixels(2), np.zeros((2, 47), np.float32))
    with pytest.raises(InputError, match=r"'grad_embedding'.*float32"):
        tower.vjp(pixels(2), np.zeros((2, 48), np.float64))


def test_unknown_missing_or_misshapen_entry_points_are_input_errors_naming_them(image_seal):
    tower = image_seal.tower("image")
    entries = entries_for(tower)
    with pytest.raises(InputError, match=r"ep9"):
        tower.forward(pixels(), {**entries, "ep9": np.zeros(4, np.float32)})
    with pytest.raises(InputError, match=r"'ep1'"):
        tower.forward(pixels(), {k: v for k, v in entries.items() if k != "ep1"})
    with pytest.raises(InputError, match=r"'ep2'.*shape \[64\]"):
        tower.vjp(pixels(), np.zeros((2, 48), np.float32), {**entries, "ep2": np.zeros(65, np.float32)})
    with pytest.raises(InputError, match=r"'ep0'.*float32"):
        tower.forward(pixels(), {**entries, "ep0": entries["ep0"].astype(np.float64)})


def test_a_dark_seal_refuses_entry_points_and_says_it_is_dark(tiny_image_seal, key_bytes, tmp_path):
    """The light seal re-written without its entry points and entry graphs is what a dark export holds."""
    light = open_seal(tiny_image_seal, key=key_bytes)
    manifest = Manifest.from_dict(light.manifest.to_dict())
    manifest.exposure = "dark"
    spec = manifest.towers["image"]
    spec.entry_points = []
    spec.graphs = {k: v for k, v in spec.graphs.items() if not k.endswith("_entries")}
    blobs = {r.name: light.blob(r.name) for r in light.manifest.blobs if not r.name.endswith("_entries")}
    write_seal(tmp_path / "dark.seal", manifest, blobs, key=key_bytes)
    dark = open_seal(tmp_path / "dark.seal", key=key_bytes).tower("image")
    np.testing.assert_allclose(dark.forward(pixels()), light.tower("image").forward(pixels()), rtol=1e-6, atol=1e-7)
    with pytest.raises(InputError, match=r"ep0.*none \(a dark seal\)"):
        dark.forward(pixels(), entries_for(light.tower("image")))


def test_too_long_a_sequence_or_an_unknown_token_id_is_an_input_error_not_a_crash(text_seal, capfd):
    tower = text_seal.tower("text")
    long = 600  # the tiny text tower's position table has 512 rows
    ids = np.full((1, long), 5, np.int64)
    feeds = {"token_embeddings": tower.embed_tokens(ids), "attention_mask": np.ones((1, long), np.int64)}
    with pytest.raises(InputError, match=r"tower 'text' cannot run its forward graph on inputs 'token_embeddings' \[1, 600, 64\]"):
        tower.forward(feeds)
    with pytest.raises(InputError, match=r"input_ids"):
        tower.embed_tokens(np.array([[2, 10_000]], np.int64))
    with pytest.raises(InputError, match=r"'input_ids'.*negative"):
        tower.embed_tokens(np.array([[2, -3]], np.int64))
    with pytest.raises(InputError, match=r"'input_ids'.*int64"):
        tower.embed_tokens(np.array([[2, 3]], np.int32))
    assert "onnxruntime" not in capfd.readouterr().err, "onnxruntime logged the failure besides raising it"


def test_asking_for_an_absent_tower_or_an_image_embedding_is_a_sealkit_error(image_seal):
    with pytest.raises(SealkitError, match="no tower 'text'.*image"):
        image_seal.tower("text")
    with pytest.raises(SealkitError, match="not a text tower"):
        image_seal.tower("image").embed_tokens(np.zeros((1, 3), np.int64))
    assert image_seal.tower() is image_seal.tower("image")


# --- weights held once ------------------------------------------------------------------------


def test_weights_are_stored_once_in_the_seal_and_in_memory(tiny_image_seal, image_seal):
    parameters = image_seal.manifest.towers["image"].parameters
    module = load_recipe(RECIPES / "tiny_vit.py").towers[0].module
    assert parameters == sum(p.numel() for p in module.parameters())
    parameter_bytes = 4 * parameters
    # a light seal holds four graphs (forward, vjp and their entry-point variants) over one pool
    assert len(image_seal.manifest.towers["image"].graphs) == 4
    assert 0.9 * parameter_bytes <= image_seal.weight_bytes <= 1.05 * parameter_bytes
    assert tiny_image_seal.stat().st_size < 1.3 * parameter_bytes


def test_the_text_seal_holds_its_embedding_table_once(text_seal, text_recipe):
    tower = text_recipe.towers[0]
    parameters = sum(p.numel() for p in tower.module.parameters()) + sum(p.numel() for p in tower.embed.parameters())
    assert text_seal.manifest.towers["text"].parameters == parameters
    assert 0.9 * 4 * parameters <= text_seal.weight_bytes <= 1.05 * 4 * parameters


def test_shared_and_copied_weight_modes_give_the_same_results(tiny_image_seal, key_bytes):
    copied = open_seal(tiny_image_seal, key=key_bytes, weights="copied").tower("image")
    shared = open_seal(tiny_image_seal, key=key_bytes, weights="shared").tower("image")
    x, cot, entries = pixels(3, seed=4), np.ones((3, 48), np.float32), entries_for(shared, seed=4)
    np.testing.assert_allclose(copied.forward(x), shared.forward(x), rtol=1e-5, atol=1e-6)
    a, b = copied.vjp(x, cot, entries), shared.vjp(x, cot, entries)
    np.testing.assert_allclose(a.input_grads["pixels"], b.input_grads["pixels"], rtol=1e-5, atol=1e-7)
    for name in entries:
        np.testing.assert_allclose(a.entry_grads[name], b.entry_grads[name], rtol=1e-4, atol=1e-6)
    with pytest.raises(SealkitError, match="weights must be one of"):
        open_seal(tiny_image_seal, key=key_bytes, weights="mmap")


def test_auto_weights_copy_small_graphs_and_share_big_ones(tiny_image_seal, key_bytes, monkeypatch):
    import sealkit.runtime.seal as seal_module

    x = pixels(2, seed=5)
    small = open_seal(tiny_image_seal, key=key_bytes).tower("image")  # "auto" is the default
    small.forward(x)
    assert all(not graph.weight_feeds for graph in small._graphs.values())  # onnxruntime owns a copy
    monkeypatch.setattr(seal_module, "AUTO_COPY_BYTES", 1024)  # now every graph of the tiny seal is "big"
    big = open_seal(tiny_image_seal, key=key_bytes, weights="auto").tower("image")
    np.testing.assert_allclose(big.forward(x), small.forward(x), rtol=1e-5, atol=1e-6)
    assert all(graph.weight_feeds for graph in big._graphs.values())  # fed from the one shared pool


# --- text towers ------------------------------------------------------------------------------


def test_embed_tokens_looks_up_the_token_embedding_table(text_seal, text_recipe):
    table = text_recipe.towers[0].embed.weight.detach().numpy()
    ids = np.array([[2, 40, 41, 3, 0], [2, 7, 3, 0, 0]], np.int64)
    got = text_seal.tower("text").embed_tokens(ids)
    assert got.shape == (2, 5, 64) and got.dtype == np.float32
    np.testing.assert_array_equal(got, table[ids])


def test_forward_and_vjp_run_on_a_text_seal_with_and_without_entries(text_seal):
    tower = text_seal.tower("text")
    assert [s.name for s in tower.spec.inputs] == ["token_embeddings", "attention_mask"]
    assert [s.name for s in tower.spec.differentiable_inputs] == ["token_embeddings"]
    feeds = text_feeds(tower, batch=3, length=7, seed=1)
    feeds["attention_mask"][2, 4:] = 0
    cotangent = np.random.default_rng(1).normal(size=(3, 48)).astype(np.float32)
    output = tower.forward(feeds)
    assert output.shape == (3, tower.output_dim) == (3, 48)
    assert np.isfinite(output).all()

    plain = tower.vjp(feeds, cotangent)
    np.testing.assert_allclose(plain.output, output, rtol=1e-5, atol=1e-6)
    assert set(plain.input_grads) == {"token_embeddings"}
    assert plain.input_grads["token_embeddings"].shape == (3, 7, 64)
    assert plain.entry_grads == {}
    # a padded position does not influence the output, so it gets (almost) no gradient
    assert np.abs(plain.input_grads["token_embeddings"][2, 4:]).max() < 1e-6 < np.abs(plain.input_grads["token_embeddings"][2, :4]).max()

    entries = entries_for(tower, seed=1)
    assert {k: v.shape for k, v in entries.items()} == {"ep0": (4, 64), "ep1": (64,)}
    adapted = tower.vjp(feeds, cotangent, entries)
    np.testing.assert_allclose(adapted.output, tower.forward(feeds, entries), rtol=1e-5, atol=1e-6)
    assert not np.allclose(adapted.output, output, atol=1e-4)
    assert {k: v.shape for k, v in adapted.entry_grads.items()} == {"ep0": (4, 64), "ep1": (64,)}


def test_the_text_seal_carries_its_tokenizer(text_seal):
    from tokenizers import Tokenizer

    spec = text_seal.manifest.towers["text"]
    tokenizer = Tokenizer.from_str(text_seal.blob(spec.preprocessing["tokenizer"]).decode("utf-8"))
    encoding = tokenizer.encode("a photo of a small red cat")
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]" and "cat" in encoding.tokens
    assert spec.preprocessing["max_length"] == 32
    ids = np.array([encoding.ids], np.int64)
    out = text_seal.tower("text").forward({"token_embeddings": text_seal.tower("text").embed_tokens(ids), "attention_mask": np.ones_like(ids)})
    assert out.shape == (1, 48)


# --- chunk bookkeeping, on a stand-in graph -------------------------------------------------------


class _LinearGraph:
    """Stands in for an onnxruntime session of y = x @ W + ep0 and its VJP."""

    W = np.arange(6, dtype=np.float32).reshape(2, 3)

    def __init__(self, vjp: bool):
        self.vjp = vjp
        self.output_names = ["embedding", "grad_episode_features", "grad_ep0"] if vjp else ["embedding"]

    def run(self, feeds, release_heap=True):
        x, ep = feeds["episode_features"], feeds.get("ep0", np.zeros(3, np.float32))
        y = x @ self.W + ep
        if not self.vjp:
            return [y]
        cot = feeds["grad_embedding"]
        return [y, cot @ self.W.T, cot.sum(0)]


class _StandInSeal:
    def _load_graph(self, blob, modality):
        return _LinearGraph(vjp=blob.startswith("vjp"))


def test_chunked_vjp_concatenates_input_gradients_and_sums_only_entry_gradients():
    """An input whose name starts like an entry point ('ep...') is still a per-example gradient."""
    from sealkit.runtime.seal import Tower
    from sealkit.seal.manifest import EntryPointSpec, TensorSpec, TowerSpec

    spec = TowerSpec(
        modality="image",
        inputs=[TensorSpec("episode_features", ("batch", 2), "float32", True)],
        output=TensorSpec("embedding", ("batch", 3)),
        preprocessing={"kind": "image"},
        graphs={"forward": "forward", "vjp": "vjp", "forward_entries": "forward", "vjp_entries": "vjp"},
        entry_points=[EntryPointSpec("ep0", "add", (3,))],
    )
    tower = Tower("image", spec, _StandInSeal())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 2)).astype(np.float32)
    cot = rng.normal(size=(5, 3)).astype(np.float32)
    entries = {"ep0": np.ones(3, np.float32)}
    whole = tower.vjp(x, cot, entries, chunk=5)
    chunked = tower.vjp(x, cot, entries, chunk=2)
    np.testing.assert_allclose(chunked.output, x @ _LinearGraph.W + 1, rtol=1e-6)
    assert chunked.input_grads["episode_features"].shape == (5, 2)
    np.testing.assert_allclose(chunked.input_grads["episode_features"], whole.input_grads["episode_features"], rtol=1e-6)
    np.testing.assert_allclose(chunked.entry_grads["ep0"], cot.sum(0), rtol=1e-5)
    np.testing.assert_allclose(tower.forward(x, entries, chunk=2), whole.output, rtol=1e-6)
