"""A device runs seals without torch: the runtime, the container and the CLI never import it.

Each check runs in a fresh interpreter, because the test process itself has torch loaded already.
The harness (tests/no_torch.py) records where torch was first imported from and checks sys.modules.
"""

from __future__ import annotations

import pytest
from no_torch import assert_ok, run_without_torch


def test_the_harness_catches_an_import_of_torch():
    """Control: the same harness fails, and says from where, when something imports torch."""
    result = run_without_torch("import json\ndef load():\n    import torch\nload()")
    assert result.returncode != 0
    assert "torch was imported on the device path" in result.stderr
    assert "in load" in result.stderr


def test_importing_the_device_modules_does_not_import_torch():
    assert_ok(
        run_without_torch(
            """
            import sealkit, sealkit.errors, sealkit.fileio
            import sealkit.seal.container, sealkit.seal.crypto, sealkit.seal.manifest, sealkit.seal.obfuscate
            import sealkit.runtime.seal
            import sealkit.cli
            """
        )
    )


def test_opening_a_seal_and_running_forward_vjp_and_embed_does_not_import_torch(tiny_image_seal, tiny_text_seal, keys):
    assert_ok(
        run_without_torch(
            """
            import numpy as np
            from sealkit.runtime.seal import open_seal
            image_path, text_path, key, pub = sys.argv[1:5]

            seal = open_seal(image_path, key=key, verify_key=pub)
            tower = seal.tower("image")
            x = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
            entries = {ep.name: np.zeros(ep.shape, np.float32) for ep in tower.entry_points}
            assert tower.forward(x).shape == (3, 48)
            result = tower.vjp(x, np.ones((3, 48), np.float32), entries, chunk=2)
            assert result.input_grads["pixels"].shape == x.shape
            assert set(result.entry_grads) == set(entries)

            text = open_seal(text_path, key=key).tower("text")
            ids = np.array([[2, 40, 41, 3]], np.int64)
            feeds = {"token_embeddings": text.embed_tokens(ids), "attention_mask": np.ones_like(ids)}
            assert text.vjp(feeds, np.ones((1, 48), np.float32)).input_grads["token_embeddings"].shape == (1, 4, 64)
            """,
            str(tiny_image_seal),
            str(tiny_text_seal),
            str(keys["key"]),
            str(keys["sign_pub"]),
        )
    )


@pytest.mark.parametrize("command", ["inspect", "inspect-json"])
def test_the_cli_inspects_a_seal_without_importing_torch(tiny_image_seal, keys, command):
    flags = ["--json"] if command == "inspect-json" else []
    assert_ok(
        run_without_torch(
            """
            import sealkit.cli
            sys.argv = ["sealkit", "inspect", *sys.argv[1:]]
            try:
                sealkit.cli.main()
            except SystemExit as exc:
                assert not exc.code, f"inspect exited with {exc.code}"
            """,
            str(tiny_image_seal),
            "--key",
            str(keys["key"]),
            "--verify-key",
            str(keys["sign_pub"]),
            *flags,
        )
    )
