"""Ed25519 signatures over ``manifest.json`` (which pins every file's sha256).

``manifest.sig`` is a small JSON document::

    {"alg": "Ed25519", "key_id": "<sha256 of the raw public key, 16 hex>", "public_key": "<base64 raw key>",
     "signature": "<base64>"}

The signature is over the exact bytes of manifest.json, so it covers every file of the bundle transitively.

Policy (:func:`verify_signature`): a signature that is PRESENT is always checked, whatever the caller asked for.
One that does not verify — a corrupt ``manifest.sig``, or a manifest altered after signing — is a tamper signal and
refused with SignatureError, also without trusted keys (the document carries its public key, so it can be checked
against itself). Trust is separate: only ``trusted_keys`` say WHO may sign; a valid signature by a key not given
as trusted loads with a loud warning (refused under ``require_signature``).

Verification runs on every install with :mod:`medinfer.ed25519` (pure Python, RFC 8032, strict): the base device
install checks a present signature exactly as a full install does, so no missing extra can weaken the policy.
Only making keys and signing (``medinfer keygen`` / ``sign``, a build machine's job) need ``cryptography``, the
[sign] extra.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ed25519
from .errors import SignatureError, UsageError
from .extras import optional_import
from .files import read_regular_file
from .integrity import sha256_bytes
from .manifest import SIGNATURE_NAME, read_manifest_bytes
from .writing import write_atomic

ALG = "Ed25519"
log = logging.getLogger(__name__)


def _crypto() -> Any:
    serialization = optional_import("cryptography.hazmat.primitives.serialization", "sign", "bundle signatures")
    ed25519 = optional_import("cryptography.hazmat.primitives.asymmetric.ed25519", "sign", "bundle signatures")
    return serialization, ed25519


def key_id(public_raw: bytes) -> str:
    return sha256_bytes(public_raw)[:16]


def generate_keypair(private_path: str | Path, public_path: str | Path | None = None) -> tuple[Path, Path, str]:
    """Write a new Ed25519 private key (PEM, mode 0600) and its public key (PEM). Refuses to overwrite.

    Returns:
        (private path, public path, key id).
    """
    serialization, crypto_ed25519 = _crypto()
    private_path = Path(private_path)
    public_path = Path(public_path) if public_path else private_path.with_suffix(".pub.pem")
    for p in (private_path, public_path):
        if p.exists():
            raise UsageError(f"{p} exists; refusing to overwrite a key (move it away first)")
    key = crypto_ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_atomic(private_path, pem, "the private key", mode=0o600)
    pub = key.public_key()
    write_atomic(public_path, pub.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo), "the public key")
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return private_path, public_path, key_id(raw)


def sign_bundle(bundle: str | Path, private_key: str | Path) -> dict[str, str]:
    """Sign ``bundle/manifest.json`` with an Ed25519 private key (PEM) and write ``manifest.sig``."""
    serialization, crypto_ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(private_key).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"{private_key} is not a readable unencrypted PEM private key ({exc})") from None
    if not isinstance(key, crypto_ed25519.Ed25519PrivateKey):
        raise SignatureError(f"{private_key} is not an Ed25519 private key (create one with 'medinfer keygen')")
    manifest = read_manifest_bytes(Path(bundle))  # a bounded read of a regular file
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    doc = {"alg": ALG, "key_id": key_id(raw), "public_key": base64.b64encode(raw).decode(),
           "signature": base64.b64encode(key.sign(manifest)).decode()}
    write_atomic(Path(bundle) / SIGNATURE_NAME, (json.dumps(doc, indent=2) + "\n").encode(), "the signature")
    return doc


MAX_SIGNATURE_BYTES = 64 << 10
MAX_KEY_BYTES = 64 << 10  # a PEM public key has about 113 bytes


@dataclass(frozen=True)
class SignatureCheck:
    """What the signature check found: ``state`` is ``unsigned``, ``trusted`` (valid, by a trusted key) or
    ``untrusted`` (valid against its own key, which was not given as trusted). A present signature that cannot be
    checked is refused (SignatureError), never reported."""

    state: str
    key_id: str | None = None
    message: str = ""

    @property
    def warning(self) -> bool:
        return self.state == "untrusted"


def _public_keys(trusted: Iterable[str | Path | bytes]) -> dict[str, bytes]:
    """Trusted keys (PEM files or PEM bytes) as raw Ed25519 public keys by key id."""
    keys: dict[str, bytes] = {}
    for item in trusted:
        if isinstance(item, bytes):
            data = item
        else:
            data = _read_key_file(Path(item))
        try:
            raw = ed25519.public_key_from_pem(data)
        except ValueError as exc:
            name = "given as bytes" if isinstance(item, bytes) else repr(str(item))
            raise SignatureError(f"trusted key {name} is not a PEM Ed25519 public key: {exc}") from None
        keys[key_id(raw)] = raw
    return keys


def _read_key_file(path: Path) -> bytes:
    """A trusted key file: a regular file (a symlink to one is fine) of at most MAX_KEY_BYTES, read without
    blocking (a FIFO is refused, /dev/zero cannot fill memory)."""
    hint = "give the PEM public key written by 'medinfer keygen'"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UsageError(f"trusted key file {str(path)!r} cannot be read ({exc.strerror or exc}); {hint}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_KEY_BYTES:
            raise UsageError(f"trusted key file {str(path)!r} is not a regular file of at most {MAX_KEY_BYTES} "
                             f"bytes; {hint}")
        return os.read(fd, MAX_KEY_BYTES + 1)
    finally:
        os.close(fd)


def _read_signature(sig_path: Path) -> dict[str, Any]:
    raw = read_regular_file(sig_path, MAX_SIGNATURE_BYTES, str(sig_path), SignatureError)
    try:
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict):
            raise TypeError("not a JSON object")
        alg, kid = doc["alg"], doc["key_id"]
        sig = base64.b64decode(doc["signature"], validate=True)
        public = base64.b64decode(doc["public_key"], validate=True) if "public_key" in doc else None
        if not isinstance(alg, str) or not isinstance(kid, str):
            raise TypeError("alg and key_id must be strings")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise SignatureError(f"{sig_path} is malformed ({type(exc).__name__}: {exc}): a present signature that "
                             "cannot be read is refused as tampering; re-sign the bundle") from None
    if alg != ALG:
        raise SignatureError(f"{sig_path} uses algorithm {alg!r}; this runtime accepts only {ALG}")
    return {"key_id": kid, "signature": sig, "public_key": public}


def verify_signature(bundle: Path, manifest_bytes: bytes, trusted: Iterable[str | Path | bytes],
                     required: bool) -> SignatureCheck:
    """Check ``manifest.sig`` (see the module docstring for the policy).

    Raises:
        SignatureError: a present signature that does not verify or is malformed; required but unsigned; signed
            by a key that is not trusted while trusted keys are given or a signature is required.
        UsageError: a trusted key file that cannot be read.
    """
    sig_path = Path(bundle) / SIGNATURE_NAME
    trusted = list(trusted)
    if not os.path.lexists(sig_path):
        if required:
            raise SignatureError(
                f"{bundle} is not signed ({SIGNATURE_NAME} is missing) but the trust policy requires a signature; "
                "sign it with 'medinfer sign BUNDLE --key KEY'"
            )
        return SignatureCheck("unsigned", None, "not signed")
    doc = _read_signature(sig_path)
    kid = doc["key_id"]
    own = doc["public_key"]
    if own is not None:
        if key_id(own) != kid:
            raise SignatureError(f"{sig_path}: its key_id {kid} does not belong to its public key: the signature "
                                 "document was altered; re-sign the bundle")
        if ed25519.decode_point(own) is None:
            raise SignatureError(f"{sig_path} carries an invalid public key (not a canonical Ed25519 point); "
                                 "re-sign the bundle")
    keys = _public_keys(trusted) if trusted else {}
    key = keys.get(kid)
    if trusted and key is None:
        raise SignatureError(
            f"{bundle} is signed by key {kid}, which is not among the trusted keys ({', '.join(sorted(keys))})"
        )
    for checker in (k for k in (key, own) if k is not None):
        if not ed25519.verify(checker, doc["signature"], manifest_bytes):
            raise SignatureError(
                f"{bundle}: the signature by key {kid} does not match manifest.json: the manifest or the signature "
                "was altered after signing"
            )
    if key is not None:
        return SignatureCheck("trusted", str(kid), f"signature by trusted key {kid}")
    if required:
        raise SignatureError("a signature is required but no trusted public keys were given (trusted_keys=)")
    if own is None:  # an old signature document without its public key: nothing to check it against
        raise SignatureError(f"{bundle} carries a signature by key {kid} that cannot be checked: it names no public "
                             "key and no trusted keys were given; pass --trusted-key (trusted_keys=) or re-sign the "
                             "bundle with this medinfer. A present signature is never accepted unchecked")
    message = (f"{bundle} is validly signed by key {kid}, but no trusted keys were given: WHO signed it is not "
               "checked (pass --trusted-key / trusted_keys= to require a known signer)")
    log.warning(message)
    return SignatureCheck("untrusted", str(kid), message)
