"""TLS for ``medinfer serve``: the server's certificate and, for mutual TLS, the CA that client certificates must
chain to. HTTP gets an :class:`ssl.SSLContext` (uvicorn's ``ssl_context_factory``), gRPC grpcio's server
credentials, both from the same files.

Client certificates are verified by OpenSSL during the handshake (chain to ``client_ca``, validity period, key
usage): an expired, self-signed or foreign-CA certificate ends the handshake with a TLS alert — no HTTP request
is ever read from such a peer. Over HTTP a client MAY connect without a certificate (``CERT_OPTIONAL``), so that
each endpoint group decides whether it needs one (:class:`medinfer.fleet.auth.AuthPolicy`); grpcio has no such
choice per call, so with a client CA every gRPC call needs a verified certificate.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsConfig:
    """Paths of the server's certificate chain and key, and of the CA bundle for client certificates."""

    cert: str
    key: str
    client_ca: str | None = None

    def __post_init__(self) -> None:
        for option, path in (("--tls-cert", self.cert), ("--tls-key", self.key), ("--tls-client-ca", self.client_ca)):
            if path is not None and not Path(path).is_file():
                raise UsageError(f"{option} {path}: no such file")
        try:
            self.context()
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise UsageError(f"--tls-cert/--tls-key/--tls-client-ca do not make a TLS server: {exc}") from None

    def context(self) -> ssl.SSLContext:
        """The HTTP server's context: TLS 1.2 or later, client certificates verified when presented."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            ctx.load_verify_locations(cafile=self.client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def uvicorn_factory(self) -> Any:
        """uvicorn's ``ssl_context_factory``: this context, not uvicorn's defaults."""
        return lambda _config, _default: self.context()

    def grpc_credentials(self) -> Any:
        """grpcio's server credentials (client certificates required and verified with a client CA)."""
        import grpc

        pair = (Path(self.key).read_bytes(), Path(self.cert).read_bytes())
        if self.client_ca is None:
            return grpc.ssl_server_credentials([pair])
        return grpc.ssl_server_credentials([pair], root_certificates=Path(self.client_ca).read_bytes(),
                                           require_client_auth=True)


def peer_certificate(transport: Any) -> dict[str, Any] | None:
    """The verified client certificate of a TLS connection (None without TLS or without a certificate)."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    try:
        cert = ssl_object.getpeercert()
    except (ValueError, ssl.SSLError):
        return None
    return cert or None
