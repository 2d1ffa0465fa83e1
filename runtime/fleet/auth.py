"""Who may call what on ``medinfer serve``: bearer tokens (hashed at rest, scoped, optionally expiring) and client
certificates (mutual TLS, verified by :mod:`ssl` / grpcio against a CA), one policy for HTTP and gRPC.

Endpoints fall into groups, each needing one scope:

========== ====================================================================== =========
group      endpoints                                                              scope
========== ====================================================================== =========
health     ``/v2/health/live``, ``/v2/health/ready`` (gRPC ServerLive/ServerReady) none: open unless configured
metadata   server and model metadata, model ready, model config, repository index ``metadata``
infer      ``/v2/models/{m}/infer`` (gRPC ModelInfer)                             ``infer``
metrics    ``/metrics``, the statistics extension                                 ``metrics``
admin      repository load / unload                                               ``admin``
========== ====================================================================== =========

A token file is JSON: ``{"version": 1, "tokens": [{"name", "sha256", "scopes", "expires"}]}``; it holds the
sha256 of each token, never a token (``medinfer serve-token add`` makes one and prints it once). Tokens are 256
random bits, so a plain sha256 cannot be reversed by search; the file is re-read when it changes (revocation needs
no restart). A token is accepted only in the ``Authorization: Bearer`` header (gRPC: the ``authorization``
metadata): a request that carries a token in its query string is refused whatever else it carries — URLs end up in
proxies' and browsers' logs. A verified client certificate grants ``cert_scopes``; groups named in
``cert_required`` need one besides any token. Refusals are :class:`Unauthenticated` (401: no or unknown or expired
credential) or :class:`Forbidden` (403: a credential without the scope); each is logged and audited with the
client address, the endpoint group, the reason and the token's name when one was recognised — never the token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AuthError, Forbidden, MedinferError, Unauthenticated, UsageError, http_status
from ..integrity import sha256_bytes
from ..timestamps import parse_time, utc_text

log = logging.getLogger(__name__)

SCOPES = ("infer", "metadata", "metrics", "admin")
GROUPS: dict[str, str | None] = {"health": None, "metadata": "metadata", "infer": "infer", "metrics": "metrics",
                                 "admin": "admin"}
TOKEN_PREFIX = "mdi_"
MAX_TOKEN_CHARS = 512  # a longer Authorization header is refused without hashing it
_QUERY_KEYS = (b"access_token", b"token", b"bearer", b"api_key", b"apikey", b"authorization", b"auth")


def token_digest(token: str) -> str:
    """The at-rest form of a token: ``sha256:<hex>``."""
    return "sha256:" + sha256_bytes(token.encode("utf-8"))


@dataclass(frozen=True)
class TokenEntry:
    """One token of the file: its name, digest, scopes and expiry (None: never)."""

    name: str
    digest: str
    scopes: frozenset[str]
    expires: float | None = None  # seconds since the epoch

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (time.time() if now is None else now) >= self.expires


def expiry_of(value: Any, where: str) -> float | None:
    """A token's expiry (ISO 8601 with a zone) in seconds since the epoch; None for no expiry.

    Raises:
        UsageError: not such a time.
    """
    if value is None:
        return None
    try:
        return parse_time(str(value))
    except ValueError as exc:
        raise UsageError(f"{where}: expires {value!r}: {exc} (an ISO 8601 time with a zone, e.g. "
                         "2027-01-31T00:00:00Z)") from None


def parse_token_file(text: str, where: str) -> dict[str, TokenEntry]:
    """The entries of a token file by digest.

    Raises:
        UsageError: not JSON, an entry without name/digest, an unknown scope, a bad expiry, a duplicate.
    """
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise UsageError(f"{where} is not JSON; medinfer serve-token add writes one") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
        raise UsageError(f"{where}: expected {{\"version\": 1, \"tokens\": [...]}}")
    entries: dict[str, TokenEntry] = {}
    for i, item in enumerate(doc["tokens"]):
        at = f"{where}: tokens[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or \
                not isinstance(item.get("sha256"), str) or not item["sha256"].startswith("sha256:") or \
                len(item["sha256"]) != 71:
            raise UsageError(f"{at} needs a 'name' and a 'sha256' (sha256:<64 hex>)")
        scopes = item.get("scopes")
        if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
            raise UsageError(f"{at} ('{item['name']}'): scopes {scopes!r}; expected a list of {', '.join(SCOPES)}")
        if item["sha256"] in entries:
            raise UsageError(f"{at} ('{item['name']}') repeats the token of '{entries[item['sha256']].name}'")
        entries[item["sha256"]] = TokenEntry(item["name"], item["sha256"], frozenset(scopes),
                                             expiry_of(item.get("expires"), at))
    return entries


class TokenStore:
    """The token file, re-read when its size or mtime changes (checked at most once a second)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self.entries: dict[str, TokenEntry] = {}
        self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        try:
            st = self.path.stat()
        except OSError as exc:
            if force:
                raise UsageError(f"--token-file {self.path}: {exc.strerror or exc}") from None
            log.error("token file %s unreadable (%s); keeping the tokens read before", self.path, type(exc).__name__)
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            entries = parse_token_file(self.path.read_text(encoding="utf-8"), str(self.path))
        except (UsageError, OSError, UnicodeDecodeError) as exc:
            if force:
                raise UsageError(str(exc)) from None
            log.error("token file %s not re-read: %s; keeping the tokens read before", self.path,
                      type(exc).__name__)
            return
        if st.st_mode & 0o077:
            log.warning("token file %s is readable by others (mode %o): it holds only digests, but 0600 is "
                        "advised", self.path, st.st_mode & 0o777)
        self.entries, self._stamp = entries, stamp
        log.info("token file %s: %d token(s)", self.path, len(entries))

    def lookup(self, token: str) -> TokenEntry | None:
        now = time.monotonic()
        if now - self._checked >= 1.0:
            with self._lock:
                if now - self._checked >= 1.0:
                    self._checked = now
                    self._reload()
        return self.entries.get(token_digest(token))


