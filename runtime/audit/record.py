"""The audit trail's chain format, shared by the writer (:mod:`medinfer.audit`) and the verifier.

A record is one line of canonical JSON (sorted keys, no spaces, UTF-8) of its body, with ``"hash"`` appended last:
``hash = sha256(prev + canonical body)`` — or HMAC-SHA256 under a device key in keyed mode (the body then carries
``"chain": "hmac-sha256"``). :func:`verify_log` re-derives the chain and names the first broken line.

The writer encodes its records without ``json.dumps`` per call (a reused C encoder; the one-sample output summary
written directly): ``tests/runtime/test_audit_commit.py`` proves the bytes are those ``_canonical`` gives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from json import encoder as _json_encoder
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AuditError

GENESIS = "0" * 64
KEYED = "hmac-sha256"
HEAD_SUFFIX = ".head"


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _digest(key: bytes | None, prev: str, raw: bytes) -> str:
    if key is None:
        return hashlib.sha256(prev.encode() + raw).hexdigest()
    return hmac.new(key, prev.encode() + raw, hashlib.sha256).hexdigest()


def _chain_hash(prev: str, body: dict[str, Any], key: bytes | None = None) -> str:
    return _digest(key, prev, _canonical(body))


def read_key(source: str | Path | bytes) -> bytes:
    """A device key for the keyed chain: bytes, or a file holding at least 16 bytes (e.g. ``head -c 32
    /dev/urandom > audit.key``).

    Raises:
        AuditError: the file cannot be read or holds fewer than 16 bytes.
    """
    if isinstance(source, bytes):
        key = source
    else:
        try:
            key = Path(source).read_bytes().strip()
        except OSError as exc:
            raise AuditError(f"audit key {source} cannot be read ({exc.strerror or exc})") from None
    if len(key) < 16:
        raise AuditError("an audit key needs at least 16 bytes (e.g. head -c 32 /dev/urandom > audit.key)")
    return key


_SHA256 = hashlib.sha256
_STR = _json_encoder.encode_basestring  # JSON string of a str, exactly as json.dumps(ensure_ascii=False) writes it
_FLOAT_REPR = float.__repr__
_INF = float("inf")


def _make_canonical_text() -> Any:
    """``obj -> canonical JSON text`` (the same text as :func:`medinfer.audit_chain._canonical`, without building a
    JSONEncoder per call)."""
    make = getattr(_json_encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the C accelerator
        return json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    plain = json.JSONEncoder()
    encode = make(None, plain.default, _STR, None, ":", ",", True, False, True)
    return lambda obj: "".join(encode(obj, 0))


_TEXT = _make_canonical_text()


def _number(value: Any) -> str:
    """A number as canonical JSON (floats as ``float.__repr__``, like json)."""
    if type(value) is float and value == value and value != _INF and value != -_INF:
        return _FLOAT_REPR(value)
    if type(value) is int:
        return str(value)
    return _TEXT(value)  # type: ignore[no-any-return]  # NaN, bool, numpy scalars: whatever json writes


def _output_text(output: dict[str, Any]) -> str:
    """Canonical JSON of an output summary; the one-sample summary ``{n, labels: [str], scores: [float]}`` is
    written directly (the same text as the generic encoder: a tested property)."""
    if len(output) == 3:
        labels, scores = output.get("labels"), output.get("scores")
        if (type(labels) is list and type(scores) is list and len(labels) == 1 == len(scores)
                and output.get("n") == 1 and type(output["n"]) is int and type(labels[0]) is str
                and type(scores[0]) is float and -_INF < scores[0] < _INF):
            return f'{{"labels":[{_STR(labels[0])}],"n":1,"scores":[{_FLOAT_REPR(scores[0])}]}}'
    return _TEXT(output)  # type: ignore[no-any-return]


def input_digest(feeds: dict[str, Any]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the inputs: identifies the input, reveals nothing."""
    h = _SHA256()
    for name in sorted(feeds) if len(feeds) > 1 else feeds:
        arr = feeds[name]
        if type(arr) is not np.ndarray:
            arr = np.asarray(arr)
        key = (name, arr.dtype, arr.shape)
        header = _HEADERS.get(key)
        if header is None:
            if len(_HEADERS) > 512:  # shapes vary with the batch: a bounded cache
                _HEADERS.clear()
            header = _HEADERS[key] = f"{name}|{arr.dtype.str}|{arr.shape}|".encode()
        h.update(header)
        if arr.dtype.kind in "OU":
            for item in arr.reshape(-1).tolist():
                h.update(str(item).encode("utf-8", "surrogatepass") + b"\x00")
        elif arr.flags.c_contiguous:
            h.update(arr)  # the buffer itself: no copy
        else:
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


_HEADERS: dict[tuple[str, Any, tuple[int, ...]], bytes] = {}


def _last_record(tail: bytes) -> tuple[dict[str, Any] | None, bytes]:
    """The last complete record in ``tail`` (the end of a log) and the bytes after the last newline."""
    lines = tail.split(b"\n")
    torn = lines[-1]
    last = next((ln for ln in reversed(lines[:-1]) if ln.strip()), None)
    record = None
    if last is not None:
        try:
            record = json.loads(last)
        except ValueError:
            record = None
    return record, torn


@dataclass(frozen=True)
class AuditReport:
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
            nxt = _json_or_none(complete[i]) if i < len(complete) else None
            if (nxt is not None and nxt.get("event") == "recovered_torn_tail" and nxt.get("torn_bytes") == len(raw)
                    and nxt.get("torn_sha256") == hashlib.sha256(raw).hexdigest()):
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
        if _chain_hash(prev, rec, secret if keyed else None) != claimed:
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
    doc = _json_or_none(head_path.read_bytes())
    if doc is None or not isinstance(doc.get("records"), int) or not isinstance(doc.get("last_hash"), str):
        return f"{head_path.name} is not a head document"
    if secret is not None:
        mac = doc.pop("mac", None)
        if mac != hmac.new(secret, _canonical(doc), hashlib.sha256).hexdigest():
            return f"{head_path.name} was not written with this key (or was edited)"
    anchored = doc["records"]
    if records < anchored:
        return (f"the log has {records} records but its head anchors {anchored}: records were deleted from the "
                "end")
    hashes = [h for h in (_json_or_none(ln) or {} for ln in lines) if "hash" in h and "seq" in h]
    match = next((h for h in hashes if h.get("seq") == anchored), None)
    if anchored and (match is None or match.get("hash") != doc["last_hash"]):
        return f"record {anchored} does not carry the hash its head anchors: the log was rewritten"
    return None


def _json_or_none(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
