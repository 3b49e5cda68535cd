"""Issue 12, items 6, 8 and 9 on seals: the manifest is authenticated by the encryption (format 2),
older seals still open, a malformed nonce is a one-line integrity error, unencrypted or unsigned
seals are reported, a verify key is taken from SEALKIT_VERIFY_KEY wherever a seal is opened, and an
opened seal keeps working after its file is moved away.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_seal_security import join, reseal_id, split, write

import sealkit.seal.container as container
from sealkit.errors import SealIntegrityError, SealSignatureError
from sealkit.runtime.inputs import tower_inputs
from sealkit.runtime.seal import open_seal
from sealkit.seal.container import read_seal, write_seal
from sealkit.seal.crypto import read_signing_key, write_keys

QUERY = ["a red cat", "the big blue ship"]


@pytest.fixture
def seal_copy(tiny_text_seal, tmp_path):
    return shutil.copy(tiny_text_seal, tmp_path / "text.seal")


def _embed(seal) -> np.ndarray:
    tower = seal.tower("text")
    return tower.forward(tower_inputs(tower, QUERY).feeds(tower))


def _rewrite(source, key, out, version: int, encrypt: bool = True, signing_key=None):
    """The same seal's plaintext blobs written again in format `version` (1: before manifest binding)."""
    file = read_seal(source)
    blobs = {record.name: file.blob(record.name, key) for record in file.manifest.blobs}
    manifest = copy.deepcopy(file.manifest)
    saved = container.FORMAT_VERSION
    container.FORMAT_VERSION = version
    try:
        write_seal(out, manifest, blobs, key=key if encrypt else None, signing_key=signing_key)
    finally:
        container.FORMAT_VERSION = saved
    return out


def test_new_seals_are_format_2_and_a_manifest_edit_with_a_recomputed_id_no_longer_decrypts(seal_copy, key_bytes, tmp_path):
    version, header, region = split(seal_copy.read_bytes())
    assert version == 2 and header["manifest"]["format_version"] == 2
    preprocessing = header["manifest"]["towers"]["text"]["preprocessing"]
    preprocessing["max_length"] = int(preprocessing.get("max_length", 128)) * 4  # the forgery
    reseal_id(header["manifest"])
    forged = write(tmp_path / "forged.seal", join(header, region))
    file = read_seal(forged)  # structure and id are consistent: only the key can tell
    with pytest.raises(SealIntegrityError, match="failed authentication: the seal was tampered with"):
        file.blob("weights", key_bytes)
    with pytest.raises(SealIntegrityError):
        open_seal(forged, key=key_bytes)
    # the CLI's inspect --key decrypts every blob, so it refuses the forgery with one line
    (tmp_path / "seal.key").write_text(key_bytes.hex())
    command = [sys.executable, "-m", "sealkit", "inspect", str(forged), "--key", str(tmp_path / "seal.key")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"})
    assert result.returncode == SealIntegrityError.exit_code and result.stderr.count("\n") == 1 and "tampered" in result.stderr


def test_format_1_seals_still_open_and_give_the_same_outputs(seal_copy, key_bytes, tmp_path):
    old = _rewrite(seal_copy, key_bytes, tmp_path / "v1.seal", version=1)
    assert split(old.read_bytes())[0] == 1
    np.testing.assert_array_equal(_embed(open_seal(old, key=key_bytes, threads=1)), _embed(open_seal(seal_copy, key=key_bytes, threads=1)))
    # a format-1 file cannot be passed off as format 2 (or back): the prefix and manifest must agree
    version, header, region = split(old.read_bytes())
    with pytest.raises(SealIntegrityError, match="says format 2 but its manifest says 1"):
        read_seal(write(tmp_path / "mixed.seal", join(header, region, version=2)))


@pytest.mark.parametrize("nonce", ["zz", "", "00", 7, None], ids=["zz", "empty", "short", "number", "none"])
def test_a_malformed_nonce_is_an_integrity_error(seal_copy, key_bytes, tmp_path, nonce):
    version, header, region = split(seal_copy.read_bytes())
    header["manifest"]["blobs"][0]["nonce"] = nonce
    reseal_id(header["manifest"])
    path = write(tmp_path / "nonce.seal", join(header, region, version))
    with pytest.raises(SealIntegrityError):
        file = read_seal(path)
        for record in file.manifest.blobs:
            file.blob(record.name, key_bytes)


def test_unencrypted_or_unsigned_seals_are_reported(seal_copy, key_bytes, keys, tmp_path):
    assert open_seal(seal_copy, key=key_bytes).authenticity_warnings == []
    plain = _rewrite(seal_copy, key_bytes, tmp_path / "plain.seal", version=2, encrypt=False)
    warnings = open_seal(plain, key=key_bytes).authenticity_warnings  # a key given for a plain seal: still said
    assert any("is not encrypted" in w for w in warnings) and any("is not signed" in w for w in warnings)
    signed_plain = _rewrite(seal_copy, key_bytes, tmp_path / "signed.seal", version=2, encrypt=False, signing_key=read_signing_key(keys["sign_key"]))
    assert [w for w in open_seal(signed_plain).authenticity_warnings if "not signed" in w] == []


def test_the_verify_key_comes_from_the_environment_everywhere(seal_copy, key_bytes, keys, tmp_path, monkeypatch):
    other = write_keys(tmp_path / "other")
    monkeypatch.setenv("SEALKIT_VERIFY_KEY", str(other["sign_pub"]))
    with pytest.raises(SealSignatureError, match="different key"):
        open_seal(seal_copy, key=key_bytes)
    monkeypatch.setenv("SEALKIT_VERIFY_KEY", str(keys["sign_pub"]))
    open_seal(seal_copy, key=key_bytes)
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "SEALKIT_KEY": str(keys["key"]), "SEALKIT_VERIFY_KEY": str(other["sign_pub"])}
    for command in (["predict", str(seal_copy), "a red cat", "--adapter", str(tmp_path / "none.adapter")], ["inspect", str(seal_copy)]):
        result = subprocess.run([sys.executable, "-m", "sealkit", *command], capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == SealSignatureError.exit_code, (command, result.stderr)
        assert result.stderr.startswith("error:") and result.stderr.count("\n") == 1
    flags = subprocess.run([sys.executable, "-m", "sealkit", "eval", "--help"], capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "300"})
    assert "--verify-key" in flags.stdout


def test_an_opened_seal_keeps_working_after_its_file_is_moved(seal_copy, key_bytes, tmp_path):
    seal = open_seal(seal_copy, key=key_bytes, threads=1)  # tokenizer and graphs not loaded yet
    expected = _embed(open_seal(shutil.copy(seal_copy, tmp_path / "reference.seal"), key=key_bytes, threads=1))
    os.rename(seal_copy, tmp_path / "moved-away.seal")
    (tmp_path / "moved-away.seal").unlink()
    np.testing.assert_array_equal(_embed(seal), expected)
