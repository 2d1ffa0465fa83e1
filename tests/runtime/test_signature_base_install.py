"""A present signature is checked on the base device install too (no ``cryptography``): a forged one is refused
(exit 3), a valid one verifies, and a trust policy works without any extra. Bundles are signed here with a
pure-Python test signer, so this file runs in ``make test-device``; in the full venv the CLI cases run in a child
process where ``cryptography`` cannot be imported."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import medinfer
import pytest

from ..helpers import ed25519_sign, tiny

pytestmark = pytest.mark.hostile("forged or unverifiable signatures")
SEED = bytes(range(1, 33))
OTHER = bytes(range(2, 34))

NO_CRYPTOGRAPHY = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
from medinfer.cli import main
code = main(sys.argv[1:])
assert "cryptography" not in sys.modules
sys.exit(code)
"""


def _verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_CRYPTOGRAPHY, "verify", *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def signed(tmp_path: Path) -> Path:
    bundle = tiny.build(tmp_path / "b")
    ed25519_sign.sign_bundle(bundle, SEED)
    return bundle


def _flip(bundle: Path) -> None:
    doc = json.loads((bundle / "manifest.sig").read_text())
    raw = bytearray(base64.b64decode(doc["signature"]))
    raw[40] ^= 0x04
    doc["signature"] = base64.b64encode(bytes(raw)).decode()
    (bundle / "manifest.sig").write_text(json.dumps(doc))


def _edit(bundle: Path) -> None:
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["description"] = "edited after signing"
    (bundle / "manifest.json").write_text(json.dumps(doc))


def _other_signer_same_key_id(bundle: Path) -> None:
    """A signature by another key, claiming the original key's id and public key (a swapped signature)."""
    doc = json.loads((bundle / "manifest.sig").read_text())
    forged = ed25519_sign.sign(OTHER, (bundle / "manifest.json").read_bytes())
    doc["signature"] = base64.b64encode(forged).decode()
    (bundle / "manifest.sig").write_text(json.dumps(doc))


@pytest.mark.parametrize("forge", [_flip, _edit, _other_signer_same_key_id], ids=["flipped", "edited", "swapped"])
def test_the_base_install_refuses_a_forged_signature(signed: Path, forge) -> None:
    forge(signed)
    with pytest.raises(medinfer.SignatureError, match="does not match manifest.json"):
        medinfer.load(signed)
    proc = _verify(str(signed))
    assert proc.returncode == 3, proc.stderr
    assert "SignatureError" in proc.stderr and "Traceback" not in proc.stderr


def test_the_base_install_checks_a_valid_signature_and_names_an_unknown_signer(signed: Path, tmp_path: Path) -> None:
    model = medinfer.load(signed)
    assert model.signature.state == "untrusted"  # checked against its own key; WHO signed it is not known
    proc = _verify(str(signed))
    assert proc.returncode == 0, proc.stderr
    assert "no trusted keys were given" in proc.stderr and "NOT checked" not in proc.stderr
    pem = ed25519_sign.write_public_pem(tmp_path / "k.pub.pem", SEED)
    trusted = medinfer.load(signed, require_signature=True, trusted_keys=[pem])
    assert trusted.signature.state == "trusted" and trusted.signed_by
    proc = _verify(str(signed), "--require-signature", "--trusted-key", str(pem))
    assert proc.returncode == 0 and "signature by key" in proc.stdout, proc.stderr


def test_the_base_install_enforces_a_trust_policy(signed: Path, tmp_path: Path) -> None:
    other = ed25519_sign.write_public_pem(tmp_path / "other.pub.pem", OTHER)
    with pytest.raises(medinfer.SignatureError, match="not among the trusted keys"):
        medinfer.load(signed, require_signature=True, trusted_keys=[other])
    assert _verify(str(signed), "--require-signature", "--trusted-key", str(other)).returncode == 3
    unsigned = tiny.build(tmp_path / "unsigned")
    assert _verify(str(unsigned), "--require-signature", "--trusted-key", str(other)).returncode == 3


def test_a_trusted_key_file_that_is_not_a_key_is_refused(signed: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(medinfer.SignatureError, match="not a PEM Ed25519 public key"):
        medinfer.load(signed, trusted_keys=[junk])
    with pytest.raises(medinfer.UsageError, match="not a regular file"):
        medinfer.load(signed, trusted_keys=["/dev/zero"])
    with pytest.raises(medinfer.UsageError, match="cannot be read"):
        medinfer.load(signed, trusted_keys=[tmp_path / "missing.pem"])
