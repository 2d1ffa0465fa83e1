"""Verifying an audit trail: re-derive the hash chain (:class:`~medinfer.audit.record.Chain`) and name the first
edited, deleted, inserted or reordered line; with ``head=True`` also the anchored record count (deletions at the
end). A torn last line (a crash mid-write) is reported, and a torn line a later writer sealed is accepted only with
the recovery record that carries its exact length and digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import AuditError
from .record import GENESIS, HEAD_SUFFIX, KEYED, Chain, canonical, head_mac, json_or_none, read_key, torn_digest


@dataclass(frozen=True)
class AuditReport:
    """What :func:`verify_log` found: ``ok``, the records verified, the last hash, and the first problem (its
    line), a torn tail, whether the log was keyed and its head checked."""

    ok: bool
    records: int
    last_hash: str
    problem: str | None = None
    line: int | None = None
    torn_tail: bool = False
    keyed: bool = False
    head_checked: bool = False


def verify_log(path: str | Path, *, key: str | Path | bytes | None = None, head: bool = False) -> AuditReport:
    """Re-derive the hash chain; report the first edited, deleted, inserted or reordered line.

    Args:
        path: the JSONL log.
        key: the device key of a keyed log: every record must then verify with it (a plain record in a keyed
            check is refused, so the chain cannot be recomputed without the key).
        head: also check ``<path>.head``: the log must reach the record count and hash it anchors (detects
            records deleted from the end).

    A torn last line (a crash mid-write) is reported (``torn_tail``) but does not fail verification of the
    complete records before it; a torn line that a later writer sealed must be followed by the recovery record
    that carries its exact length and sha256.

    Raises:
        AuditError: the log (or its head file) is missing or not a readable file.
    """
    path = Path(path)
    secret = read_key(key) if key is not None else None
    plain, keyed_chain = Chain(), Chain(secret) if secret is not None else None
    if not path.is_file():
        raise AuditError(f"audit log {path} {'is a folder' if path.is_dir() else 'does not exist'}; give the "
                         "JSONL file written by medinfer (e.g. audit.jsonl)")
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise AuditError(f"audit log {path} cannot be read ({exc.strerror or exc})") from None
    torn = lines[-1] != b""
    complete = lines[:-1]
    prev, seq = GENESIS, 0
    i = 0
    while i < len(complete):
        raw, n = complete[i], i + 1
        i += 1
        try:
            rec = json.loads(raw)
            claimed = rec.pop("hash")
        except (ValueError, KeyError, AttributeError, TypeError, RecursionError):
            nxt = json_or_none(complete[i]) if i < len(complete) else None
            if (nxt is not None and nxt.get("event") == "recovered_torn_tail" and nxt.get("torn_bytes") == len(raw)
                    and nxt.get("torn_sha256") == torn_digest(raw)):
                continue  # a sealed torn line: its digest is chained by the recovery record that follows
            return AuditReport(False, seq, prev, f"line {n} is not a JSON audit record", n, torn, secret is not None)
        keyed = rec.get("chain") == KEYED
        if keyed and secret is None:
            return AuditReport(False, seq, prev, f"line {n} is keyed ({KEYED}): verify it with the device key "
                               "(--key)", n, torn)
        if secret is not None and not keyed:
            return AuditReport(False, seq, prev, f"line {n} is not keyed although a key was given: it was written "
                               "or recomputed without the device key", n, torn, True)
        if rec.get("prev") != prev:
            return AuditReport(False, seq, prev, f"line {n} does not follow the record before it: a record was "
                               "deleted, inserted or reordered", n, torn, secret is not None)
        if rec.get("seq") != seq + 1:
            return AuditReport(False, seq, prev, f"line {n} has seq {rec.get('seq')}, expected {seq + 1}", n, torn,
                               secret is not None)
        if (keyed_chain if keyed and keyed_chain is not None else plain).link(prev, canonical(rec)) != claimed:
            return AuditReport(False, seq, prev, f"line {n} was edited: its content does not match its hash", n, torn,
                               secret is not None)
        prev, seq = claimed, seq + 1
    if head:
        problem = _check_head(path, secret, seq, complete, prev)
        if problem:
            return AuditReport(False, seq, prev, problem, None, torn, secret is not None, True)
    return AuditReport(True, seq, prev, None, None, torn, secret is not None, head)


def _check_head(path: Path, secret: bytes | None, records: int, lines: list[bytes], last: str) -> str | None:
    head_path = Path(str(path) + HEAD_SUFFIX)
    if not head_path.is_file():
        raise AuditError(f"{head_path} does not exist: the log was not written with head=True, or the head was "
                         "removed")
    doc = json_or_none(head_path.read_bytes())
    if doc is None or not isinstance(doc.get("records"), int) or not isinstance(doc.get("last_hash"), str):
        return f"{head_path.name} is not a head document"
    if secret is not None:
        mac = doc.pop("mac", None)
        if mac != head_mac(secret, doc):
            return f"{head_path.name} was not written with this key (or was edited)"
    anchored = doc["records"]
    if records < anchored:
        return (f"the log has {records} records but its head anchors {anchored}: records were deleted from the "
                "end")
    hashes = [h for h in (json_or_none(ln) or {} for ln in lines) if "hash" in h and "seq" in h]
    match = next((h for h in hashes if h.get("seq") == anchored), None)
    if anchored and (match is None or match.get("hash") != doc["last_hash"]):
        return f"record {anchored} does not carry the hash its head anchors: the log was rewritten"
    return None
