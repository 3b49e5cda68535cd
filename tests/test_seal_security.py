"""What a seal hides and what it refuses: no plaintext weights, no names, no tampering, no wrong key.

The file layout these tests edit by hand is the one docs/format.md specifies: 8 magic bytes, a
2-byte version, a 4-byte header length, the JSON header, then the blob region.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest

from sealkit.compile.recipe import load_recipe
from sealkit.errors import SealFormatError, SealIntegrityError, SealKeyError, SealSignatureError
from sealkit.runtime.seal import open_seal
from sealkit.seal.container import read_seal, write_seal
from sealkit.seal.crypto import write_keys
from sealkit.seal.manifest import Manifest, canonical_json
from sealkit.seal.obfuscate import WEIGHTS_BLOB

RECIPES = Path(__file__).resolve().parent / "recipes"
MAGIC = b"SEALKIT\x00"
PREFIX = struct.Struct("<8sHI")
GRAPH_KINDS = ("forward", "vjp", "forward_entries", "vjp_entries", "embed")
BROKEN = (SealFormatError, SealIntegrityError)


# --- helpers ----------------------------------------------------------------------------------


def split(data: bytes) -> tuple[int, dict, bytes]:
    """(format version, header dict, blob region) of a seal file's bytes."""
    magic, version, length = PREFIX.unpack_from(data)
    assert magic == MAGIC
    return version, json.loads(data[PREFIX.size : PREFIX.size + length]), data[PREFIX.size + length :]


def join(header: dict, region: bytes, version: int = 2) -> bytes:
    raw = json.dumps(header, sort_keys=True).encode("utf-8")
    return PREFIX.pack(MAGIC, version, len(raw)) + raw + region


def header_span(data: bytes) -> tuple[int, int]:
    _, _, length = PREFIX.unpack_from(data)
    return PREFIX.size, PREFIX.size + length


def reseal_id(manifest: dict) -> None:
    """Recompute the seal id after editing a manifest, as a forger without the signing key would."""
    manifest["seal_id"] = hashlib.sha256(canonical_json({k: v for k, v in manifest.items() if k != "seal_id"})).hexdigest()[:32]


def blob_range(header: dict, name: str) -> tuple[int, int]:
    record = next(b for b in header["manifest"]["blobs"] if b["name"] == name)
    return record["offset"], record["offset"] + record["length"]


