"""Shared fixtures: seals exported once per test session and shared (the tiny recipes in tests/recipes,
the real all-MiniLM-L6-v2, and the real EfficientNet-Lite0 at 32 px, which `sealkit demo` exports).

Exporting a light seal takes ~30-130 s on 2 cores, so each seal is built once, in the background from
the session's start (tests/prefetch.py). Tests must not modify these files; copy them into tmp_path first.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict[str, Path]:
    """A fresh AES key and Ed25519 key pair (what `sealkit keygen` writes)."""
    from sealkit.seal.crypto import write_keys

    return write_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def key_bytes(keys) -> bytes:
    from sealkit.seal.crypto import read_key

    return read_key(keys["key"])


@pytest.fixture(scope="session", autouse=True)
def shared_runs(request, keys, tmp_path_factory):
    """Start every shared seal (and the demo) the selected tests use, in the order they first need
    them, two at a time in the background (tests/prefetch.py says why)."""
    from prefetch import DEMO, SEALS, SharedRuns

    runs = SharedRuns(tmp_path_factory.mktemp("shared"), keys)
    for item in request.session.items:
        for name in item.fixturenames:
            if name in SEALS or name == DEMO:
                runs.start(name)
    yield runs
    runs.close()


@pytest.fixture(scope="session")
def tiny_image_seal(shared_runs) -> Path:
    """tests/recipes/tiny_vit.py, light exposure (plain graphs plus entry-point graphs), encrypted and signed."""
    return shared_runs.seal("tiny_image_seal")


@pytest.fixture(scope="session")
def tiny_text_seal(shared_runs) -> Path:
    """tests/recipes/tiny_text.py, light exposure, encrypted and signed."""
    return shared_runs.seal("tiny_text_seal")


@pytest.fixture(scope="session")
def tiny_pair_seal(shared_runs) -> Path:
    """tests/recipes/tiny_pair.py (image + text towers), light exposure, encrypted and signed."""
    return shared_runs.seal("tiny_pair_seal")


@pytest.fixture(scope="session")
def tiny_text_kinds_seal(shared_runs):
    """(recipe, path): tests/recipes/tiny_text_kinds.py (residual, prompt and scale_shift entries), light,
    encrypted and signed, with residual graphs. One export shared by the entry-kind, residual-graph and benchmark tests."""
    from small_nets import text_kinds_recipe

    return text_kinds_recipe(), shared_runs.seal("tiny_text_kinds_seal")


@pytest.fixture(scope="session")
def minilm_seal(shared_runs) -> Path:
    """export/minilm.py (all-MiniLM-L6-v2), light, encrypted and signed: the real text backbone's one export."""
    return shared_runs.seal("minilm_seal")


@pytest.fixture(scope="session")
def demo_run(shared_runs) -> dict:
    """`sealkit demo` (the README's main job) on mnist at a tiny budget, run once from a fresh folder:
    keys, an EfficientNet-Lite0 seal at 32 px, output and lga, the verdict (tests/test_demo.py)."""
    return shared_runs.demo()


@pytest.fixture(scope="session")
def efficientnet_seal(demo_run):
    """(recipe, path, key bytes): the demo's export of export/efficientnet_lite0.py at 32 px (its default
    residual entries), light, encrypted and signed. The real backbone's one export in the suite (about a
    minute), shared by the demo, the parity and the benchmark smoke tests."""
    from prefetch import DEMO_IMAGE_SIZE

    from sealkit.compile.recipe import load_recipe
    from sealkit.seal.crypto import read_key

    result, out = demo_run["result"], demo_run["out"]
    if result.returncode != 0:
        pytest.fail(f"sealkit demo, which exports the EfficientNet-Lite0 seal, failed: {result.stderr[-2000:]}")
    recipe = load_recipe(ROOT / "export" / "efficientnet_lite0.py", image_size=DEMO_IMAGE_SIZE)
    return recipe, out / f"efficientnet_lite0-{DEMO_IMAGE_SIZE}-residual.seal", read_key(out / "keys" / "seal.key")


@pytest.fixture(scope="module")
def torch_one_thread():
    """Train single-threaded for a whole test module (tests/synthetic.py says why); modules opt in
    with `pytestmark = pytest.mark.usefixtures("torch_one_thread")`."""
    from synthetic import one_torch_thread

    with one_torch_thread():
        yield


# Opened seals (one onnxruntime thread: tests run beside torch, and two thread pools on two cores thrash).
@pytest.fixture(scope="module")
def image_seal(tiny_image_seal, key_bytes):
    from sealkit.runtime.seal import open_seal

    return open_seal(tiny_image_seal, key=key_bytes, threads=1)


@pytest.fixture(scope="module")
def text_seal(tiny_text_seal, key_bytes):
    from sealkit.runtime.seal import open_seal

    return open_seal(tiny_text_seal, key=key_bytes, threads=1)


@pytest.fixture(scope="module")
def pair_seal(tiny_pair_seal, key_bytes):
    from sealkit.runtime.seal import open_seal

    return open_seal(tiny_pair_seal, key=key_bytes, threads=1)


@pytest.fixture(scope="module")
def text_adapter(text_seal, tmp_path_factory):
    """A dga classify adapter (text head, two prompt tokens) trained for two steps on the tiny text seal."""
    from synthetic import one_torch_thread, permuted_colour_texts

    from sealkit.adapters.config import AdapterConfig
    from sealkit.train.api import adapt
    from sealkit.train.loop import TrainConfig

    out = tmp_path_factory.mktemp("text-adapter") / "words.adapter"
    data = permuted_colour_texts(2, seed=0)
    with one_torch_thread():
        adapt(text_seal, data, data, out, method="dga", config=TrainConfig(steps=2, batch=6, eval_every=2), adapter_config=AdapterConfig("dga", text_prompts=2, output_hidden=8), progress=False, zero_shot=False)
    return out
