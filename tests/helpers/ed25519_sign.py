"""RFC 8032 Ed25519 signing in pure Python, for tests only: signs bundles in the device venv, where ``cryptography``
(what ``medinfer sign`` uses) is not installed. Not constant-time: never use it for real keys."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from medinfer import ed25519
from medinfer.signing import ALG, key_id


def _expand(seed: bytes) -> tuple[int, bytes]:
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public_key(seed: bytes) -> bytes:
    """The raw public key of a 32-byte secret seed."""
    a, _ = _expand(seed)
    return ed25519.encode_point(ed25519.scalar_mult_base(a))


def sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message`` (RFC 8032 §5.1.6)."""
    a, prefix = _expand(seed)
    pub = ed25519.encode_point(ed25519.scalar_mult_base(a))
    r = int.from_bytes(hashlib.sha512(prefix + message).digest(), "little") % ed25519.L
    big_r = ed25519.encode_point(ed25519.scalar_mult_base(r))
    k = int.from_bytes(hashlib.sha512(big_r + pub + message).digest(), "little") % ed25519.L
    return big_r + ((r + k * a) % ed25519.L).to_bytes(32, "little")


def sign_bundle(bundle: Path, seed: bytes) -> dict[str, str]:
    """Write ``manifest.sig`` as ``medinfer sign`` does, without ``cryptography``."""
    pub = public_key(seed)
    manifest = (Path(bundle) / "manifest.json").read_bytes()
    doc = {"alg": ALG, "key_id": key_id(pub), "public_key": base64.b64encode(pub).decode(),
           "signature": base64.b64encode(sign(seed, manifest)).decode()}
    (Path(bundle) / "manifest.sig").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def write_public_pem(path: Path, seed: bytes) -> Path:
    """The PEM public key of ``seed`` (what ``medinfer keygen`` writes as KEY.pub.pem)."""
    path.write_bytes(ed25519.public_key_to_pem(public_key(seed)))
    return path