def graph_blob_names(manifest) -> list[str]:
    return [b.name for b in manifest.blobs if b.name.rsplit("/", 1)[-1] in GRAPH_KINDS]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def contains_tensor(haystack: bytes, array: np.ndarray) -> dict[str, bool]:
    """Whether the tensor's raw float32 bytes (as stored, or transposed) or 64-byte windows of them occur."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    layouts = [array.tobytes()]
    if array.ndim == 2:
        layouts.append(np.ascontiguousarray(array.T).tobytes())
    found = {"whole": any(raw in haystack for raw in layouts)}
    size = len(layouts[0])
    for start in (0, size // 2 - size // 2 % 4, size - 64):
        found[f"window@{start}"] = any(raw[start : start + 64] in haystack for raw in layouts)
    return found


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_recipe():
    return load_recipe(RECIPES / "tiny_vit.py")


@pytest.fixture(scope="module")
def text_recipe():
    return load_recipe(RECIPES / "tiny_text.py")


@pytest.fixture()
def seal_copy(tiny_image_seal, tmp_path) -> Path:
    """A private copy of the encrypted, signed tiny image seal, free to damage."""
    return Path(shutil.copy(tiny_image_seal, tmp_path / "copy.seal"))


@pytest.fixture(scope="module")
def secret_weights(image_recipe) -> dict[str, np.ndarray]:
    params = dict(image_recipe.towers[0].module.named_parameters())
    return {name: params[name].detach().numpy() for name in ("blocks.0.attn.qkv.weight", "patch_embed.weight", "pos_embed", "blocks.2.mlp.0.weight")}


@pytest.fixture(scope="module")
def unencrypted_seal(tiny_image_seal, key_bytes, tmp_path_factory) -> Path:
    """The same tiny seal written without encryption (what `sealkit export --no-encrypt` writes)."""
    seal = open_seal(tiny_image_seal, key=key_bytes)
    manifest = Manifest.from_dict(seal.manifest.to_dict())
    blobs = {record.name: seal.blob(record.name) for record in seal.manifest.blobs}
    path = tmp_path_factory.mktemp("plain") / "plain.seal"
    write_seal(path, manifest, blobs, key=None)
    return path


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory) -> dict[str, Path]:
    return write_keys(tmp_path_factory.mktemp("other-keys"))


# --- no plaintext weights -----------------------------------------------------------------------


def test_the_weight_search_finds_weights_in_an_unencrypted_seal(unencrypted_seal, secret_weights):
    """Positive control: without encryption the pooled weights lie in the file as raw float32."""
    data = unencrypted_seal.read_bytes()
    assert not read_seal(unencrypted_seal).manifest.encrypted
    for name, array in secret_weights.items():
        assert all(contains_tensor(data, array).values()), name


def test_an_encrypted_seal_contains_no_plaintext_weight_bytes(tiny_image_seal, key_bytes, secret_weights):
    data = tiny_image_seal.read_bytes()
    plaintext_pool = open_seal(tiny_image_seal, key=key_bytes).blob(WEIGHTS_BLOB)
    for name, array in secret_weights.items():
        assert all(contains_tensor(plaintext_pool, array).values()), f"{name} is not in the decrypted weight pool"
        found = contains_tensor(data, array)
        assert not any(found.values()), f"{name} leaks in the encrypted file: {found}"


def test_an_encrypted_seal_contains_no_plaintext_graph_bytes(tiny_image_seal, key_bytes):
    data = tiny_image_seal.read_bytes()
    seal = open_seal(tiny_image_seal, key=key_bytes)
    for name in graph_blob_names(seal.manifest):
        graph = seal.blob(name)
        assert len(graph) > 1000
        for start in (0, len(graph) // 2, len(graph) - 64):
            assert graph[start : start + 64] not in data, f"plaintext of {name} at {start}"


# --- keys -------------------------------------------------------------------------------------


def test_a_wrong_key_is_refused_as_a_key_error(tiny_image_seal, key_bytes):
    wrong = bytes(b ^ 0x5A for b in key_bytes)
    with pytest.raises(SealKeyError, match="wrong key"):
        open_seal(tiny_image_seal, key=wrong)
    with pytest.raises(SealKeyError, match="wrong key"):
        open_seal(tiny_image_seal, key=os.urandom(32))


def test_a_missing_key_is_a_key_error(tiny_image_seal, monkeypatch):
    monkeypatch.delenv("SEALKIT_KEY", raising=False)
    with pytest.raises(SealKeyError, match="encrypted"):
        open_seal(tiny_image_seal)


def test_an_unreadable_or_malformed_key_file_is_a_key_error(tiny_image_seal, tmp_path, monkeypatch):
    monkeypatch.delenv("SEALKIT_KEY", raising=False)
    with pytest.raises(SealKeyError, match="cannot read key file"):
        open_seal(tiny_image_seal, key=tmp_path / "absent.key")
    bad = write(tmp_path / "bad.key", b"not a key\n")
    with pytest.raises(SealKeyError, match="not a sealkit key"):
        open_seal(tiny_image_seal, key=bad)


def test_the_key_file_is_found_through_SEALKIT_KEY(tiny_image_seal, keys, monkeypatch):
    monkeypatch.setenv("SEALKIT_KEY", str(keys["key"]))
    assert open_seal(tiny_image_seal).tower("image").forward(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 48)


# --- tampering and truncation -------------------------------------------------------------------


def test_a_flipped_byte_anywhere_in_the_header_is_refused(seal_copy, keys):
    """With the owner's public key, no single flipped header byte yields a usable seal."""
    data = seal_copy.read_bytes()
    start, end = header_span(data)
    positions = sorted({0, 7, 8, 9, 10, 13} | set(np.linspace(start, end - 1, 60).astype(int).tolist()))
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        write(seal_copy, bytes(damaged))
        with pytest.raises(BROKEN + (SealSignatureError,)):
            open_seal(seal_copy, key=keys["key"], verify_key=keys["sign_pub"])


def test_a_flipped_byte_in_the_manifest_is_refused_even_without_a_verify_key(seal_copy, keys):
    data = seal_copy.read_bytes()
    for needle in (b'"exposure": "', b'"parameters": ', b'"sha256": "', b'"key_id": "', b'"shape": ["batch", 3, ', b'"kind": "'):
        position = data.index(needle) + len(needle)  # the first character of the value
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        write(seal_copy, bytes(damaged))
        with pytest.raises(BROKEN):
            open_seal(seal_copy, key=keys["key"])


