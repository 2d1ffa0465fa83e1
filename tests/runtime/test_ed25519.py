"""The pure-Python Ed25519 verifier (medinfer.ed25519): RFC 8032 test vectors, its strict rules, and a differential
test against ``cryptography`` (OpenSSL) on many valid and corrupted signatures and on crafted edge cases."""

from __future__ import annotations

import hashlib
import random

import pytest
from medinfer import ed25519

from ..helpers import ed25519_sign

# RFC 8032 §7.1, TEST 1-3: secret key, public key, message, signature
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f059"
     "5bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb430"
     "2aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716e"
     "d28dc027beceea1ec40a"),
]


@pytest.mark.parametrize("vector", range(len(RFC8032)))
def test_rfc8032_vectors_verify_and_any_changed_byte_does_not(vector: int) -> None:
    secret, public, message, signature = (bytes.fromhex(v) for v in RFC8032[vector])
    assert ed25519.verify(public, signature, message)
    assert ed25519_sign.public_key(secret) == public and ed25519_sign.sign(secret, message) == signature
    for i in range(64):
        bad = bytearray(signature)
        bad[i] ^= 1 << (i % 8)
        assert not ed25519.verify(public, bytes(bad), message), f"signature byte {i} flipped still verifies"
    for i in range(32):
        bad = bytearray(public)
        bad[i] ^= 1 << (i % 8)
        assert not ed25519.verify(bytes(bad), signature, message), f"key byte {i} flipped still verifies"
    assert not ed25519.verify(public, signature, message + b"\x00")


def _le(n: int) -> bytes:
    return n.to_bytes(32, "little")


def _torsion() -> list[ed25519.Point]:
    """The 8 points of small order: [L]Q for random curve points Q lands in the torsion subgroup."""
    rng = random.Random(8)
    found: dict[bytes, ed25519.Point] = {}
    while len(found) < 8:
        q = ed25519.decode_point(rng.randbytes(32))
        if q is not None:
            t = ed25519._multiply(ed25519.L, q)
            found[ed25519.encode_point(t)] = t
    return list(found.values())


def _hash(r: bytes, a: bytes, m: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + m).digest(), "little") % ed25519.L


def _edge_cases() -> dict[str, tuple[bytes, bytes, bytes]]:
    """Crafted (public key, signature, message) triples, each named by what is odd about it."""
    seed = bytes(range(32))
    a = ed25519_sign._expand(seed)[0]
    pub = ed25519_sign.public_key(seed)
    msg = b"manifest"
    good = ed25519_sign.sign(seed, msg)
    s = int.from_bytes(good[32:], "little")
    cases = {"valid": (pub, good, msg),
             "S + L (malleated)": (pub, good[:32] + _le(s + ed25519.L), msg),
             "S = L": (pub, good[:32] + _le(ed25519.L), msg),
             "S = 2^256 - 1": (pub, good[:32] + b"\xff" * 32, msg)}
    y = int.from_bytes(good[:32], "little")
    # R with the sign bit flipped: another point (or none), never the signature's
    cases["R sign flipped"] = (pub, _le(y ^ (1 << 255)) + good[32:], msg)
    for i, t in enumerate(_torsion()):
        enc = ed25519.encode_point(t)
        # A of small order: R = [S]B with k*A = identity (k = 0 mod 8) is a "signature" for any message
        for n in range(1, 200):
            r = ed25519.encode_point(ed25519.scalar_mult_base(n))
            if ed25519._small_order(t) and _hash(r, enc, msg) % 8 == 0:
                cases[f"small-order A #{i}"] = (enc, r + _le(n), msg)
                break
        # mixed-order A = A + T: the honest key a signs when k = 0 mod 8
        mixed = ed25519.encode_point(ed25519._add(ed25519.scalar_mult_base(a), t))
        for n in range(1, 400):
            r = ed25519.encode_point(ed25519.scalar_mult_base(n))
            k = _hash(r, mixed, msg)
            if k % 8 == 0:
                cases[f"mixed-order A #{i}"] = (mixed, r + _le((n + k * a) % ed25519.L), msg)
                break
        # R of small order (the identity): S = k*a satisfies [S]B = R + [k]A
        if ed25519.encode_point(t) == ed25519.encode_point(ed25519.IDENTITY):
            k = _hash(enc, pub, msg)
            cases["small-order R (identity)"] = (pub, enc + _le(k * a % ed25519.L), msg)
    # non-canonical encodings: y + p (y < 19) and x = 0 with the sign bit set
    for yy in (0, 1, 2, 3):
        enc = _le(yy + ed25519.P)
        if ed25519.decode_point(_le(yy)) is None:
            continue
        for n in range(1, 200):
            r = ed25519.encode_point(ed25519.scalar_mult_base(n))
            if _hash(r, enc, msg) % 8 == 0:
                cases[f"non-canonical A (y = {yy} + p)"] = (enc, r + _le(n), msg)
                break
    ident_signbit = _le(1 | (1 << 255))
    cases["A = identity with the sign bit set"] = (ident_signbit, ed25519.encode_point(ed25519.scalar_mult_base(5))
                                                   + _le(5), msg)
    r_nc = _le(1 + ed25519.P)  # a non-canonical identity as R, S = k*a
    cases["non-canonical R"] = (pub, r_nc + _le(_hash(r_nc, pub, msg) * a % ed25519.L), msg)
    return cases


