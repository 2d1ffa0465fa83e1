"""Signing in detail: key naming, refusals that say what is wrong with a key or a signature document, and the check
without the [sign] extra. These tests pin behaviours that mutation testing (``make mutation-score``,
promises/mutation.toml) found unpinned: each fails when the code it names is changed in the way the mutant changed
it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import medinfer
import pytest

from ..helpers import tiny


def _ec_pem(tmp_path: Path) -> tuple[Path, Path]:
    """A P-256 key pair (PEM): a valid key of the wrong algorithm."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = tmp_path / "ec.pem", tmp_path / "ec.pub.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def test_keygen_names_the_public_key_after_the_private_one(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from medinfer.signing import generate_keypair

    priv, pub, kid = generate_keypair(tmp_path / "device.pem")
    assert (priv, pub) == (tmp_path / "device.pem", tmp_path / "device.pub.pem") and pub.is_file() and len(kid) == 16
    _, other, _ = generate_keypair(tmp_path / "b.pem", tmp_path / "keys.pub")
    assert other == tmp_path / "keys.pub" and other.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_signing_and_trust_refusals_say_what_is_wrong_with_the_key(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from medinfer.signing import generate_keypair, sign_bundle

    bundle = tiny.build(tmp_path / "m")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(medinfer.UsageError) as info:
        sign_bundle(bundle, tmp_path / "junk.pem")
    assert str(info.value).startswith(f"{tmp_path / 'junk.pem'} is not a readable unencrypted PEM private key (")
    ec_priv, ec_pub = _ec_pem(tmp_path)
    with pytest.raises(medinfer.SignatureError) as info:
        sign_bundle(bundle, ec_priv)
    assert str(info.value) == f"{ec_priv} is not an Ed25519 private key (create one with 'medinfer keygen')"
    priv, pub, kid = generate_keypair(tmp_path / "k.pem")
    sign_bundle(bundle, priv)
    assert medinfer.load(bundle, trusted_keys=[pub.read_bytes()]).signed_by == kid  # a key given as PEM bytes
    missing = tmp_path / "none.pub.pem"
    with pytest.raises(medinfer.UsageError) as info:
        medinfer.load(bundle, trusted_keys=[missing])
    assert str(info.value) == (f"trusted key file {str(missing)!r} cannot be read (No such file or directory); give "
                               "the PEM public key written by 'medinfer keygen'")
    with pytest.raises(medinfer.SignatureError) as info:
        medinfer.load(bundle, trusted_keys=[tmp_path / "junk.pem"])
    assert str(info.value) == (f"trusted key {str(tmp_path / 'junk.pem')!r} is not a PEM Ed25519 public key: not one "
                               "PEM 'PUBLIC KEY' block")
    with pytest.raises(medinfer.SignatureError) as info:
        medinfer.load(bundle, trusted_keys=[ec_pub])
    assert str(info.value).startswith(f"trusted key {str(ec_pub)!r} is not a PEM Ed25519 public key: ")
    with pytest.raises(medinfer.SignatureError) as info:
        medinfer.load(bundle, trusted_keys=[b"junk"])
    assert str(info.value) == ("trusted key given as bytes is not a PEM Ed25519 public key: not one PEM 'PUBLIC KEY' "
                               "block")


def test_a_signature_document_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    bundle = tiny.build(tmp_path / "m")
    sig = bundle / "manifest.sig"
    sig.write_text("[1, 2]")
    with pytest.raises(medinfer.SignatureError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{sig} is malformed (TypeError: not a JSON object): a present signature that cannot "
                               "be read is refused as tampering; re-sign the bundle")
    sig.unlink()
    sig.mkdir()
    with pytest.raises(medinfer.SignatureError) as info:
        medinfer.load(bundle)
    assert str(info.value).startswith(f"{sig} is a folder, not a regular file")

def _signed_bundle(tmp_path: Path) -> tuple[Path, Path, str]:
    from medinfer.signing import generate_keypair, sign_bundle

    bundle = tiny.build(tmp_path / "m")
    priv, pub, kid = generate_keypair(tmp_path / "k.pem")
    sign_bundle(bundle, priv)
    return bundle, pub, kid


def test_without_cryptography_signatures_are_still_checked_and_signing_names_the_extra(tmp_path: Path, monkeypatch,
                                                                                      caplog) -> None:
    """cryptography made unimportable in this process (not stubbed): verification (pure-Python Ed25519) gives the
    same outcomes as with it; only signing needs the extra, and its refusal names the feature, extra and module."""
    pytest.importorskip("cryptography")
    from medinfer.signing import SignatureCheck, sign_bundle, verify_signature

    bundle, pub, kid = _signed_bundle(tmp_path)
    raw = (bundle / "manifest.json").read_bytes()
    for name in [m for m in sys.modules if m.startswith("cryptography")]:
        monkeypatch.setitem(sys.modules, name, None)
    assert verify_signature(bundle, raw, [pub], False) == SignatureCheck("trusted", kid, f"signature by trusted key "
                                                                                        f"{kid}")
    with caplog.at_level("WARNING", logger="medinfer.signing"):
        check = verify_signature(bundle, raw, [], False)
    message = (f"{bundle} is validly signed by key {kid}, but no trusted keys were given: WHO signed it is not checked "
               "(pass --trusted-key / trusted_keys= to require a known signer)")
    assert check == SignatureCheck("untrusted", kid, message) and message in caplog.text
    with pytest.raises(medinfer.SignatureError, match="does not match manifest.json"):
        verify_signature(bundle, raw + b" ", [pub], False)
    with pytest.raises(medinfer.MissingExtraError) as info:
        sign_bundle(bundle, tmp_path / "k.pem")
    assert str(info.value) == ("bundle signatures needs the [sign] extra (cryptography.hazmat.primitives.serialization "
                               "is not importable): pip install 'medinfer[sign]'")


def test_signature_outcomes_are_complete(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from medinfer.signing import SignatureCheck, verify_signature

    unsigned = tiny.build(tmp_path / "u")
    raw = (unsigned / "manifest.json").read_bytes()
    assert verify_signature(unsigned, raw, [], False) == SignatureCheck("unsigned", None, "not signed")
    with pytest.raises(medinfer.SignatureError) as info:
        verify_signature(unsigned, raw, [], True)
    assert str(info.value) == (f"{unsigned} is not signed (manifest.sig is missing) but the trust policy requires a "
                               "signature; sign it with 'medinfer sign BUNDLE --key KEY'")


@pytest.mark.parametrize("change,words", [
    ({"signature": "c2lnbmF0dXJl!!"}, "is malformed (Error: "),  # not base64: refused, not skipped over
    ({"public_key": "a2V5!!"}, "is malformed (Error: "),
    ({"key_id": 5}, "is malformed (TypeError: alg and key_id must be strings)"),
    ({"alg": 5}, "is malformed (TypeError: alg and key_id must be strings)"),
    ({"alg": "RSA"}, "uses algorithm 'RSA'; this runtime accepts only Ed25519"),
])
def test_a_signature_document_with_a_bad_field_is_refused_by_name(tmp_path: Path, change: dict, words: str) -> None:
    pytest.importorskip("cryptography")
    bundle, _, _ = _signed_bundle(tmp_path)
    sig = bundle / "manifest.sig"
    doc = json.loads(sig.read_text())
    doc.update(change)
    sig.write_text(json.dumps(doc))
    with pytest.raises(medinfer.SignatureError) as info:
        medinfer.load(bundle)
    assert str(info.value).startswith(f"{sig} {words}"), str(info.value)


def test_every_signature_outcome_and_refusal_in_full(tmp_path: Path, caplog) -> None:
    """Trusted, untrusted and unchecked outcomes as whole SignatureCheck values (state, key id, message), and each
    refusal's exact words."""
    pytest.importorskip("cryptography")
    import base64

    from medinfer.signing import SignatureCheck, generate_keypair, key_id, verify_signature

    bundle, pub, kid = _signed_bundle(tmp_path)
    raw = (bundle / "manifest.json").read_bytes()
    assert verify_signature(bundle, raw, [pub], False) == SignatureCheck("trusted", kid, f"signature by trusted key "
                                                                                        f"{kid}")
    with caplog.at_level("WARNING", logger="medinfer.signing"):
        untrusted = verify_signature(bundle, raw, [], False)
    message = (f"{bundle} is validly signed by key {kid}, but no trusted keys were given: WHO signed it is not checked "
               "(pass --trusted-key / trusted_keys= to require a known signer)")
    assert untrusted == SignatureCheck("untrusted", kid, message) and message in caplog.text
    with pytest.raises(medinfer.SignatureError) as info:
        verify_signature(bundle, raw, [], True)
    assert str(info.value) == "a signature is required but no trusted public keys were given (trusted_keys=)"
    _, other_a, kid_a = generate_keypair(tmp_path / "a.pem")
    _, other_b, kid_b = generate_keypair(tmp_path / "b.pem")
    with pytest.raises(medinfer.SignatureError) as info:
        verify_signature(bundle, raw, [other_a, other_b], False)
    assert str(info.value) == (f"{bundle} is signed by key {kid}, which is not among the trusted keys "
                               f"({', '.join(sorted([kid_a, kid_b]))})")
    with pytest.raises(medinfer.SignatureError) as info:
        verify_signature(bundle, raw + b" ", [], False)
    assert str(info.value) == (f"{bundle}: the signature by key {kid} does not match manifest.json: the manifest or "
                               "the signature was altered after signing")

    sig = bundle / "manifest.sig"
    doc = json.loads(sig.read_text())
    no_key = {k: v for k, v in doc.items() if k != "public_key"}
    sig.write_text(json.dumps(no_key))
    with pytest.raises(medinfer.SignatureError) as info:  # nothing to check it against: never accepted unchecked
        verify_signature(bundle, raw, [], False)
    assert str(info.value) == (f"{bundle} carries a signature by key {kid} that cannot be checked: it names no public "
                               "key and no trusted keys were given; pass --trusted-key (trusted_keys=) or re-sign the "
                               "bundle with this medinfer. A present signature is never accepted unchecked")
    assert verify_signature(bundle, raw, [pub], False) == SignatureCheck("trusted", kid, f"signature by trusted key "
                                                                                        f"{kid}")
    sig.write_text(json.dumps({**doc, "key_id": "0" * 16}))
    with pytest.raises(medinfer.SignatureError) as info:
        verify_signature(bundle, raw, [], False)
    assert str(info.value) == (f"{sig}: its key_id {'0' * 16} does not belong to its public key: the signature "
                               "document was altered; re-sign the bundle")
    short = b"\x01" * 5  # the right key id for bytes that are no Ed25519 key
    sig.write_text(json.dumps({**doc, "public_key": base64.b64encode(short).decode(), "key_id": key_id(short)}))
    with pytest.raises(medinfer.SignatureError) as info:
        verify_signature(bundle, raw, [], False)
    assert str(info.value).startswith(f"{sig} carries an invalid public key (") and \
        str(info.value).endswith("); re-sign the bundle")


def test_trusted_key_files_are_bounded_regular_files_read_without_blocking(tmp_path: Path) -> None:
    """A FIFO given as a trusted key is refused at once (opened non-blocking: no writer, no hang), a file beyond
    MAX_KEY_BYTES by its size, and a file of exactly MAX_KEY_BYTES is read to its last byte."""
    import os
    import signal

    pytest.importorskip("cryptography")
    from medinfer.signing import MAX_KEY_BYTES

    bundle, pub, kid = _signed_bundle(tmp_path)
    hint = "give the PEM public key written by 'medinfer keygen'"
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("opening a FIFO as a trusted key blocked"))
    signal.alarm(10)
    try:
        with pytest.raises(medinfer.UsageError) as info:
            medinfer.load(bundle, trusted_keys=[fifo])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert str(info.value) == (f"trusted key file {str(fifo)!r} is not a regular file of at most {MAX_KEY_BYTES} "
                               f"bytes; {hint}")
    big = tmp_path / "big.pem"
    big.write_bytes(b"x" * (MAX_KEY_BYTES + 1))
    with pytest.raises(medinfer.UsageError, match="is not a regular file of at most"):
        medinfer.load(bundle, trusted_keys=[big])
    pem = pub.read_bytes().rstrip(b"\n")
    exact = tmp_path / "exact.pem"  # the key at the very end of a file of exactly MAX_KEY_BYTES: read whole
    exact.write_bytes(b"\n" * (MAX_KEY_BYTES - len(pem)) + pem)
    assert medinfer.load(bundle, trusted_keys=[exact]).signed_by == kid


def test_key_and_signature_writes_name_what_failed(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from medinfer.signing import generate_keypair, sign_bundle

    with pytest.raises(medinfer.MedinferError) as info:
        generate_keypair(tmp_path / "missing" / "k.pem")
    assert str(info.value).startswith(f"the private key {tmp_path / 'missing' / 'k.pem'}: the folder ")
    with pytest.raises(medinfer.MedinferError) as info:
        generate_keypair(tmp_path / "k.pem", tmp_path / "missing" / "k.pub.pem")
    assert str(info.value).startswith(f"the public key {tmp_path / 'missing' / 'k.pub.pem'}: the folder ")
    bundle = tiny.build(tmp_path / "m")
    priv, _, _ = generate_keypair(tmp_path / "s.pem")
    (bundle / "manifest.sig").mkdir()
    with pytest.raises(medinfer.MedinferError) as info:
        sign_bundle(bundle, priv)
    assert str(info.value).startswith(f"the signature {bundle / 'manifest.sig'} ")
