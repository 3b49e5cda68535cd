"""A sealed tower computes what the torch module computes: outputs, input gradients, entry-point gradients.

Every comparison is a relative norm error, ||seal - torch|| / ||torch||, against torch autograd on the
recipe's own module, and must stay within 1e-4 (float32 graphs reordered by onnxruntime agree to
about 1e-6). Batches 1, 3 and 8 run through every graph; the text tower also runs at sequence
length 2 (the shortest a tower accepts) and at a longer length with padded rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from small_nets import SmallConvNet
from torch import nn

from sealkit.compile.check import check_tower, relative_error
from sealkit.compile.export import export_seal, tower_entry_module
from sealkit.compile.recipe import EntryPoint, InputSpec, Recipe, TowerRecipe, load_recipe
from sealkit.runtime.seal import open_seal

RECIPES = Path(__file__).resolve().parent / "recipes"
TOLERANCE = 1e-4
BATCHES = (1, 3, 8)
SEQUENCES = (2, 17)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_recipe() -> Recipe:
    return load_recipe(RECIPES / "tiny_vit.py")


@pytest.fixture(scope="module")
def text_recipe() -> Recipe:
    return load_recipe(RECIPES / "tiny_text.py")


def add_only_recipe() -> Recipe:
    """A recipe whose only entry points are additive deltas, so all-zero deltas mean "no adapter"."""
    torch.manual_seed(7)
    module = SmallConvNet().eval()
    return Recipe(
        name="small-convnet",
        towers=[
            TowerRecipe(
                name="image",
                modality="image",
                module=module,
                inputs=[InputSpec("pixels", torch.randn(2, 3, 10, 10), dims={0: "batch"})],
                entry_points=[
                    EntryPoint("stem", kind="add", shape=(8, 1, 1)),
                    EntryPoint("depthwise_act", kind="add", shape=(8, 1, 1)),
                    EntryPoint("head", kind="add", shape=(6,)),
                ],
                preprocessing={"kind": "image", "size": [10, 10], "mean": [0.5] * 3, "std": [0.5] * 3},
            )
        ],
    )


@pytest.fixture(scope="module")
def add_only(tmp_path_factory, key_bytes):
    recipe = add_only_recipe()
    path = tmp_path_factory.mktemp("add-only") / "small-convnet.seal"
    export_seal(recipe, path, key=key_bytes, exposure="light")
    return recipe, open_seal(path, key=key_bytes)


# --- helpers ----------------------------------------------------------------------------------


def _assert_rows_within(rows, tolerance: float = TOLERANCE) -> None:
    assert rows, "the parity check compared nothing"
    bad = [r for r in rows if not r.rel_error <= tolerance]  # `not <=` also catches NaN
    assert not bad, "\n".join(f"{r.tower} batch {r.batch} seq {r.sequence} {r.quantity}: {r.rel_error:.2e}" for r in bad)


def _quantities(rows) -> set[tuple]:
    return {(r.batch, r.sequence, r.quantity) for r in rows}


def _torch_vjp(module: nn.Module, inputs: list[torch.Tensor], entries: list[torch.Tensor], cotangent: torch.Tensor):
    """torch autograd reference: (output, grads of float inputs, grads of entries)."""
    leaves = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
    entry_leaves = [e.clone().requires_grad_(True) for e in entries]
    output = module(*leaves, *entry_leaves)
    output.backward(cotangent)
    return (
        output.detach().numpy(),
        [leaf.grad.numpy() if leaf.is_floating_point() else None for leaf in leaves],
        [leaf.grad.numpy() for leaf in entry_leaves],
    )


# --- image tower ------------------------------------------------------------------------------


def test_image_tower_plain_graphs_match_torch_at_batches_1_3_8(image_seal, image_recipe):
    rows = check_tower(image_seal, image_recipe.towers[0], batches=BATCHES, with_entries=False)
    assert _quantities(rows) == {(b, None, q) for b in BATCHES for q in ("forward", "grad pixels")}
    _assert_rows_within(rows)


def test_image_tower_entry_graphs_match_torch_including_every_entry_gradient(image_seal, image_recipe):
    rows = check_tower(image_seal, image_recipe.towers[0], batches=BATCHES, with_entries=True)
    quantities = {"forward", "grad pixels", "grad ep0 (prompt)", "grad ep1 (prompt)", "grad ep2 (add)"}
    assert _quantities(rows) == {(b, None, q) for b in BATCHES for q in quantities}
    _assert_rows_within(rows)


def test_plain_graphs_of_a_light_seal_run_the_unmodified_backbone(image_seal, image_recipe):
    """Without entries the light seal is the original model; with non-zero entries it is not."""
    tower = image_recipe.towers[0]
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = tower.module(pixels).numpy()
    runtime = image_seal.tower("image")
    plain = runtime.forward(pixels.numpy())
    assert plain.shape == want.shape == (4, 48)
    assert relative_error(plain, want) <= 1e-5

    rng = np.random.default_rng(3)
    entries = {ep.name: rng.normal(0, 0.5, ep.shape).astype(np.float32) for ep in runtime.entry_points}
    adapted = runtime.forward(pixels.numpy(), entries)
    assert relative_error(adapted, want) > 1e-3, "entry points had no effect on the output"


def test_plain_graphs_of_an_add_only_seal_equal_the_torch_module_on_a_fresh_input(add_only):
    recipe, seal = add_only
    module = recipe.towers[0].module
    pixels = torch.randn(5, 3, 10, 10, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        want = module(pixels).numpy()
    got = seal.tower("image").forward(pixels.numpy())
    assert relative_error(got, want) <= 1e-6


# --- text tower -------------------------------------------------------------------------------


def test_text_tower_plain_graphs_match_torch_at_sequence_2_and_17(text_seal, text_recipe):
    rows = check_tower(text_seal, text_recipe.towers[0], batches=BATCHES, sequences=SEQUENCES, with_entries=False)
    assert _quantities(rows) == {(b, s, q) for b in BATCHES for s in SEQUENCES for q in ("forward", "grad token_embeddings")}
    _assert_rows_within(rows)


def test_text_tower_entry_graphs_match_torch_at_sequence_2_and_17(text_seal, text_recipe):
    rows = check_tower(text_seal, text_recipe.towers[0], batches=BATCHES, sequences=SEQUENCES, with_entries=True)
    quantities = {"forward", "grad token_embeddings", "grad ep0 (prompt)", "grad ep1 (add)"}
    assert _quantities(rows) == {(b, s, q) for b in BATCHES for s in SEQUENCES for q in quantities}
    _assert_rows_within(rows)


@pytest.mark.parametrize("with_entries", [False, True], ids=["plain", "entries"])
def test_text_tower_matches_torch_on_a_padded_batch_of_mixed_lengths(text_seal, text_recipe, with_entries):
    """Rows of 11, 4 and 7 real tokens in one batch padded to 11, as a tokenizer pads a batch."""
    tower = text_recipe.towers[0]
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(4, tower.embed.num_embeddings, (3, 11), generator=generator)
    mask = torch.ones(3, 11, dtype=torch.int64)
    mask[1, 4:] = 0
    mask[2, 7:] = 0
    ids[mask == 0] = 0  # [PAD]
    with torch.no_grad():
        embeddings = tower.embed(ids)
    module, entry_specs, _ = tower_entry_module(tower, "light" if with_entries else "dark")
    assert bool(entry_specs) == with_entries
    entries = [0.1 * torch.randn(ep.shape, generator=generator) for ep in entry_specs]
    cotangent = torch.randn(3, 48, generator=generator)
    want_out, want_grads, want_entry_grads = _torch_vjp(module, [embeddings, mask], entries, cotangent)

    runtime = text_seal.tower("text")
    feeds = {"token_embeddings": embeddings.numpy(), "attention_mask": mask.numpy()}
    entry_feeds = {ep.name: e.numpy() for ep, e in zip(entry_specs, entries)} or None
    assert relative_error(runtime.embed_tokens(ids.numpy()), embeddings.numpy()) == 0.0
    assert relative_error(runtime.forward(feeds, entry_feeds), want_out) <= TOLERANCE
    result = runtime.vjp(feeds, cotangent.numpy(), entry_feeds)
    assert relative_error(result.output, want_out) <= TOLERANCE
    assert set(result.input_grads) == {"token_embeddings"}  # the mask is not differentiable
    assert relative_error(result.input_grads["token_embeddings"], want_grads[0]) <= TOLERANCE
    assert set(result.entry_grads) == {ep.name for ep in entry_specs}
    for ep, want in zip(entry_specs, want_entry_grads):
        assert relative_error(result.entry_grads[ep.name], want) <= TOLERANCE, ep.name


# --- add-only entry points ------------------------------------------------------------------------


def test_add_only_recipe_matches_torch_with_and_without_entries(add_only):
    recipe, seal = add_only
    rows = check_tower(seal, recipe.towers[0], batches=BATCHES, with_entries=False)
    rows += check_tower(seal, recipe.towers[0], batches=BATCHES, with_entries=True)
    assert {r.quantity for r in rows} >= {"grad ep0 (add)", "grad ep1 (add)", "grad ep2 (add)"}
    _assert_rows_within(rows)


def test_all_zero_add_deltas_reproduce_the_plain_graphs(add_only):
    _, seal = add_only
    runtime = seal.tower("image")
    assert [ep.kind for ep in runtime.entry_points] == ["add", "add", "add"]
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(6, 3, 10, 10)).astype(np.float32)
    cotangent = rng.normal(size=(6, 6)).astype(np.float32)
    zeros = {ep.name: np.zeros(ep.shape, np.float32) for ep in runtime.entry_points}

    plain = runtime.forward(pixels)
    with_zero = runtime.forward(pixels, zeros)
    assert relative_error(with_zero, plain) <= 1e-7

    plain_vjp = runtime.vjp(pixels, cotangent)
    zero_vjp = runtime.vjp(pixels, cotangent, zeros)
    assert relative_error(zero_vjp.output, plain_vjp.output) <= 1e-7
    assert relative_error(zero_vjp.input_grads["pixels"], plain_vjp.input_grads["pixels"]) <= 1e-7
    assert plain_vjp.entry_grads == {}
    assert set(zero_vjp.entry_grads) == set(zeros)


def test_add_entry_gradients_are_the_cotangent_summed_over_the_batch_at_the_head(add_only):
    """The last delta is added to the output, so its gradient is exactly sum_batch(cotangent)."""
    _, seal = add_only
    runtime = seal.tower("image")
    rng = np.random.default_rng(1)
    pixels = rng.normal(size=(5, 3, 10, 10)).astype(np.float32)
    cotangent = rng.normal(size=(5, 6)).astype(np.float32)
    entries = {ep.name: rng.normal(0, 0.1, ep.shape).astype(np.float32) for ep in runtime.entry_points}
    result = runtime.vjp(pixels, cotangent, entries)
    np.testing.assert_allclose(result.entry_grads["ep2"], cotangent.sum(0), rtol=1e-5, atol=1e-6)


# --- chunking ---------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_forward_and_vjp_equal_one_pass_with_entry_gradients_summed(image_seal, chunk):
    runtime = image_seal.tower("image")
    rng = np.random.default_rng(chunk)
    pixels = rng.normal(size=(7, 3, 32, 32)).astype(np.float32)
    cotangent = rng.normal(size=(7, 48)).astype(np.float32)
    entries = {ep.name: rng.normal(0, 0.1, ep.shape).astype(np.float32) for ep in runtime.entry_points}

    whole = runtime.vjp(pixels, cotangent, entries, chunk=64)
    parts = runtime.vjp(pixels, cotangent, entries, chunk=chunk)
    assert relative_error(runtime.forward(pixels, entries, chunk=chunk), runtime.forward(pixels, entries)) <= 1e-6
    assert parts.output.shape == whole.output.shape == (7, 48)
    assert relative_error(parts.output, whole.output) <= 1e-6
    assert parts.input_grads["pixels"].shape == (7, 3, 32, 32)
    assert relative_error(parts.input_grads["pixels"], whole.input_grads["pixels"]) <= 1e-6
    assert set(parts.entry_grads) == {"ep0", "ep1", "ep2"}
    for name, grad in whole.entry_grads.items():
        assert parts.entry_grads[name].shape == grad.shape
        assert relative_error(parts.entry_grads[name], grad) <= 1e-5, name

    # entry gradients are sums over the batch: the gradient of each half adds up to the whole
    first = runtime.vjp(pixels[:4], cotangent[:4], entries)
    second = runtime.vjp(pixels[4:], cotangent[4:], entries)
    for name, grad in whole.entry_grads.items():
        assert relative_error(first.entry_grads[name] + second.entry_grads[name], grad) <= 1e-5, name


def test_chunked_vjp_on_the_text_tower_keeps_the_mask_aligned_with_its_rows(text_seal):
    runtime = text_seal.tower("text")
    rng = np.random.default_rng(2)
    ids = rng.integers(4, 100, size=(5, 9))
    embeddings = runtime.embed_tokens(ids)
    mask = np.ones((5, 9), np.int64)
    mask[0, 3:] = 0
    mask[3, 6:] = 0
    feeds = {"token_embeddings": embeddings, "attention_mask": mask}
    cotangent = rng.normal(size=(5, 48)).astype(np.float32)
    entries = {ep.name: rng.normal(0, 0.1, ep.shape).astype(np.float32) for ep in runtime.entry_points}
    whole = runtime.vjp(feeds, cotangent, entries)
    parts = runtime.vjp(feeds, cotangent, entries, chunk=2)
    assert relative_error(parts.output, whole.output) <= 1e-6
    assert relative_error(parts.input_grads["token_embeddings"], whole.input_grads["token_embeddings"]) <= 1e-6
    for name, grad in whole.entry_grads.items():
        assert relative_error(parts.entry_grads[name], grad) <= 1e-5, name