@dataclass(frozen=True)
class AuthPolicy:
    """What each endpoint group needs. ``tokens`` None: no bearer tokens; ``cert_scopes``: what a verified client
    certificate grants; ``open``: groups that need no credential; ``cert_required``: groups that need a verified
    client certificate (besides a token when the certificate grants no scope)."""

    tokens: TokenStore | None = None
    cert_scopes: frozenset[str] = frozenset()
    open: frozenset[str] = frozenset({"health"})
    cert_required: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for option, groups in (("--auth-open", self.open), ("--require-client-cert", self.cert_required)):
            bad = sorted(set(groups) - set(GROUPS))
            if bad:
                raise UsageError(f"{option} {','.join(bad)}: expected endpoint groups among {', '.join(GROUPS)}")
        bad = sorted(set(self.cert_scopes) - set(SCOPES))
        if bad:
            raise UsageError(f"--client-cert-scopes {','.join(bad)}: expected scopes among {', '.join(SCOPES)}")

    @property
    def enabled(self) -> bool:
        """Does any group need a credential?"""
        return (self.tokens is not None or bool(self.cert_scopes) or bool(self.cert_required)) and \
            set(self.open) != set(GROUPS)


@dataclass
class Identity:
    """Who made a request (for the audit trail and logs): a token's name and/or a certificate's subject."""

    token: str | None = None
    cert: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    def __str__(self) -> str:
        return ", ".join(x for x in (f"token {self.token}" if self.token else "",
                                     f"cert {self.cert}" if self.cert else "") if x) or "anonymous"


def cert_subject(cert: Mapping[str, Any] | None) -> str | None:
    """The commonName (else the whole subject) of a verified peer certificate as :mod:`ssl` returns it."""
    if not cert:
        return None
    pairs = [kv for rdn in cert.get("subject", ()) for kv in rdn]
    common = [v for k, v in pairs if k == "commonName"]
    return str(common[0] if common else ",".join(f"{k}={v}" for k, v in pairs) or "certificate")[:200]


def query_has_token(query: bytes | str) -> bool:
    """Does a query string carry something named like a credential?"""
    raw = query.encode("latin-1") if isinstance(query, str) else query
    for part in raw.split(b"&"):
        key = part.split(b"=", 1)[0].strip().lower()
        if key in _QUERY_KEYS:
            return True
    return False


