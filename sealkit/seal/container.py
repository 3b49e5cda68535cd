"""Read and write the seal container: magic, version, JSON header, then the blob region.

`write_seal` encrypts and signs; `read_seal` checks structure, hashes, seal id and signature, and
decrypts blobs in memory on request. See docs/format.md. Never imports torch or onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealkit.errors import SealFormatError, SealIntegrityError, SealKeyError
from sealkit.fileio import atomic_write_bytes
from sealkit.seal import crypto
from sealkit.seal.manifest import FORMAT_VERSION, READABLE_VERSIONS, BlobRecord, Manifest, canonical_json

MAGIC = b"SEALKIT\x00"
_PREFIX = struct.Struct("<8sHI")  # magic, format version, header length


def write_seal(
    path: str | Path,
    manifest: Manifest,
    blobs: dict[str, bytes],
    key: bytes | None = None,
    signing_key: crypto.Ed25519PrivateKey | None = None,
) -> Manifest:
    """Write `blobs` under `manifest` (whose blob list and id are filled in here). Returns the final manifest."""
    stored: list[bytes] = []
    records: list[BlobRecord] = []
    offset = 0
    # A fresh salt per seal goes into every blob's associated data, so blobs cannot be spliced
    # between two seals encrypted with the same key.
    salt = os.urandom(16).hex()
    manifest.encryption = {"algorithm": crypto.ENCRYPTION_ALGORITHM, "key_id": crypto.key_id(key), "salt": salt} if key else None
    manifest.format_version = FORMAT_VERSION
    for name, data in blobs.items():
        nonce = None
        if key is not None:
            nonce_bytes, data = crypto.encrypt_blob(key, associated_data(manifest, name), data)
            nonce = nonce_bytes.hex()
        records.append(BlobRecord(name, offset, len(data), hashlib.sha256(data).hexdigest(), nonce))
        stored.append(data)
        offset += len(data)
    manifest.blobs = records
    manifest.seal_id = manifest.compute_id()
    signature = crypto.sign(signing_key, manifest.signed_bytes()) if signing_key is not None else None
    header = json.dumps({"manifest": manifest.to_dict(), "signature": signature}, sort_keys=True).encode("utf-8")
    atomic_write_bytes(path, b"".join([_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)), header, *stored]))
    return manifest


def associated_data(manifest: Manifest, name: str) -> str:
    """What a blob's AES-GCM tag authenticates besides its bytes: the seal's salt and the blob's name
    (so blobs cannot be swapped or spliced between seals) and, from format 2, the manifest."""
    salt = (manifest.encryption or {}).get("salt")
    label = f"{salt}/{name}" if salt else name  # seals written before salts bound the name alone
    if manifest.format_version >= 2:
        label += "\0manifest:" + manifest.bound_digest()
    return label


@dataclass
class SealFile:
    """A seal on disk: its verified manifest, and where its (possibly encrypted) blobs lie.

    Blobs are read on demand and re-hashed, so an opened seal does not keep the file's bytes in
    memory and a file changed after opening is still caught. They are read through the file handle
    opened by `read_seal`, not by path: a server keeps working after the seal file is moved or
    deleted (its tokenizer and graphs are loaded lazily), and a different file put at the path is
    never mixed in.
    """

    path: Path
    manifest: Manifest
    signature: dict | None
    _region_start: int
    _handle: Any = None  # the open file (read_seal); None: reopen the path for each read

    def stored_blob(self, name: str) -> bytes:
        record = self.manifest.blob(name)
        if self._handle is not None:
            data = os.pread(self._handle.fileno(), record.length, self._region_start + record.offset)
        else:
            with self.path.open("rb") as handle:
                handle.seek(self._region_start + record.offset)
                data = handle.read(record.length)
        if len(data) != record.length or hashlib.sha256(data).hexdigest() != record.sha256:
            raise SealIntegrityError(f"{self.path}: blob '{name}' changed or was cut short since the seal was opened; copy the seal again")
        return data

    def verify_signature(self, public_key_path: str | Path) -> None:
        crypto.verify(crypto.read_public_key(public_key_path), self.signature, self.manifest.signed_bytes())

    def check_key(self, key: bytes | None) -> None:
        """Fail early, and clearly, when the key is missing or is not the one the seal was encrypted with."""
        enc = self.manifest.encryption
        if enc is None:
            return
        if key is None:
            raise SealKeyError(f"{self.path.name} is encrypted; give its key file, or set {crypto.KEY_ENV} to the key file", topic="key")
        if crypto.key_id(key) != enc.get("key_id"):
            raise SealKeyError(f"wrong key for {self.path.name}: it was encrypted with key {enc.get('key_id')}, the given key is {crypto.key_id(key)}")

    def blob(self, name: str, key: bytes | None) -> bytes:
        """The plaintext of one blob, decrypted in memory."""
        record = self.manifest.blob(name)
        data = self.stored_blob(name)
        if self.manifest.encryption is None:
            return data
        self.check_key(key)
        assert key is not None
        try:
            nonce = bytes.fromhex(record.nonce or "")
        except (ValueError, TypeError):
            nonce = b""
        if len(nonce) != crypto.NONCE_BYTES:
            raise SealIntegrityError(f"{self.path.name}: blob '{name}' has a malformed nonce in the manifest; the file was tampered with, copy the seal again")
        return crypto.decrypt_blob(key, associated_data(self.manifest, name), nonce, data)


_HASH_CHUNK = 1 << 20


def read_seal(path: str | Path) -> SealFile:
    """Read a seal's header and check everything that can be checked without the key.

    Blobs are hashed in a stream, so checking a large seal does not load it into memory.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise SealFormatError(f"no seal at {path}; check the path") from None
    except OSError as exc:
        raise SealFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        size = path.stat().st_size
        prefix = handle.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or not prefix.startswith(MAGIC):
            raise SealFormatError(f"{path} is not a sealkit seal (bad magic bytes)")
        _, version, header_len = _PREFIX.unpack(prefix)
        if version not in READABLE_VERSIONS:
            raise SealFormatError(f"{path} uses seal format version {version}; this sealkit reads versions {', '.join(map(str, READABLE_VERSIONS))}. Upgrade sealkit or re-export the seal")
        header_end = _PREFIX.size + header_len
        if header_end > size:
            raise SealIntegrityError(f"{path} is truncated ({size} bytes, the header alone needs {header_end}); copy the seal again")
        try:
            header = json.loads(handle.read(header_len).decode("utf-8"))
            manifest_dict = header["manifest"]
            signature = header.get("signature")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise SealIntegrityError(f"{path} has a corrupted header; the file was tampered with or damaged, copy the seal again") from None
        manifest = Manifest.from_dict(manifest_dict)
        if manifest.format_version != version:
            raise SealIntegrityError(f"{path}: the file says format {version} but its manifest says {manifest.format_version}; the file was tampered with, copy the seal again")
        if manifest.compute_id() != manifest.seal_id or canonical_json(manifest.to_dict()) != canonical_json(manifest_dict):
            raise SealIntegrityError(f"{path}: the manifest does not match its seal id; the file was tampered with, copy the seal again")
        region = size - header_end
        needed = max((b.offset + b.length for b in manifest.blobs), default=0)
        if region < needed:
            raise SealIntegrityError(f"{path} is truncated: {region} of {needed} blob bytes present; copy the seal again")
        if region > needed:
            raise SealIntegrityError(f"{path} has {region - needed} unexpected trailing bytes; the file was tampered with, copy the seal again")
        for record in sorted(manifest.blobs, key=lambda b: b.offset):
            handle.seek(header_end + record.offset)
            digest = hashlib.sha256()
            remaining = record.length
            while remaining:
                chunk = handle.read(min(_HASH_CHUNK, remaining))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
            if remaining or digest.hexdigest() != record.sha256:
                raise SealIntegrityError(f"{path}: blob '{record.name}' does not match its hash; the file was tampered with or damaged, copy the seal again")
    # blobs are read later through a handle held open (see SealFile); every read is re-hashed, so a
    # file swapped between the checks above and this open is caught like any other change
    return SealFile(path, manifest, signature, header_end, path.open("rb"))
