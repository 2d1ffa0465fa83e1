"""serve's security settings checked together: who may call (:mod:`.auth`), over what (:mod:`.tls`), from where.

The rule of exposure: a server bound to an address other than loopback must authenticate its callers (a token
file or client certificates) unless ``--insecure`` says that someone else does (a mesh, a firewall); without
either it refuses to start (exit 2) with what to pass. Tokens over plain HTTP on such an address start with a
warning: anyone on the path can read them.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from ..errors import UsageError
from .auth import GROUPS, SCOPES, AuthPolicy, build_policy
from .tls import TlsConfig

log = logging.getLogger(__name__)

DEFAULT_CERT_SCOPES = ("infer", "metadata", "metrics")


def is_loopback(host: str) -> bool:
    """Is ``host`` an address only this machine can reach?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _groups(values: Any, option: str, known: Any) -> tuple[str, ...]:
    out = tuple(v for v in values if v != "none")
    bad = sorted(set(out) - set(known))
    if bad:
        raise UsageError(f"{option} {','.join(bad)}: expected among {', '.join(known)} (or none)")
    return out


def check_exposure(config: Any) -> None:
    """Refuse settings that would expose an unauthenticated server or that cannot work together.

    Raises:
        UsageError: a non-loopback bind without authentication and without ``--insecure``; TLS options that
            belong together given apart; certificate options without ``--tls-client-ca``.
    """
    _groups(config.auth_open, "--auth-open", GROUPS)
    if (config.tls_cert is None) != (config.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together (the server's certificate chain and its key)")
    if config.tls_client_ca is not None and config.tls_cert is None:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
    if config.tls_client_ca is None and (config.client_cert_scopes or config.require_client_cert):
        raise UsageError("--client-cert-scopes / --require-client-cert need --tls-client-ca (the CA that client "
                         "certificates must chain to)")
    if config.client_cert_scopes is not None:
        _groups(config.client_cert_scopes, "--client-cert-scopes", SCOPES)
    if config.require_client_cert is not None:
        _groups(config.require_client_cert, "--require-client-cert", GROUPS)
    authenticated = config.token_file is not None or config.tls_client_ca is not None
    exposed = not is_loopback(config.host)
    if exposed and not authenticated and not config.insecure:
        raise UsageError(f"--host {config.host} lets other machines reach this server, and nothing authenticates "
                         "them: pass --token-file FILE (medinfer serve-token add makes one) and/or --tls-cert, "
                         "--tls-key and --tls-client-ca; or --insecure if a gateway in front of it authenticates")
    if exposed and not authenticated:
        log.warning("serving %s WITHOUT authentication (--insecure): anyone who reaches the port can infer, read "
                    "metadata and metrics", config.host)
    elif exposed and config.tls_cert is None:
        log.warning("bearer tokens over plain HTTP on %s: anyone on the network path can read them; pass "
                    "--tls-cert and --tls-key", config.host)


def auth_policy(config: Any) -> AuthPolicy:
    """The :class:`AuthPolicy` of a :class:`~medinfer.fleet.serve.ServeConfig` (the token file is read now)."""
    with_ca = config.tls_client_ca is not None
    cert_scopes = config.client_cert_scopes if config.client_cert_scopes is not None else \
        (DEFAULT_CERT_SCOPES if with_ca else ())
    open_groups = _groups(config.auth_open, "--auth-open", GROUPS)
    required = config.require_client_cert if config.require_client_cert is not None else \
        (tuple(g for g in GROUPS if g not in open_groups) if with_ca else ())
    return build_policy(config.token_file, _groups(cert_scopes, "--client-cert-scopes", SCOPES), open_groups,
                        _groups(required, "--require-client-cert", GROUPS))


def tls_config(config: Any) -> TlsConfig | None:
    """The server's TLS files, checked (None: plain HTTP)."""
    if config.tls_cert is None:
        return None
    return TlsConfig(config.tls_cert, config.tls_key, config.tls_client_ca)
