"""Ed25519 signature verification (RFC 8032 §5.1.7) in pure Python: no native code, no dependency.

medinfer checks every present bundle signature with this verifier, on every install: the base device install
(numpy + onnxruntime, no ``cryptography``) and a full install give the same verdict, so the trust policy cannot be
weakened by a missing extra. Verification handles only public data (key, signature, manifest), so the constant-time
concerns of signing do not apply; signing itself (``medinfer keygen`` / ``sign``) stays with ``cryptography``.

Strict verification, each rule tested (tests/runtime/test_ed25519.py):

- the signature has 64 bytes, the public key 32;
- ``S < L`` (a signature with ``S + L`` in place of ``S`` is a malleated copy);
- the encodings of ``A`` (public key) and ``R`` are canonical: ``y < p``, and ``x = 0`` never with the sign bit set;
- neither ``A`` nor ``R`` has small order (``[8]P`` is the identity): with a small-order key one signature would be
  valid for every message;
- the cofactorless equation ``[S]B = R + [k]A`` with ``k = SHA-512(R || A || M) mod L``.

Compared with OpenSSL (what ``cryptography`` runs): every signature OpenSSL rejects is rejected here (a differential
test on thousands of valid and corrupted signatures and on crafted edge cases); this verifier rejects in addition
non-canonical public keys (OpenSSL reduces ``y`` mod ``p``) and small-order ``A`` or ``R`` (OpenSSL checks
neither), encodings no honest signer produces.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z
IDENTITY: Point = (0, 1, 1, 0)

#: DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def _add(p: Point, q: Point) -> Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % P, g * h % P, f * g % P, e * h % P


def _double(p: Point) -> Point:
    x1, y1, z1, _ = p
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    e = h - (x1 + y1) * (x1 + y1)
    g = a - b
    f = c + g
    return e * f % P, g * h % P, f * g % P, e * h % P


def _multiply(scalar: int, p: Point) -> Point:
    result = IDENTITY
    while scalar:
        if scalar & 1:
            result = _add(result, p)
        p = _double(p)
        scalar >>= 1
    return result


def _equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


def _recover_x(y: int, sign: int) -> int | None:
    """x of the curve point with this y and sign bit (RFC 8032 §5.1.3 steps 2-4), or None."""
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0  # x = 0 with the sign bit set is a non-canonical encoding
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    return P - x if x & 1 != sign else x


def decode_point(data: bytes) -> Point | None:
    """The point of a 32-byte encoding, or None when it is not the canonical encoding of a curve point."""
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= P:
        return None
    x = _recover_x(y, sign)
    if x is None:
        return None
    return x, y, 1, x * y % P


def encode_point(p: Point) -> bytes:
    """The canonical 32-byte encoding of a point."""
    zi = pow(p[2], P - 2, P)
    x, y = p[0] * zi % P, p[1] * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _small_order(p: Point) -> bool:
    q = _double(_double(_double(p)))
    return q[0] % P == 0 and (q[1] - q[2]) % P == 0


_BY = 4 * pow(5, P - 2, P) % P
BASE: Point = (_recover_x(_BY, 0) or 0, _BY, 1, (_recover_x(_BY, 0) or 0) * _BY % P)
_BASE_POWERS: list[Point] = []


def scalar_mult_base(scalar: int) -> Point:
    """``[scalar]B`` from a table of ``[2^i]B`` (built once, on first use)."""
    if not _BASE_POWERS:
        p = BASE
        for _ in range(256):
            _BASE_POWERS.append(p)
            p = _double(p)
    result = IDENTITY
    i = 0
    while scalar:
        if scalar & 1:
            result = _add(result, _BASE_POWERS[i])
        scalar >>= 1
        i += 1
    return result


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key`` (raw 32 bytes), under
    the strict rules of the module docstring; False otherwise (never raises for malformed input)."""
    if not isinstance(public_key, (bytes, bytearray)) or not isinstance(signature, (bytes, bytearray)):
        return False
    if len(public_key) != 32 or len(signature) != 64:
        return False
    public_key, signature = bytes(public_key), bytes(signature)
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    a = decode_point(public_key)
    r = decode_point(signature[:32])
    if a is None or r is None or _small_order(a) or _small_order(r):
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + bytes(message)).digest(), "little") % L
    return _equal(scalar_mult_base(s), _add(r, _multiply(k, a)))


def public_key_from_pem(data: bytes) -> bytes:
    """The raw 32-byte key of an Ed25519 public key in PEM (SubjectPublicKeyInfo, what ``medinfer keygen`` writes).

    Raises:
        ValueError: not a PEM ``PUBLIC KEY`` block, not Ed25519, or not a valid public key encoding.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not ASCII PEM text") from None
    begin, end = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ValueError("not one PEM 'PUBLIC KEY' block")
    body = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the PEM body is not base64") from None
    if len(der) != len(SPKI_PREFIX) + 32 or not der.startswith(SPKI_PREFIX):
        raise ValueError("not an Ed25519 public key (SubjectPublicKeyInfo with OID 1.3.101.112)")
    raw = der[len(SPKI_PREFIX):]
    if decode_point(raw) is None:
        raise ValueError("the key is not a valid Ed25519 point encoding")
    return raw


def public_key_to_pem(raw: bytes) -> bytes:
    """The PEM (SubjectPublicKeyInfo) of a raw 32-byte Ed25519 public key."""
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, got {len(raw)}")
    body = base64.b64encode(SPKI_PREFIX + raw).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n".encode()
