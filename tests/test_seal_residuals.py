"""Seals with residual graphs: one forward per training step, with the same numbers as torch autograd.

`export_seal(..., residuals=True)` splits each VJP graph into forward_saved (output + residuals) and
backward (residuals + cotangent -> gradients). Outputs and gradients through that pair must match
torch autograd within the parity tolerance (relative norm error), in one chunk and in several, and
training through `seal_forward` must use the pair instead of recomputing the forward in the VJP.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from test_seal_parity import add_only_recipe
from torch import nn

from sealkit.compile.check import check_tower, relative_error
from sealkit.compile.export import export_seal
from sealkit.compile.recipe import InputSpec, Recipe, TowerRecipe
from sealkit.errors import InputError, SealkitError
from sealkit.runtime.seal import open_seal
from sealkit.train.seal_function import seal_forward

TOLERANCE = 1e-4


def _export(tmp_path_factory, recipe, key_bytes, exposure: str):
    path = tmp_path_factory.mktemp("residual-seals") / f"{recipe.name}-{exposure}.seal"
    export_seal(recipe, path, key=key_bytes, exposure=exposure, residuals=True)
    return recipe, open_seal(path, key=key_bytes, threads=1)


@pytest.fixture(scope="module")
def text_residual(tiny_text_kinds_seal, key_bytes):
    """The tiny text tower with residual, prompt and scale_shift entries (conftest), light, residual graphs."""
    recipe, path = tiny_text_kinds_seal
    return recipe, open_seal(path, key=key_bytes, threads=1)


@pytest.fixture(scope="module")
def convnet_residual(tmp_path_factory, key_bytes):
    """A strided conv and a depthwise conv, with additive entry points."""
    return _export(tmp_path_factory, add_only_recipe(), key_bytes, "light")


class ReLU6Net(nn.Module):
    """pixels [batch, 3, 12, 12] -> [batch, 5]: an inverted-residual block as EfficientNet-Lite has (ReLU6 after the convs)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.project = nn.Conv2d(8, 4, 1)
        self.head = nn.Linear(4, 5)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu6(self.depthwise(nn.functional.relu6(self.stem(pixels))))
        return self.head(self.project(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def relu6_residual(tmp_path_factory, key_bytes):
    torch.manual_seed(3)
    module = ReLU6Net().eval()
    tower = TowerRecipe(
        name="image",
        modality="image",
        module=module,
        inputs=[InputSpec("pixels", 3 * torch.randn(2, 3, 12, 12), dims={0: "batch"})],
        preprocessing={"kind": "image", "size": [12, 12], "mean": [0.5] * 3, "std": [0.5] * 3},
    )
    return _export(tmp_path_factory, Recipe(name="relu6-net", towers=[tower]), key_bytes, "dark")


def _residual_rows_within(rows) -> list:
    residual_rows = [r for r in rows if "[residuals" in r.quantity]
    assert residual_rows, "the check did not run the residual graphs"
    bad = [r for r in rows if not r.rel_error <= TOLERANCE]
    assert not bad, "\n".join(f"batch {r.batch} seq {r.sequence} {r.quantity}: {r.rel_error:.2e}" for r in bad)
    return residual_rows


@pytest.mark.parametrize("with_entries", [False, True], ids=["plain", "entries"])
def test_text_residual_graphs_match_torch_in_one_chunk_and_in_chunks_of_2(text_residual, with_entries):
    recipe, seal = text_residual
    rows = _residual_rows_within(check_tower(seal, recipe.towers[0], batches=(1, 3), sequences=(2, 9), with_entries=with_entries))
    quantities = {r.quantity for r in rows}
    assert "forward_saved [residuals]" in quantities and "grad token_embeddings [residuals, chunk 2]" in quantities
    if with_entries:
        assert {"grad ep0 (residual) [residuals, chunk 2]", "grad ep1 (prompt) [residuals, chunk 2]", "grad ep2 (scale_shift) [residuals]"} <= quantities


@pytest.mark.parametrize("with_entries", [False, True], ids=["plain", "entries"])
def test_convnet_residual_graphs_match_torch_including_depthwise_and_entry_gradients(convnet_residual, with_entries):
    recipe, seal = convnet_residual
    rows = _residual_rows_within(check_tower(seal, recipe.towers[0], batches=(1, 5), with_entries=with_entries))
    if with_entries:
        assert {"grad ep0 (add) [residuals, chunk 2]", "grad ep2 (add) [residuals]"} <= {r.quantity for r in rows}


def test_relu6_masks_are_saved_as_bool_and_gradients_still_match_torch(relu6_residual):
    recipe, seal = relu6_residual
    saved = seal.manifest.towers["image"].residuals["forward_saved"]
    # one mask per ReLU6, 1 byte per element instead of a float32 copy; the backward casts it
    assert [spec.dtype for spec in saved if len(spec.shape) == 4] == ["bool", "bool"]
    assert not [spec for spec in saved if spec.dtype == "float32"]
    tower = seal.tower("image")
    pixels = 3 * np.random.default_rng(1).standard_normal((4, 3, 12, 12)).astype(np.float32)
    _, residuals = tower.forward_for_backward(pixels, chunk=4)
    masks = [value for name, value in residuals.chunks[0].items() if name.startswith("residual_") and value.ndim == 4]
    assert [(m.dtype, m.shape, m.nbytes) for m in masks] == [(np.dtype(bool), (4, 8, 6, 6), 4 * 8 * 36)] * 2
    _residual_rows_within(check_tower(seal, recipe.towers[0], batches=(1, 5)))


def test_backward_widens_each_mask_next_to_its_reader_and_runs_in_graph_order(relu6_residual):
    import onnx
    import onnxruntime as ort

    _, seal = relu6_residual
    tower = seal.tower("image")
    backward = onnx.ModelProto.FromString(seal.blob(tower.spec.graphs["backward"]))
    nodes = list(backward.graph.node)
    casts = [i for i, node in enumerate(nodes) if node.op_type == "Cast"]
    assert len(casts) == 2
    for i in casts:  # not all up front, where every float mask would be alive at once
        assert nodes[i].output[0] in nodes[i + 1].input
    assert tower._graph("backward").session.get_session_options().execution_order == ort.ExecutionOrder.PRIORITY_BASED
    assert tower._graph("forward_saved").session.get_session_options().execution_order == ort.ExecutionOrder.DEFAULT


def test_attention_transposes_are_saved_untransposed_and_redone_next_to_their_reader(text_residual):
    """A Transpose residual (attention's K^T, V^T) would make forward_saved write a transposed copy out,
    and an Identity to a residual's new name, a copy of it."""
    import onnx

    _, seal = text_residual
    tower = seal.tower("text")
    for suffix in ("", "_entries"):
        forward = onnx.ModelProto.FromString(seal.blob(tower.spec.graphs[f"forward_saved{suffix}"]))
        producer = {out: node for node in forward.graph.node for out in node.output}
        saved_from = [producer[o.name].op_type for o in forward.graph.output[1:]]
        assert saved_from and "Transpose" not in saved_from
        assert "Identity" not in saved_from  # returned under their new names, not copied out
        backward = onnx.ModelProto.FromString(seal.blob(tower.spec.graphs[f"backward{suffix}"]))
        nodes = list(backward.graph.node)
        redone = [i for i, node in enumerate(nodes) if node.op_type == "Transpose" and node.input[0].startswith("residual_")]
        assert len(redone) >= 6  # two per attention block (3 blocks)
        for i in redone:
            assert nodes[i].output[0] in nodes[i + 1].input
    # gradients through the split graphs still equal torch autograd: test_text_residual_graphs_match_torch_...


def test_training_sessions_do_not_spin_and_text_towers_keep_their_arena(text_residual, relu6_residual):
    """Threads spinning after one run take the cores from the next; the arena pays for text, not images."""
    _, text = text_residual
    _, image = relu6_residual
    spinning = "session.intra_op.allow_spinning"
    text_tower, image_tower = text.tower("text"), image.tower("image")
    for tower in (text_tower, image_tower):
        for kind in ("forward_saved", "backward", "vjp"):
            assert tower._graph(kind).session.get_session_options().get_session_config_entry(spinning) == "0"
        with pytest.raises(RuntimeError, match="does not have configuration"):  # inference graphs keep onnxruntime's default
            tower._graph("forward").session.get_session_options().get_session_config_entry(spinning)
        assert tower._graph("forward").session.get_session_options().enable_cpu_mem_arena
    assert text_tower._graph("backward").session.get_session_options().enable_cpu_mem_arena
    assert not image_tower._graph("backward").session.get_session_options().enable_cpu_mem_arena
    for mode, want in (("on", True), ("off", False)):
        for seal in (text, image):
            opened = open_seal(seal.file.path, key=seal._key, threads=1, training_arena=mode)
            tower = next(iter(opened.towers.values()))
            assert tower._graph("backward").session.get_session_options().enable_cpu_mem_arena is want
    with pytest.raises(SealkitError, match="training_arena must be one of"):
        open_seal(text.file.path, key=text._key, training_arena="fast")


def test_training_graphs_run_the_batch_in_chunks_of_the_towers_size_with_the_whole_batchs_gradients(relu6_residual, text_residual, monkeypatch):
    """A training run's working memory grows with its rows: on the CPU image towers run 4 rows at a time, text towers 16, at least one per thread."""
    from sealkit.runtime.seal import DEFAULT_CHUNK, TRAINING_CHUNKS

    _, seal = relu6_residual
    tower = seal.tower("image")
    assert tower.training_chunk == TRAINING_CHUNKS["image"] == 4
    assert text_residual[1].tower("text").training_chunk == TRAINING_CHUNKS["text"] == 16
    rng = np.random.default_rng(4)
    pixels = 3 * rng.standard_normal((9, 3, 12, 12)).astype(np.float32)
    cotangent = rng.standard_normal((9, 5)).astype(np.float32)
    output, residuals = tower.forward_for_backward(pixels)
    assert residuals.sizes == [4, 4, 1]
    grads = tower.backward(residuals, cotangent).input_grads["pixels"]
    whole_output, whole = tower.forward_for_backward(pixels, chunk=DEFAULT_CHUNK)
    assert whole.sizes == [9]
    assert relative_error(output, whole_output) <= 1e-6
    assert relative_error(grads, tower.backward(whole, cotangent).input_grads["pixels"]) <= 1e-6
    runs: list[tuple[str, int]] = []
    run = tower._run
    monkeypatch.setattr(tower, "_run", lambda kind, feeds, **kw: runs.append((kind, len(feeds["pixels"]))) or run(kind, feeds, **kw))
    tower.vjp(pixels, cotangent)  # the recompute mode runs alike
    assert runs == [("vjp", 4), ("vjp", 4), ("vjp", 1)]
    # at least one row per intra-op thread; an explicit size wins; on CUDA the whole batch runs at once
    assert open_seal(seal.file.path, key=seal._key, threads=12).tower("image").training_chunk == 12
    assert open_seal(seal.file.path, key=seal._key).tower("image").training_chunk == max(4, os.cpu_count())
    opened = open_seal(seal.file.path, key=seal._key, threads=1, training_chunk=3)
    assert opened.tower("image").forward_for_backward(pixels)[1].sizes == [3, 3, 3]
    monkeypatch.setattr(seal, "providers", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert tower.training_chunk == DEFAULT_CHUNK
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(SealkitError, match="training_chunk must be a whole number"):
            open_seal(seal.file.path, key=seal._key, training_chunk=bad)


def test_training_graphs_release_the_heap_before_each_run_and_map_only_the_first(relu6_residual, monkeypatch):
    import contextlib

    from sealkit.runtime import seal as seal_module

    _, seal = relu6_residual
    events: list[str] = []

    @contextlib.contextmanager
    def mapped():
        events.append("mapped")
        yield

    monkeypatch.setattr(seal_module, "mapped_allocations", mapped)
    monkeypatch.setattr(seal_module, "release_free_heap", lambda: events.append("release"))
    fresh = open_seal(seal.file.path, key=seal._key, threads=1)  # sessions not run yet
    tower = fresh.tower("image")
    pixels = np.zeros((2, 3, 12, 12), np.float32)
    for _ in range(2):
        _, residuals = tower.forward_for_backward(pixels)
        tower.backward(residuals, np.ones((2, 5), np.float32))
    assert events == ["release", "mapped", "release", "mapped", "release", "release"]
    events.clear()
    _, residuals = tower.forward_for_backward(np.zeros((9, 3, 12, 12), np.float32))  # 3 chunks: torch runs only between calls
    tower.backward(residuals, np.ones((9, 5), np.float32))
    assert events == ["release", "release"]
    events.clear()
    tower.forward(pixels)  # inference graphs keep their arena and the heap alone
    assert events == []


def test_manifest_lists_the_residuals_a_device_will_hold(text_residual, text_seal):
    _, seal = text_residual
    tower = seal.manifest.towers["text"]
    assert {"forward_saved", "backward", "forward_saved_entries", "backward_entries", "forward", "vjp"} <= set(tower.graphs)
    saved = tower.residuals["forward_saved"]
    assert saved and all(spec.name.startswith("residual_") for spec in saved)
    assert len(tower.residuals["forward_saved_entries"]) > 0
    # a plain seal's manifest carries no residuals key, so plain seals keep their ids
    assert "residuals" not in text_seal.manifest.towers["text"].to_dict()
    assert not text_seal.tower("text").has_residual_graphs


def test_a_plain_seal_refuses_forward_for_backward(text_seal):
    with pytest.raises(SealkitError, match="without residuals"):
        text_seal.tower("text").forward_for_backward({"token_embeddings": np.zeros((1, 3, 64), np.float32), "attention_mask": np.ones((1, 3), np.int64)})


def test_backward_checks_the_cotangent_and_whose_residuals_it_gets(convnet_residual):
    _, seal = convnet_residual
    tower = seal.tower("image")
    output, residuals = tower.forward_for_backward(np.zeros((3, 3, 10, 10), np.float32))
    assert output.shape == (3, 6) and residuals.batch == 3 and residuals.nbytes > 0
    with pytest.raises(InputError, match="batch size 2"):
        tower.backward(residuals, np.zeros((2, 6), np.float32))
    with pytest.raises(InputError, match="its own forward_for_backward"):
        tower.backward("not residuals", np.zeros((3, 6), np.float32))


def test_training_through_a_residual_seal_runs_forward_saved_and_backward_not_the_vjp(convnet_residual, monkeypatch):
    recipe, seal = convnet_residual
    tower = seal.tower("image")
    module = recipe.towers[0].module.eval()
    pixels = torch.randn(4, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    scale = torch.full((1, 3, 1, 1), 1.5, requires_grad=True)  # a stand-in input adapter

    def refuse(*_args, **_kwargs):
        raise AssertionError("the VJP graph (a second forward) ran during a training step")

    monkeypatch.setattr(tower, "vjp", refuse)
    monkeypatch.setattr(tower, "forward", refuse)
    loss = seal_forward(tower, {"pixels": pixels * scale}).square().sum()
    loss.backward()

    reference = scale.detach().clone().requires_grad_(True)
    module(pixels * reference).square().sum().backward()
    assert relative_error(scale.grad.numpy(), reference.grad.numpy()) <= TOLERANCE


def test_evaluation_through_a_residual_seal_keeps_the_plain_forward(convnet_residual, monkeypatch):
    _, seal = convnet_residual
    tower = seal.tower("image")

    def refuse(*_args, **_kwargs):
        raise AssertionError("forward_for_backward ran without gradients wanted")

    monkeypatch.setattr(tower, "forward_for_backward", refuse)
    pixels = torch.randn(2, 3, 10, 10, requires_grad=True)
    with torch.no_grad():
        assert seal_forward(tower, {"pixels": pixels}).shape == (2, 6)
    assert seal_forward(tower, {"pixels": pixels.detach()}).shape == (2, 6)  # nothing to differentiate


SMALL_CONV_RECIPE = """
import torch
from torch import nn
from sealkit.compile.recipe import InputSpec, Recipe, TowerRecipe


def recipe():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    tower = TowerRecipe(name="image", modality="image", module=module.eval(),
                        inputs=[InputSpec("pixels", torch.randn(2, 3, 9, 9), dims={0: "batch"})],
                        preprocessing={"kind": "image", "size": [9, 9], "mean": [0.5] * 3, "std": [0.5] * 3})
    return Recipe(name="small-conv", towers=[tower])
"""


def test_cli_export_residuals_then_inspect_and_check(tmp_path, keys):
    """The owner's path, on a recipe file small enough to export in seconds (tanh saves its output)."""
    from cli_harness import sealkit

    recipe = tmp_path / "small_conv.py"
    recipe.write_text(SMALL_CONV_RECIPE)
    out = tmp_path / "small-residuals.seal"
    result = sealkit("export", recipe, "--out", out, "--key", keys["key"], "--residuals")
    assert result.returncode == 0, result.stderr
    assert "with residual graphs" in result.stdout
    result = sealkit("inspect", out, "--key", keys["key"])
    assert result.returncode == 0, result.stderr
    assert "intermediate activations" in result.stdout
    report = json.loads(sealkit("inspect", out, "--json").stdout)
    assert report["manifest"]["towers"]["image"]["residuals"]["forward_saved"]
    result = sealkit("check", out, recipe, "--key", keys["key"])
    assert result.returncode == 0, result.stderr
    assert "forward_saved [residuals]" in result.stdout and "parity ok" in result.stdout
