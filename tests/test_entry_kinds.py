"""The scale_shift and residual entry kinds: parity with torch autograd, identity at the start, training.

A conv tower declares a per-channel scale_shift after its stem and a residual bottleneck adapter
(channels on axis 1) after its depthwise stage; the tiny text tower (conftest's tiny_text_kinds_seal)
declares a residual adapter on a block's output (channels last), prompt tokens and a scale_shift on
another block's MLP. Both are exported light with residual graphs (one forward per step), which the
parity check covers as well as the plain VJP graphs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_harness import assert_ok, sealkit
from small_nets import SmallConvNet
from synthetic import permuted_colour_dataset

from sealkit.adapters.config import AdapterConfig
from sealkit.compile.check import check_tower, relative_error
from sealkit.compile.export import export_seal
from sealkit.compile.recipe import EntryPoint, InputSpec, Recipe, TowerRecipe
from sealkit.errors import RecipeError
from sealkit.runtime.seal import open_seal
from sealkit.runtime.task import TaskRuntime
from sealkit.train.api import adapt
from sealkit.train.config import TrainConfig
from sealkit.train.modules import entry_parameters
from sealkit.train.objectives import make_objective
from sealkit.train.saving import load_adapter

TOLERANCE = 1e-4

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def conv_recipe() -> Recipe:
    torch.manual_seed(3)
    tower = TowerRecipe(
        name="image",
        modality="image",
        module=SmallConvNet(out_dim=12).eval(),
        inputs=[InputSpec("pixels", torch.randn(2, 3, 32, 32), dims={0: "batch"})],
        entry_points=[
            EntryPoint("stem", kind="scale_shift", shape=(8, 1, 1)),
            EntryPoint("depthwise_act", kind="residual", shape=(8,), rank=4, channel_axis=1),
        ],
        preprocessing={"kind": "image", "size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3},
    )
    return Recipe(name="conv-kinds", towers=[tower])


@pytest.fixture(scope="module")
def conv(tmp_path_factory, key_bytes):
    recipe = conv_recipe()
    path = tmp_path_factory.mktemp("kinds") / "conv.seal"
    export_seal(recipe, path, key=key_bytes, exposure="light", residuals=True)
    return recipe, open_seal(path, key=key_bytes, threads=1), path


@pytest.fixture(scope="module")
def text(tiny_text_kinds_seal, key_bytes):
    recipe, path = tiny_text_kinds_seal
    return recipe, open_seal(path, key=key_bytes, threads=1)


def _assert_within(rows) -> None:
    bad = [r for r in rows if not r.rel_error <= TOLERANCE]
    assert not bad, "\n".join(f"batch {r.batch} seq {r.sequence} {r.quantity}: {r.rel_error:.2e}" for r in bad)


def test_the_manifest_declares_each_kind_with_the_shape_the_device_trains(conv, text):
    _, conv_seal, _ = conv
    _, text_seal = text
    assert [(ep.kind, ep.shape) for ep in conv_seal.tower("image").entry_points] == [("scale_shift", (2, 8, 1, 1)), ("residual", (2, 4, 8))]
    width = text_seal.tower("text").entry_points[2].shape[-1]
    want = [("residual", (2, 6, width)), ("prompt", (4, width)), ("scale_shift", (2, width))]
    assert [(ep.kind, ep.shape) for ep in text_seal.tower("text").entry_points] == want


def test_conv_kinds_match_torch_autograd_including_the_residual_graphs(conv):
    recipe, seal, _ = conv
    rows = check_tower(seal, recipe.towers[0], batches=(1, 3, 8), with_entries=True)
    quantities = {r.quantity for r in rows}
    assert {"grad ep0 (scale_shift)", "grad ep1 (residual)"} <= quantities
    assert any("backward" in q or "chunk" in q for q in quantities) or len(rows) > 12
    _assert_within(rows)


def test_text_kinds_match_torch_autograd_at_two_sequence_lengths(text):
    recipe, seal = text
    rows = check_tower(seal, recipe.towers[0], batches=(1, 3), sequences=(2, 17), with_entries=True)
    assert {"grad ep0 (residual)", "grad ep2 (scale_shift)", "grad ep0 (residual) [residuals]"} <= {r.quantity for r in rows}
    _assert_within(rows)


@pytest.mark.parametrize("which", ["conv", "text"])
def test_the_trainer_starts_every_kind_at_the_identity(which, conv, text):
    seal = conv[1] if which == "conv" else text[1]
    tower = seal.tower("image" if which == "conv" else "text")
    start = {name: p.detach().numpy() for name, p in entry_parameters(tower.entry_points).items()}
    residual = next(ep.name for ep in tower.entry_points if ep.kind == "residual")
    assert np.abs(start[residual][0]).max() > 0 and not start[residual][1].any()  # down random, up zero
    rng = np.random.default_rng(0)
    if which == "conv":
        feeds = {"pixels": rng.normal(size=(3, 3, 32, 32)).astype(np.float32)}
    else:
        width = tower.entry_points[2].shape[-1]
        feeds = {"token_embeddings": rng.normal(size=(3, 5, width)).astype(np.float32), "attention_mask": np.ones((3, 5), np.int64)}
    # Prompt tokens change the sequence whatever their values; every other kind at its start equals
    # the no-op (all zeros), and a tower without prompts then equals the plain graph.
    kinds = {ep.name: ep.kind for ep in tower.entry_points}
    noop = {name: value if kinds[name] == "prompt" else np.zeros_like(value) for name, value in start.items()}
    assert relative_error(tower.forward(feeds, start), tower.forward(feeds, noop)) <= 1e-6
    if "prompt" not in kinds.values():
        assert relative_error(tower.forward(feeds, start), tower.forward(feeds)) <= 1e-6


def test_lga_trains_both_kinds_and_the_runtime_reproduces_the_adapter(conv, tmp_path):
    _, seal, _ = conv
    out = tmp_path / "colours.adapter"
    train, val = permuted_colour_dataset(4, seed=1), permuted_colour_dataset(2, seed=2)
    # No fitted probe: on this easy task a fitted start already scores 1.0 and would stay the best.
    config = TrainConfig(steps=10, batch=12, lr=2e-2, seed=0, probe=False)
    adapt(seal, train, val, out, task="classify", config=config, adapter_config=AdapterConfig(method="lga"), progress=False)
    runtime = TaskRuntime(seal, out)
    scale_shift, residual = (runtime.tensors[f"towers.image.entries.{name}"] for name in ("ep0", "ep1"))
    assert np.abs(scale_shift).max() > 0, "the scale_shift entry (starting at zero) did not train"
    assert np.abs(residual[1]).max() > 0, "the residual adapter's up (starting at zero) did not train"
    pack, _ = load_adapter(out, seal)
    pack.eval()
    objective = make_objective(seal, pack.task)
    items = [example.image for example in val.examples[:6]]
    with torch.no_grad():
        want = objective.embed(pack, "image", items).numpy()
    assert relative_error(runtime.embed(items, "image"), want) < 1e-5


def test_a_residual_entry_without_a_channel_count_is_a_recipe_error():
    recipe = conv_recipe()
    recipe.towers[0].entry_points = [EntryPoint("stem", kind="residual", shape=(8, 1, 1))]
    from sealkit.compile.recipe import validate_recipe

    with pytest.raises(RecipeError, match="shape=\\(channels,\\)"):
        validate_recipe(recipe)


def test_inspect_says_what_each_declared_kind_reveals(conv, keys):
    *_, path = conv
    text = sealkit("inspect", path, "--key", keys["key"])
    assert_ok(text)
    assert "scale_shift entry points reveal" in text.stdout and "residual entry points reveal" in text.stdout
    assert "add entry points" not in text.stdout  # only the kinds this seal declares
    report = json.loads(sealkit("inspect", path, "--json").stdout)
    assert set(report["entry_kinds_reveal"]) == {"scale_shift", "residual"}
    assert "projections of the activation" in report["entry_kinds_reveal"]["residual"]
