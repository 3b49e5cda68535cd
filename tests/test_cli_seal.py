"""The owner's commands, run as a user runs them: `python -m sealkit keygen|export|inspect|check`.

Every expected failure must end with a non-zero exit code (the error family's), exactly one line on
stderr that starts with `error:`, and no traceback.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from cli_harness import assert_ok, assert_one_line_error, sealkit

from sealkit.errors import (
    ExportError,
    ParityError,
    RecipeError,
    SealFormatError,
    SealIntegrityError,
    SealKeyError,
    SealkitError,
    SealSignatureError,
)

ROOT = Path(__file__).resolve().parent.parent
TINY_VIT = ROOT / "tests" / "recipes" / "tiny_vit.py"

BRANCHY_RECIPE = """
import torch
from torch import nn
from sealkit.compile.recipe import InputSpec, Recipe, TowerRecipe


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.export cannot trace it
            return self.proj(x)
        return -self.proj(x)


def recipe():
    tower = TowerRecipe(name="branchy_tower", modality="image", module=Branchy(),
                  inputs=[InputSpec("features", torch.randn(2, 8))], preprocessing={"kind": "image", "size": [1, 8]})
    return Recipe(name="branchy", towers=[tower])
"""

PLAIN_RECIPE = """
import torch
from torch import nn
from sealkit.compile.recipe import InputSpec, Recipe, TowerRecipe


def recipe():
    tower = TowerRecipe(name="plain", modality="image", module=nn.Linear(8, 4),
                  inputs=[InputSpec("features", torch.randn(2, 8))], preprocessing={"kind": "image", "size": [1, 8]})
    return Recipe(name="plain", towers=[tower])
"""

RAISING_RECIPE = """
raise RuntimeError("the weights server is down")
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def cli_keys(workdir) -> dict[str, Path]:
    result = sealkit("keygen", "--out", workdir / "keys")
    assert_ok(result)
    keys = {"key": workdir / "keys" / "seal.key", "sign_key": workdir / "keys" / "sign.key", "sign_pub": workdir / "keys" / "sign.pub"}
    for path in keys.values():
        assert path.is_file() and path.stat().st_size > 0
        assert str(path) in result.stdout
    assert len(keys["key"].read_text().strip()) == 64
    assert keys["key"].stat().st_mode & 0o077 == 0 and keys["sign_key"].stat().st_mode & 0o077 == 0
    return keys


@pytest.fixture(scope="module")
def other_keys(workdir) -> dict[str, Path]:
    assert_ok(sealkit("keygen", "--out", workdir / "other"))
    return {"key": workdir / "other" / "seal.key", "sign_pub": workdir / "other" / "sign.pub"}


@pytest.fixture(scope="module")
def cli_seal(workdir, cli_keys) -> Path:
    out = workdir / "tiny.seal"
    result = sealkit("export", TINY_VIT, "--out", out, "--key", cli_keys["key"], "--sign-key", cli_keys["sign_key"])
    assert_ok(result)
    assert out.is_file()
    assert "exposure dark" in result.stdout and "encrypted" in result.stdout and "signed" in result.stdout
    assert "NOT encrypted" not in result.stdout and "unsigned" not in result.stdout
    return out


@pytest.fixture()
def recipe_file(tmp_path):
    def write(text: str, name: str = "recipe.py") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


# --- the happy path ---------------------------------------------------------------------------


def test_keygen_refuses_to_overwrite_existing_keys(workdir, cli_keys):
    before = cli_keys["key"].read_bytes()
    result = sealkit("keygen", "--out", workdir / "keys")
    assert_one_line_error(result, SealKeyError, "refusing to overwrite", str(cli_keys["key"]))
    assert cli_keys["key"].read_bytes() == before


def test_inspect_json_describes_the_exported_seal_and_verifies_it(cli_seal, cli_keys):
    result = sealkit("inspect", cli_seal, "--key", cli_keys["key"], "--verify-key", cli_keys["sign_pub"], "--json")
    assert_ok(result)
    report = json.loads(result.stdout)
    manifest = report["manifest"]
    assert manifest["name"] == "tiny-vit" and manifest["exposure"] == "dark" and manifest["format_version"] == 2
    assert manifest["encryption"]["algorithm"] == "AES-256-GCM"
    tower = manifest["towers"]["image"]
    assert tower["inputs"][0]["name"] == "pixels" and tower["inputs"][0]["shape"] == ["batch", 3, 32, 32]
    assert tower["output"]["shape"] == ["batch", 48]
    assert tower["entry_points"] == [] and set(tower["graphs"]) == {"forward", "vjp"}
    providers = report["checks"].pop("providers")  # what a session of the seal runs on (--device auto)
    assert report["checks"] == {"integrity": "ok", "signature": "verified", "key": "opens the seal"}
    assert providers.endswith("CPUExecutionProvider")


