"""Keys, AES-256-GCM encryption and Ed25519 signatures for seals.

Everything here works on bytes in memory; nothing is written to disk except by `write_keys`.
Never imports torch or onnxruntime.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealkit.errors import SealIntegrityError, SealKeyError, SealSignatureError
from sealkit.fileio import atomic_write_bytes

KEY_ENV = "SEALKIT_KEY"
VERIFY_KEY_ENV = "SEALKIT_VERIFY_KEY"
KEY_BYTES = 32
NONCE_BYTES = 12
ENCRYPTION_ALGORITHM = "AES-256-GCM"
SIGNATURE_ALGORITHM = "ed25519"


def key_id(key: bytes) -> str:
    """A short public fingerprint of an AES key, so a wrong key is told apart from tampering."""
    return hashlib.sha256(b"sealkit-key-id\0" + key).hexdigest()[:16]


def generate_key() -> bytes:
    return os.urandom(KEY_BYTES)


def resolve_key_path(path: str | Path | None) -> Path | None:
    """The key file named by `path`, else by the SEALKIT_KEY environment variable, else None."""
    if path:
        return Path(path)
    env = os.environ.get(KEY_ENV)
    return Path(env) if env else None


def resolve_verify_key_path(path: str | Path | None) -> Path | None:
    """The owner's public key named by `path`, else by the SEALKIT_VERIFY_KEY environment variable, else None."""
    if path:
        return Path(path)
    env = os.environ.get(VERIFY_KEY_ENV)
    return Path(env) if env else None


def read_key(path: str | Path) -> bytes:
    """Read an AES key file: 64 hex characters (what `sealkit keygen` writes) or 32 raw bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SealKeyError(f"cannot read key file {path}: {exc.strerror or exc}; give a readable key file, or set {KEY_ENV}", topic="key") from None
    text = raw.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(raw) == KEY_BYTES:
        return raw
    raise SealKeyError(f"{path} is not a sealkit key (expected 64 hex characters); create one with keygen", topic="keygen")


def encrypt_blob(key: bytes, name: str, data: bytes) -> tuple[bytes, bytes]:
    """Encrypt one blob; `name` (the seal's salt and the blob's name) is bound in as associated data.

    Returns (nonce, ciphertext).
    """
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, data, name.encode("utf-8", "surrogatepass"))


def decrypt_blob(key: bytes, name: str, nonce: bytes, ciphertext: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, name.encode("utf-8", "surrogatepass"))
    except InvalidTag:
        blob = name.split("/", 1)[-1].split("\0")[0]  # drop the salt and the manifest digest
        raise SealIntegrityError(f"blob '{blob}' failed authentication: the seal was tampered with or corrupted; ask the owner for a fresh copy") from None


def write_keys(out_dir: str | Path) -> dict[str, Path]:
    """Write seal.key (AES), sign.key (Ed25519 private, PEM) and sign.pub (PEM). Refuses to overwrite."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"key": out / "seal.key", "sign_key": out / "sign.key", "sign_pub": out / "sign.pub"}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing:
        raise SealKeyError(f"refusing to overwrite existing keys: {', '.join(existing)}; choose another folder", topic="keygen-out")
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    atomic_write_bytes(paths["key"], (generate_key().hex() + "\n").encode("ascii"), mode=0o600)
    atomic_write_bytes(paths["sign_key"], private_pem, mode=0o600)
    atomic_write_bytes(paths["sign_pub"], public_pem)
    return paths


def _read_pem(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SealSignatureError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_signing_key(path: str | Path) -> Ed25519PrivateKey:
    data = _read_pem(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SealSignatureError(f"{path} is not an Ed25519 private key in PEM form; create one with keygen", topic="keygen") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SealSignatureError(f"{path} is not an Ed25519 key; create one with keygen", topic="keygen")
    return key


def read_public_key(path: str | Path) -> Ed25519PublicKey:
    data = _read_pem(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise SealSignatureError(f"{path} is not an Ed25519 public key in PEM form (expected the owner's sign.pub)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SealSignatureError(f"{path} is not an Ed25519 public key (expected the owner's sign.pub)")
    return key


def public_key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(private: Ed25519PrivateKey, message: bytes) -> dict:
    return {
        "algorithm": SIGNATURE_ALGORITHM,
        "public_key_id": public_key_id(private.public_key()),
        "value": private.sign(message).hex(),
    }


def verify(public: Ed25519PublicKey, signature: dict | None, message: bytes) -> None:
    """Raise SealSignatureError unless `signature` is a valid Ed25519 signature of `message` by `public`."""
    if not signature:
        raise SealSignatureError("the seal is not signed, but a verify key was given; ask the owner for a signed seal")
    if signature.get("algorithm") != SIGNATURE_ALGORITHM:
        raise SealSignatureError(f"unsupported signature algorithm {signature.get('algorithm')!r}")
    if signature.get("public_key_id") != public_key_id(public):
        raise SealSignatureError("the seal was signed by a different key than the given public key; check the verify key", topic="verify-key")
    try:
        public.verify(bytes.fromhex(signature["value"]), message)
    except (InvalidSignature, ValueError, KeyError):
        raise SealSignatureError("the seal's signature does not verify: it was modified after signing; do not use it") from None
