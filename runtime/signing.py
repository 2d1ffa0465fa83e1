"""Ed25519 signatures over ``manifest.json`` (which pins every file's sha256), via the ``cryptography`` package.

``manifest.sig`` is a small JSON document::

    {"alg": "Ed25519", "key_id": "<sha256 of the raw public key, 16 hex>", "signature": "<base64>"}

The signature is over the exact bytes of manifest.json, so it covers every file of the bundle transitively.
``cryptography`` is the [sign] extra: without it the runtime still verifies every sha256, and a policy that
REQUIRES a signature fails closed with MissingExtraError.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import MissingExtraError, SignatureError
from .manifest import MANIFEST_NAME, SIGNATURE_NAME

ALG = "Ed25519"


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise MissingExtraError("bundle signatures", "sign", getattr(exc, "name", "cryptography")) from None
    return serialization, ed25519


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def generate_keypair(private_path: str | Path, public_path: str | Path | None = None) -> tuple[Path, Path, str]:
    """Write a new Ed25519 private key (PEM, mode 0600) and its public key (PEM). Refuses to overwrite.

    Returns:
        (private path, public path, key id).
    """
    serialization, ed25519 = _crypto()
    private_path = Path(private_path)
    public_path = Path(public_path) if public_path else private_path.with_suffix(".pub.pem")
    for p in (private_path, public_path):
        if p.exists():
            raise FileExistsError(f"{p} exists; refusing to overwrite a key (move it away first)")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub = key.public_key()
    public_path.write_bytes(
        pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return private_path, public_path, key_id(raw)


def sign_bundle(bundle: str | Path, private_key: str | Path) -> dict[str, str]:
    """Sign ``bundle/manifest.json`` with an Ed25519 private key (PEM) and write ``manifest.sig``."""
    serialization, ed25519 = _crypto()
    key = serialization.load_pem_private_key(Path(private_key).read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"{private_key} is not an Ed25519 private key (create one with 'medinfer keygen')")
    manifest = (Path(bundle) / MANIFEST_NAME).read_bytes()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    doc = {"alg": ALG, "key_id": key_id(raw), "signature": base64.b64encode(key.sign(manifest)).decode()}
    (Path(bundle) / SIGNATURE_NAME).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _public_keys(trusted: Iterable[str | Path | bytes]) -> dict[str, Any]:
    serialization, ed25519 = _crypto()
    keys: dict[str, Any] = {}
    for item in trusted:
        data = item if isinstance(item, bytes) else Path(item).read_bytes()
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise SignatureError(f"trusted key {item!r} is not a PEM public key: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise SignatureError(f"trusted key {item!r} is not an Ed25519 public key")
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        keys[key_id(raw)] = key
    return keys


def verify_signature(bundle: Path, manifest_bytes: bytes, trusted: Iterable[str | Path | bytes],
                     required: bool) -> str | None:
    """Check ``manifest.sig`` against the trusted public keys. Returns the signing key id, or None if unsigned.

    Raises:
        SignatureError: required but unsigned, malformed, signed by an untrusted key, or not matching the manifest.
    """
    sig_path = Path(bundle) / SIGNATURE_NAME
    trusted = list(trusted)
    if not sig_path.is_file():
        if required:
            raise SignatureError(
                f"{bundle} is not signed ({SIGNATURE_NAME} is missing) but the trust policy requires a signature; "
                "sign it with 'medinfer sign BUNDLE --key KEY'"
            )
        return None
    if not trusted:
        if required:
            raise SignatureError("a signature is required but no trusted public keys were given (trusted_keys=)")
        return None
    keys = _public_keys(trusted)
    try:
        doc = json.loads(sig_path.read_text())
        alg, kid, sig = doc["alg"], doc["key_id"], base64.b64decode(doc["signature"], validate=True)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise SignatureError(f"{sig_path} is malformed ({type(exc).__name__}: {exc}); re-sign the bundle") from None
    if alg != ALG:
        raise SignatureError(f"{sig_path} uses algorithm {alg!r}; this runtime accepts only {ALG}")
    key = keys.get(kid)
    if key is None:
        raise SignatureError(
            f"{bundle} is signed by key {kid}, which is not among the trusted keys ({', '.join(sorted(keys))})"
        )
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(sig, manifest_bytes)
    except InvalidSignature:
        raise SignatureError(
            f"{bundle}: the signature by key {kid} does not match manifest.json: the manifest or the signature "
            "was altered after signing"
        ) from None
    return str(kid)
