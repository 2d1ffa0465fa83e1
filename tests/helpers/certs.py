"""Test certificates made with ``cryptography``: a CA, a server certificate for 127.0.0.1, and client certificates
that are good, expired, self-signed, or signed by another CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

from medinfer.timestamps import utc_datetime


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool = False, server: bool = False,
          days: tuple[int, int] = (-1, 30)) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = utc_datetime()
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=days[0])).not_valid_after(now + dt.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                                     x509.DNSName("localhost")]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, cert: Any, key: Any) -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization

    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def make_pki(folder: Path) -> dict[str, Any]:
    """Write the certificates into ``folder``; returns their paths: ``ca`` (PEM), and (cert, key) pairs
    ``server``, ``client``, ``expired``, ``self_signed``, ``foreign`` (signed by another CA)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, other_key = _key(), _key()
    ca = _cert("medinfer test CA", ca_key, "medinfer test CA", ca_key, ca=True, days=(-2, 60))
    out: dict[str, Any] = {"ca": _write(folder, "ca", ca, ca_key)[0]}
    server_key = _key()
    out["server"] = _write(folder, "server", _cert("127.0.0.1", server_key, "medinfer test CA", ca_key, server=True),
                           server_key)
    for name, issuer, issuer_key, days in (("client", "medinfer test CA", ca_key, (-1, 30)),
                                           ("expired", "medinfer test CA", ca_key, (-30, -1)),
                                           ("foreign", "another CA", other_key, (-1, 30))):
        key = _key()
        out[name] = _write(folder, name, _cert(f"{name}-client", key, issuer, issuer_key, days=days), key)
    key = _key()
    out["self_signed"] = _write(folder, "self_signed", _cert("self-signed-client", key, "self-signed-client", key),
                                key)
    return out
