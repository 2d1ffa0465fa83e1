"""A present signature is always checked: one that does not verify is refused as tampering, also without trusted
keys; a valid one by an unknown key, or one that cannot be checked, loads only with a loud warning."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from pathlib import Path

import medinfer
import pytest

from ..helpers import tiny

pytest.importorskip("cryptography")
pytestmark = pytest.mark.hostile("forged or unverifiable signatures")


@pytest.fixture
def key(signing_keys: dict[str, Path]) -> dict[str, Path]:
    return signing_keys


def _signed(folder: Path, key: dict[str, Path]) -> Path:
    from medinfer.signing import sign_bundle

    bundle = tiny.build(folder)
    sign_bundle(bundle, key["priv"])
    return bundle


def _flip_signature(bundle: Path) -> None:
    doc = json.loads((bundle / "manifest.sig").read_text())
    raw = bytearray(base64.b64decode(doc["signature"]))
    raw[5] ^= 0x01
    doc["signature"] = base64.b64encode(bytes(raw)).decode()
    (bundle / "manifest.sig").write_text(json.dumps(doc))


def _garbage_signature(bundle: Path) -> None:
    (bundle / "manifest.sig").write_bytes(b"\x00\xffnot json")


def _alter_manifest(bundle: Path) -> None:
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["description"] = "edited after signing"
    (bundle / "manifest.json").write_text(json.dumps(doc))


def _swap_key_id(bundle: Path) -> None:
    doc = json.loads((bundle / "manifest.sig").read_text())
    doc["key_id"] = "0" * 16
    (bundle / "manifest.sig").write_text(json.dumps(doc))


FORGERIES = {"signature bytes flipped": (_flip_signature, "does not match manifest.json"),
             "signature file garbage": (_garbage_signature, "malformed"),
             "manifest edited after signing": (_alter_manifest, "does not match manifest.json"),
             "key id swapped": (_swap_key_id, "does not belong to its public key")}


@pytest.mark.parametrize("case", list(FORGERIES))
@pytest.mark.parametrize("policy", ["no policy", "trusted key", "required"])
def test_a_signature_that_does_not_verify_is_refused_whatever_the_policy(tmp_path: Path, key, case: str,
                                                                        policy: str) -> None:
    forge, words = FORGERIES[case]
    bundle = _signed(tmp_path / "b", key)
    forge(bundle)
    kwargs = {"no policy": {}, "trusted key": {"trusted_keys": [key["pub"]]},
              "required": {"require_signature": True, "trusted_keys": [key["pub"]]}}[policy]
    with pytest.raises(medinfer.SignatureError):
        medinfer.load(bundle, **kwargs)
    if policy == "no policy":
        with pytest.raises(medinfer.SignatureError, match=words):
            medinfer.load(bundle)
        proc = subprocess.run([sys.executable, "-m", "medinfer", "verify", str(bundle)], capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 3 and "Traceback" not in proc.stderr


def test_a_valid_signature_by_an_unknown_key_loads_with_a_loud_warning(tmp_path: Path, key, caplog) -> None:
    bundle = _signed(tmp_path / "b", key)
    with caplog.at_level(logging.WARNING):
        model = medinfer.load(bundle)
    assert model.signature.state == "untrusted" and model.signed_by is None
    assert "no trusted keys were given" in caplog.text
    proc = subprocess.run([sys.executable, "-m", "medinfer", "verify", str(bundle)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0 and "WARNING" in proc.stdout + proc.stderr
    trusted = medinfer.load(bundle, trusted_keys=[key["pub"]])
    assert trusted.signature.state == "trusted" and trusted.signed_by


def test_without_the_sign_extra_a_present_signature_is_still_checked(tmp_path: Path, key, monkeypatch) -> None:
    """Verification never needs the [sign] extra: with ``cryptography`` unavailable the verdicts are the same."""
    from medinfer import signing

    bundle = _signed(tmp_path / "b", key)

    def missing() -> None:
        raise medinfer.MissingExtraError("bundle signatures", "sign", "cryptography")

    monkeypatch.setattr(signing, "_crypto", missing)
    assert medinfer.load(bundle).signature.state == "untrusted"
    assert medinfer.load(bundle, require_signature=True, trusted_keys=[key["pub"]]).signature.state == "trusted"
    _flip_signature(bundle)
    with pytest.raises(medinfer.SignatureError, match="does not match manifest.json"):
        medinfer.load(bundle)


def test_an_old_signature_without_its_public_key_is_refused_unless_a_trusted_key_checks_it(tmp_path: Path,
                                                                                          key) -> None:
    bundle = _signed(tmp_path / "b", key)
    doc = json.loads((bundle / "manifest.sig").read_text())
    del doc["public_key"]
    (bundle / "manifest.sig").write_text(json.dumps(doc))
    with pytest.raises(medinfer.SignatureError, match="cannot be checked"):
        medinfer.load(bundle)
    assert medinfer.load(bundle, trusted_keys=[key["pub"]]).signature.state == "trusted"