@pytest.mark.parametrize("blob", ["image/forward", "image/vjp_entries", WEIGHTS_BLOB])
@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])
def test_a_flipped_byte_in_a_blob_is_an_integrity_error(seal_copy, keys, blob, where):
    data = seal_copy.read_bytes()
    version, header, _ = split(data)
    _, header_end = header_span(data)
    first, last = blob_range(header, blob)
    damaged = bytearray(data)
    damaged[header_end + first + int(where * (last - first - 1))] ^= 0x80
    write(seal_copy, bytes(damaged))
    with pytest.raises(SealIntegrityError, match=re.escape(blob)):
        read_seal(seal_copy)
    with pytest.raises(SealIntegrityError):
        open_seal(seal_copy, key=keys["key"])


@pytest.mark.parametrize("blob", ["image/forward", WEIGHTS_BLOB])
def test_ciphertext_edited_with_matching_hashes_fails_authentication(seal_copy, keys, blob):
    """A forger who fixes the hashes and the seal id still cannot get past AES-GCM (or the signature)."""
    version, header, region = split(seal_copy.read_bytes())
    first, last = blob_range(header, blob)
    region = bytearray(region)
    region[(first + last) // 2] ^= 0x01
    record = next(b for b in header["manifest"]["blobs"] if b["name"] == blob)
    record["sha256"] = hashlib.sha256(bytes(region[first:last])).hexdigest()
    reseal_id(header["manifest"])
    write(seal_copy, join(header, bytes(region), version))

    read_seal(seal_copy)  # consistent on its face: hashes and id match
    with pytest.raises(SealSignatureError):
        open_seal(seal_copy, key=keys["key"], verify_key=keys["sign_pub"])
    with pytest.raises(SealIntegrityError, match="authentication"):
        seal = open_seal(seal_copy, key=keys["key"])
        seal.tower("image").forward(np.zeros((1, 3, 32, 32), np.float32))


def test_a_blob_moved_under_another_name_fails_authentication(seal_copy, keys):
    """Each blob's name is bound into its encryption, so swapping two graphs is caught."""
    version, header, region = split(seal_copy.read_bytes())
    blobs = {b["name"]: b for b in header["manifest"]["blobs"]}
    for field in ("offset", "length", "sha256", "nonce"):
        blobs["image/forward"][field], blobs["image/vjp"][field] = blobs["image/vjp"][field], blobs["image/forward"][field]
    reseal_id(header["manifest"])
    write(seal_copy, join(header, region, version))
    seal = open_seal(seal_copy, key=keys["key"])
    with pytest.raises(SealIntegrityError, match="authentication"):
        seal.tower("image").forward(np.zeros((1, 3, 32, 32), np.float32))


def test_truncation_at_any_point_is_a_clean_error(seal_copy, keys):
    data = seal_copy.read_bytes()
    start, end = header_span(data)
    cuts = [0, 4, 9, start, (start + end) // 2, end, end + 1000, (end + len(data)) // 2, len(data) - 1]
    for cut in cuts:
        write(seal_copy, data[:cut])
        with pytest.raises(BROKEN):
            open_seal(seal_copy, key=keys["key"])
    write(seal_copy, data + b"\0")
    with pytest.raises(SealIntegrityError, match="trailing"):
        read_seal(seal_copy)


def test_a_seal_cut_short_after_opening_is_caught_when_a_graph_loads(seal_copy, keys):
    seal = open_seal(seal_copy, key=keys["key"])  # decrypts the weights, loads graphs lazily
    data = seal_copy.read_bytes()
    _, header_end = header_span(data)
    write(seal_copy, data[: header_end + 100])  # every graph blob is now cut short
    with pytest.raises(SealIntegrityError, match="cut short"):
        seal.tower("image").forward(np.zeros((1, 3, 32, 32), np.float32))


def test_an_unknown_format_version_is_a_format_error(seal_copy, keys, tmp_path):
    version, header, region = split(seal_copy.read_bytes())
    assert version == 2
    future = write(tmp_path / "future.seal", join(header, region, version=99))
    with pytest.raises(SealFormatError, match="version 99"):
        open_seal(future, key=keys["key"])

    header["manifest"]["format_version"] = 99
    reseal_id(header["manifest"])
    future_manifest = write(tmp_path / "future-manifest.seal", join(header, region, version=2))
    with pytest.raises(SealFormatError, match="version 99"):
        read_seal(future_manifest)


def test_files_that_are_not_seals_are_format_errors(tmp_path, keys):
    with pytest.raises(SealFormatError, match="no seal"):
        read_seal(tmp_path / "absent.seal")
    with pytest.raises(SealFormatError, match="not a sealkit seal"):
        read_seal(write(tmp_path / "model.onnx", os.urandom(4096)))
    not_manifest = join({"manifest": {"format": "something-else"}, "signature": None}, b"")
    with pytest.raises(SealFormatError):
        read_seal(write(tmp_path / "other.seal", not_manifest))


# --- signatures -------------------------------------------------------------------------------


def test_the_signature_verifies_with_the_owners_public_key(tiny_image_seal, keys):
    read_seal(tiny_image_seal).verify_signature(keys["sign_pub"])
    seal = open_seal(tiny_image_seal, key=keys["key"], verify_key=keys["sign_pub"])
    assert seal.tower("image").forward(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 48)


def test_another_keypairs_public_key_is_a_signature_error(tiny_image_seal, keys, other_keys):
    with pytest.raises(SealSignatureError, match="different key"):
        open_seal(tiny_image_seal, key=keys["key"], verify_key=other_keys["sign_pub"])


def test_an_unsigned_seal_given_a_verify_key_is_a_signature_error(seal_copy, keys):
    version, header, region = split(seal_copy.read_bytes())
    header["signature"] = None
    write(seal_copy, join(header, region, version))
    assert open_seal(seal_copy, key=keys["key"]).seal_id  # unsigned seals open when no verify key is asked for
    with pytest.raises(SealSignatureError, match="not signed"):
        open_seal(seal_copy, key=keys["key"], verify_key=keys["sign_pub"])


def test_a_forged_signature_or_a_re_signed_manifest_is_a_signature_error(seal_copy, keys):
    data = seal_copy.read_bytes()
    version, header, region = split(data)
    value = header["signature"]["value"]
    header["signature"]["value"] = ("0" if value[0] != "0" else "1") + value[1:]
    write(seal_copy, join(header, region, version))
    with pytest.raises(SealSignatureError, match="does not verify"):
        open_seal(seal_copy, key=keys["key"], verify_key=keys["sign_pub"])

    version, header, region = split(data)
    header["manifest"]["name"] = "someone-elses-model"
    reseal_id(header["manifest"])
    write(seal_copy, join(header, region, version))
    with pytest.raises(SealSignatureError, match="does not verify"):
        open_seal(seal_copy, key=keys["key"], verify_key=keys["sign_pub"])


def test_a_non_key_file_as_verify_key_is_a_signature_error(tiny_image_seal, keys):
    with pytest.raises(SealSignatureError):
        open_seal(tiny_image_seal, key=keys["key"], verify_key=keys["key"])
    with pytest.raises(SealSignatureError):
        open_seal(tiny_image_seal, key=keys["key"], verify_key=keys["sign_key"])


# --- opacity ----------------------------------------------------------------------------------


def secret_names(recipe_path: Path, recipe, manifest) -> set[str]:
    """Every module and parameter path of the towers, their components and custom class names.

    Left out: `weight` and `bias` (what every framework calls a parameter) and anything that is
    part of the public interface anyway (input, output and entry-point names in the manifest).
    """
    public = set()
    for spec in manifest.towers.values():
        public |= {s.name for s in spec.inputs} | {spec.output.name} | {e.name for e in spec.entry_points}
        public |= {f"grad_{s.name}" for s in spec.inputs} | {f"grad_{spec.output.name}"} | {f"grad_{e.name}" for e in spec.entry_points}
    names = {recipe_path.stem}
    for tower in recipe.towers:
        for module in (tower.module, tower.embed):
            if module is None:
                continue
            for path, sub in module.named_modules():
                names.add(path)
                names.update(path.split("."))
                if not type(sub).__module__.startswith("torch."):
                    names.add(type(sub).__name__)
            for path, _ in list(module.named_parameters()) + list(module.named_buffers()):
                names.add(path)
                names.update(path.split("."))
    return {
        n
        for n in names
        if len(n) >= 3 and not n.isdigit() and n not in ("weight", "bias") and not any(n in p for p in public)
    }


@pytest.mark.parametrize("which", ["image", "text"])
def test_no_module_or_parameter_name_survives_in_graphs_or_manifest(which, tiny_image_seal, tiny_text_seal, image_recipe, text_recipe, key_bytes):
    path, recipe, recipe_file = {
        "image": (tiny_image_seal, image_recipe, RECIPES / "tiny_vit.py"),
        "text": (tiny_text_seal, text_recipe, RECIPES / "tiny_text.py"),
    }[which]
    seal = open_seal(path, key=key_bytes)
    names = secret_names(recipe_file, recipe, seal.manifest)
    # the search really covers the names of this model
    assert {"blocks", "pos_embed", "head", "blocks.1"} <= names
    if which == "image":
        assert {"patch_embed", "cls_token", "norm1", "qkv", "attn", "proj", "mlp", "blocks.0.attn.qkv.weight", "TinyViT"} <= names
    graphs = graph_blob_names(seal.manifest)
    assert len(graphs) == (4 if which == "image" else 5)
    _, raw_header, _ = split(path.read_bytes())
    manifest_text = json.dumps(raw_header).encode("utf-8")
    for graph in graphs:
        data = seal.blob(graph)
        leaked = sorted(n for n in names if n.encode("utf-8") in data)
        assert not leaked, f"{graph} contains {leaked}"
    leaked = sorted(n for n in names if n.encode("utf-8") in manifest_text)
    assert not leaked, f"the header contains {leaked}"


@pytest.mark.parametrize("which", ["image", "text"])
def test_graphs_carry_no_doc_strings_metadata_producer_or_original_value_names(which, tiny_image_seal, tiny_text_seal, key_bytes):
    seal = open_seal({"image": tiny_image_seal, "text": tiny_text_seal}[which], key=key_bytes)
    spec = seal.manifest.towers[which]
    interface = {s.name for s in spec.inputs} | {spec.output.name} | {e.name for e in spec.entry_points}
    interface |= {f"grad_{n}" for n in interface}
    if spec.embed:
        interface |= {spec.embed["input"].name, spec.embed["output"].name}
    for graph in graph_blob_names(seal.manifest):
        model = onnx.ModelProto.FromString(seal.blob(graph))
        assert model.doc_string == "" and model.producer_name == "" and model.producer_version == "" and model.domain == ""
        assert len(model.metadata_props) == 0 and len(model.functions) == 0
        g = model.graph
        assert g.doc_string == "" and len(g.metadata_props) == 0 and len(g.value_info) == 0
        assert g.name == "g"
        for node in g.node:
            assert node.name == "" and node.doc_string == "" and len(node.metadata_props) == 0, graph
            for attr in node.attribute:
                assert attr.doc_string == ""
        for init in g.initializer:
            assert re.fullmatch(r"[wc]\d+", init.name), init.name
            if init.data_location == onnx.TensorProto.EXTERNAL:
                assert {e.key: e.value for e in init.external_data}["location"] == WEIGHTS_BLOB
        assert {v.name for v in list(g.input) + list(g.output)} <= interface, graph
        values = {name for node in g.node for name in list(node.input) + list(node.output) if name}
        odd = sorted(v for v in values if not re.fullmatch(r"[vwct]\d+", v) and v not in interface)
        assert not odd, f"{graph} keeps value names {odd[:5]}"


def test_blob_spliced_from_another_seal_with_the_same_key_is_rejected(tmp_path, key_bytes):
    """Each seal has its own salt in the associated data, so recomputed hashes and ids do not help."""
    from sealkit.seal.container import read_seal, write_seal
    from sealkit.seal.manifest import Manifest

    def make(path, payload):
        manifest = Manifest(name="m", exposure="dark", towers={}, blobs=[], producer={"name": "sealkit"})
        write_seal(path, manifest, {"weights": payload}, key=key_bytes)

    a, b = tmp_path / "a.seal", tmp_path / "b.seal"
    make(a, b"A" * 64)
    make(b, b"B" * 64)
    sa, sb = read_seal(a), read_seal(b)
    stolen = sb.stored_blob("weights")
    manifest = sa.manifest
    record = manifest.blobs[0]
    manifest.blobs[0] = type(record)(record.name, record.offset, len(stolen), hashlib.sha256(stolen).hexdigest(), sb.manifest.blobs[0].nonce)
    manifest.seal_id = manifest.compute_id()
    header = json.dumps({"manifest": manifest.to_dict(), "signature": None}, sort_keys=True).encode()
    spliced = tmp_path / "spliced.seal"
    spliced.write_bytes(struct.pack("<8sHI", b"SEALKIT\x00", manifest.format_version, len(header)) + header + bytes(stolen))
    opened = read_seal(spliced)  # structure and hashes are consistent...
    with pytest.raises(SealIntegrityError):
        opened.blob("weights", key_bytes)  # ...but the ciphertext belongs to another seal