def bearer(header: bytes | str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (None: no such header).

    Raises:
        Unauthenticated: a header of another scheme or a malformed value.
    """
    if header is None:
        return None
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS or not token.isascii() or \
            not token.isprintable() or " " in token:
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token


class Authorizer:
    """Applies an :class:`AuthPolicy` to one request and reports every refusal (log + audit event)."""

    def __init__(self, policy: AuthPolicy, audit: Any = None) -> None:
        self.policy = policy
        self.audit = audit
        self.enabled = policy.enabled

    def check(self, group: str, authorization: bytes | str | None, cert: Mapping[str, Any] | None,
              query: bytes | str = b"", *, client: str = "", path: str = "", protocol: str = "http") -> Identity:
        """The caller's identity if ``group`` may be called with these credentials.

        Args:
            group: the endpoint group (:data:`GROUPS`).
            authorization: the Authorization header (or gRPC metadata) value, None when absent.
            cert: the verified client certificate (:meth:`ssl.SSLSocket.getpeercert`), None when none.
            query: the request's query string.

        Raises:
            Unauthenticated: 401. Forbidden: 403.
        """
        identity = Identity(cert=cert_subject(cert))
        if not self.enabled:
            return identity
        try:
            return self._decide(group, authorization, cert, query, identity)
        except AuthError as exc:
            self.refused(exc, group, identity, client=client, path=path, protocol=protocol)
            raise

    def _decide(self, group: str, authorization: bytes | str | None, cert: Mapping[str, Any] | None,
                query: bytes | str, identity: Identity) -> Identity:
        if query and query_has_token(query):
            raise Unauthenticated("a token in the URL's query string is never accepted (URLs are logged by proxies "
                                  "and browsers): send it as 'Authorization: Bearer <token>', and replace that token")
        policy = self.policy
        if group in policy.open:
            return identity
        need = GROUPS[group]
        token = bearer(authorization)
        scopes: set[str] = set(policy.cert_scopes) if cert else set()
        if token is not None:
            if policy.tokens is None:
                raise Unauthenticated("this server takes no bearer tokens (no --token-file); use a client "
                                      "certificate")
            entry = policy.tokens.lookup(token)
            if entry is None:
                raise Unauthenticated("unknown token")
            identity.token = entry.name
            if entry.expired():
                raise Unauthenticated(f"token '{entry.name}' expired at {utc_text(entry.expires)}")
            scopes |= entry.scopes
        if group in policy.cert_required and not cert:
            raise (Forbidden if token is not None else Unauthenticated)(
                f"the {group} endpoints need a client certificate signed by this server's client CA")
        if token is None and not cert:
            raise Unauthenticated(f"the {group} endpoints need a credential: 'Authorization: Bearer <token>'"
                                  + (" or a client certificate" if policy.cert_scopes else ""))
        identity.scopes = frozenset(scopes)
        if need is not None and need not in scopes:
            raise Forbidden(f"{identity} lacks the scope '{need}' that the {group} endpoints need")
        return identity

    def refused(self, exc: AuthError, group: str, identity: Identity, *, client: str, path: str,
                protocol: str) -> None:
        """Log and audit a refusal: who (never the token itself), where from, what, why."""
        fields = {"status": http_status(exc), "reason": exc.code, "group": group, "client": client, "path": path[:200],
                  "protocol": protocol, "token_name": identity.token, "cert": identity.cert,
                  "detail": str(exc)[:300]}
        log.warning("refused %s %s from %s: %s", protocol, group, client, exc.code, extra={"auth": fields})
        if self.audit is not None:
            try:
                self.audit.event("auth_refused", **fields)
            except MedinferError:
                log.error("the audit trail could not record an authentication refusal")


def build_policy(token_file: str | None, cert_scopes: Iterable[str], open_groups: Iterable[str],
                 cert_required: Iterable[str]) -> AuthPolicy:
    """An :class:`AuthPolicy` from serve's options (the token file read now: a bad one refuses to start)."""
    return AuthPolicy(TokenStore(token_file) if token_file else None, frozenset(cert_scopes),
                      frozenset(open_groups), frozenset(cert_required))