def test_inspect_without_key_or_verify_key_says_what_it_did_not_check(cli_seal):
    result = sealkit("inspect", cli_seal)
    assert_ok(result)
    assert "tower 'image'" in result.stdout and "pixels" in result.stdout
    assert "not verified" in result.stdout and "key: not given" in result.stdout


def test_check_passes_on_the_seal_the_recipe_exported(cli_seal, cli_keys):
    result = sealkit("check", cli_seal, TINY_VIT, "--key", cli_keys["key"])
    assert_ok(result)
    assert "parity ok" in result.stdout


# --- expected failures: one line, the family's exit code, no traceback --------------------------


def test_check_against_a_different_model_fails_parity(cli_seal, cli_keys):
    result = sealkit("check", cli_seal, TINY_VIT, "--key", cli_keys["key"], "--set", "seed=1")
    assert_one_line_error(result, ParityError, "tower 'image'", "differs from torch")


def test_a_wrong_key_is_one_line(cli_seal, other_keys):
    assert_one_line_error(sealkit("inspect", cli_seal, "--key", other_keys["key"]), SealKeyError, "wrong key")


def test_a_missing_key_for_check_is_one_line(cli_seal):
    assert_one_line_error(sealkit("check", cli_seal, TINY_VIT), SealKeyError, "encrypted", "--key")


def test_a_tampered_seal_is_one_line(cli_seal, cli_keys, tmp_path):
    data = bytearray(cli_seal.read_bytes())
    data[-100] ^= 0x01  # inside the last blob
    tampered = tmp_path / "tampered.seal"
    tampered.write_bytes(bytes(data))
    assert_one_line_error(sealkit("inspect", tampered, "--key", cli_keys["key"]), SealIntegrityError, "tampered")


def test_a_truncated_seal_is_one_line(cli_seal, cli_keys, tmp_path):
    truncated = tmp_path / "truncated.seal"
    truncated.write_bytes(cli_seal.read_bytes()[: cli_seal.stat().st_size // 2])
    assert_one_line_error(sealkit("inspect", truncated, "--key", cli_keys["key"]), SealIntegrityError, "truncated")


def test_a_file_that_is_not_a_seal_is_one_line(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"\x08\x07" + os.urandom(200))
    assert_one_line_error(sealkit("inspect", bogus), SealFormatError, "not a sealkit seal")


def test_a_signature_from_another_key_is_one_line(cli_seal, other_keys):
    assert_one_line_error(sealkit("inspect", cli_seal, "--verify-key", other_keys["sign_pub"]), SealSignatureError, "different key")


def test_a_missing_recipe_file_is_one_line(workdir, cli_keys):
    result = sealkit("export", workdir / "no_such_recipe.py", "--out", workdir / "x.seal", "--key", cli_keys["key"])
    assert_one_line_error(result, RecipeError, "no_such_recipe.py", "not found")


def test_a_recipe_raising_at_import_is_one_line(recipe_file, tmp_path):
    path = recipe_file(RAISING_RECIPE, "broken.py")
    result = sealkit("export", path, "--out", tmp_path / "x.seal", "--no-encrypt")
    assert_one_line_error(result, RecipeError, "broken.py", "failed to import", "RuntimeError", "the weights server is down")
    assert not (tmp_path / "x.seal").exists()


def test_a_module_torch_export_cannot_trace_is_one_line_naming_the_tower(recipe_file, tmp_path):
    path = recipe_file(BRANCHY_RECIPE, "branchy.py")
    result = sealkit("export", path, "--out", tmp_path / "x.seal", "--no-encrypt")
    assert_one_line_error(result, ExportError, "tower 'branchy_tower'", "failed to export")
    assert not (tmp_path / "x.seal").exists()


def test_light_exposure_without_entry_points_is_one_line(recipe_file, tmp_path):
    path = recipe_file(PLAIN_RECIPE, "plain.py")
    result = sealkit("export", path, "--out", tmp_path / "x.seal", "--no-encrypt", "--exposure", "light")
    assert_one_line_error(result, ExportError, "--exposure light", "entry points", "'plain'")
    assert not (tmp_path / "x.seal").exists()


def test_export_without_a_key_or_no_encrypt_is_one_line(tmp_path):
    result = sealkit("export", TINY_VIT, "--out", tmp_path / "x.seal")
    line = assert_one_line_error(result, SealkitError, "--key", "--no-encrypt")
    assert line.startswith("error: export encrypts by default")
    assert not (tmp_path / "x.seal").exists()


def test_an_unknown_recipe_option_is_one_line(tmp_path):
    result = sealkit("export", TINY_VIT, "--out", tmp_path / "x.seal", "--no-encrypt", "--set", "image_size=64")
    assert_one_line_error(result, RecipeError, "image_size", "seed")