#: Where this verifier is stricter than OpenSSL (documented in medinfer/ed25519.py): it rejects these, and only these,
#: signatures that OpenSSL accepts.
STRICTER = ("small-order A", "small-order R", "non-canonical A", "A = identity with the sign bit set")


def test_strict_rules_reject_malleated_small_order_and_non_canonical() -> None:
    verdict = {name: ed25519.verify(*case) for name, case in _edge_cases().items()}
    assert verdict["valid"]
    assert {n for n, ok in verdict.items() if ok} == {"valid"} | {n for n in verdict if n.startswith("mixed-order")}
    assert any(n.startswith("small-order A") for n in verdict) and "small-order R (identity)" in verdict
    assert any(n.startswith("non-canonical A") for n in verdict) and "non-canonical R" in verdict


def test_edge_cases_never_more_permissive_than_openssl() -> None:
    pytest.importorskip("cryptography")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    def openssl(pub: bytes, sig: bytes, msg: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        except (InvalidSignature, ValueError):
            return False
        return True

    differ = []
    for name, case in _edge_cases().items():
        ours, theirs = ed25519.verify(*case), openssl(*case)
        assert not (ours and not theirs), f"{name}: accepted here but rejected by OpenSSL"
        if theirs and not ours:
            differ.append(name)
    assert differ and all(name.startswith(STRICTER) for name in differ), differ


def test_differential_against_cryptography_on_valid_and_corrupted_signatures() -> None:
    pytest.importorskip("cryptography")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    rng = random.Random(25519)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    counts = {"valid": 0, "corrupted": 0, "accepted": 0}
    for i in range(300):
        key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        pub = key.public_key().public_bytes(*raw)
        msg = rng.randbytes(rng.randrange(0, 300))
        sig = key.sign(msg)
        assert ed25519.verify(pub, sig, msg), f"case {i}: a valid signature is refused"
        counts["valid"] += 1
        for _ in range(4):
            p, s, m = bytearray(pub), bytearray(sig), bytearray(msg)
            what = rng.choice(("sig", "sig", "key", "msg", "r-s swap", "random"))
            if what == "sig":
                s[rng.randrange(64)] ^= 1 << rng.randrange(8)
            elif what == "key":
                p[rng.randrange(32)] ^= 1 << rng.randrange(8)
            elif what == "msg":
                m = m + b"!" if not m else m[:-1] if rng.random() < 0.3 else m
                if m == bytearray(msg):
                    m[0] ^= 1
            elif what == "r-s swap":
                s = s[32:] + s[:32]
            else:
                s = bytearray(rng.randbytes(64))
            try:
                Ed25519PublicKey.from_public_bytes(bytes(p)).verify(bytes(s), bytes(m))
                theirs = True
            except (InvalidSignature, ValueError):
                theirs = False
            assert ed25519.verify(bytes(p), bytes(s), bytes(m)) == theirs, f"case {i} ({what}) differs"
            counts["corrupted"] += 1
            counts["accepted"] += theirs
    assert counts["valid"] == 300 and counts["corrupted"] == 1200 and counts["accepted"] == 0


def test_pem_public_keys_round_trip_and_junk_is_refused() -> None:
    pub = ed25519_sign.public_key(b"\x01" * 32)
    pem = ed25519.public_key_to_pem(pub)
    assert ed25519.public_key_from_pem(pem) == pub
    for junk in (b"", b"\xff\xfe", pem.replace(b"PUBLIC", b"PRIVATE"), pem + pem,
                 ed25519.public_key_to_pem(pub)[:40] + b"!!" + pem[42:],
                 pem.replace(b"MCowBQYDK2Vw", b"MCowBQYDK2Vx")):
        with pytest.raises(ValueError):
            ed25519.public_key_from_pem(junk)


def test_malformed_arguments_are_false_never_an_exception() -> None:
    secret, public, message, signature = (bytes.fromhex(v) for v in RFC8032[0])
    for pub, sig in ((public[:31], signature), (public, signature[:63]), (public + b"\0", signature),
                     (b"", b""), ("text", signature), (public, None)):
        assert ed25519.verify(pub, sig, message) is False  # type: ignore[arg-type]
