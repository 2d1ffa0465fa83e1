"""The token file of ``medinfer serve`` (``medinfer serve-token add | revoke | list``): each token's name, sha256,
scopes and expiry; a token itself is shown once, when it is made, and never stored."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..timestamps import utc_text
from .auth import SCOPES, TOKEN_PREFIX, expiry_of, parse_token_file, token_digest


def parse_expiry(value: str | None, now: float | None = None) -> float | None:
    """``30d``, ``12h``, ``90m`` from now, or an ISO 8601 time with a zone, as seconds since the epoch; None for no
    expiry."""
    if value is None or value == "never":
        return None
    units = {"d": 86400, "h": 3600, "m": 60}
    if value[-1:] in units and value[:-1].isdigit():
        return (time.time() if now is None else now) + units[value[-1]] * int(value[:-1])
    return expiry_of(value, "--expires")


def add_token(path: str | Path, name: str, scopes: Iterable[str], expires: float | None = None) -> str:
    """Make a new token, append its digest to the token file (created 0600), and return the token (shown once).

    Raises:
        UsageError: a bad name or scope, a name already in the file, an unreadable file.
    """
    scopes = sorted(set(scopes))
    if not name or not name.isprintable() or len(name) > 100:
        raise UsageError(f"--name {name!r}: 1 to 100 printable characters")
    if not scopes or any(s not in SCOPES for s in scopes):
        raise UsageError(f"--scopes {','.join(scopes)}: expected one or more of {', '.join(SCOPES)}")
    path = Path(path)
    doc: dict[str, Any] = {"version": 1, "tokens": []}
    if path.exists():
        text = path.read_text(encoding="utf-8")
        parse_token_file(text, str(path))
        doc = json.loads(text)
    if any(t.get("name") == name for t in doc["tokens"]):
        raise UsageError(f"{path} already has a token named '{name}'; revoke it first or choose another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    doc["tokens"].append({"name": name, "sha256": token_digest(token), "scopes": scopes,
                          "expires": utc_text(expires) if expires is not None else None,
                          "created": utc_text()})
    _write(path, doc)
    return token


def revoke_token(path: str | Path, name: str) -> None:
    """Remove the token named ``name`` from the file.

    Raises:
        UsageError: no such token.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else '{"tokens": []}'
    parse_token_file(text, str(path))
    doc = json.loads(text)
    kept = [t for t in doc["tokens"] if t.get("name") != name]
    if len(kept) == len(doc["tokens"]):
        raise UsageError(f"{path} has no token named '{name}' ({', '.join(t['name'] for t in kept) or 'none'})")
    doc["tokens"] = kept
    _write(path, doc)


def _write(path: Path, doc: dict[str, Any]) -> None:
    from ..writing import write_atomic

    write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"), "the token file", mode=0o600)
