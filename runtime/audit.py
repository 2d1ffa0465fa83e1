"""An append-only, hash-chained JSONL audit trail: one record per inference (EU AI Act Art. 12 style).

Each record holds UTC time, sequence number, request id, model name/version/sha256, a digest of the input (never
the input itself), an output summary, status and latency, plus ``prev`` (the previous record's hash) and
``hash`` = sha256(prev + canonical JSON of the record without ``hash``). Editing, deleting or reordering any
line breaks the chain, and ``verify_log`` names the first broken line.

Durability: each record is written with ONE ``os.write`` on an ``O_APPEND`` descriptor, so a process killed
(even with SIGKILL) leaves only complete records, or at worst a partial last line that ``verify_log`` reports
as a torn tail and that the next writer seals (its digest goes into a recovery record). ``fsync=True`` also
makes each record survive power loss, at the cost of one fsync per inference.
Truncating the END of a log cannot be detected from the log alone: anchor ``verify_log(...).last_hash``
somewhere else (a ticket, a signed report) when that matters.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GENESIS = "0" * 64


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _chain_hash(prev: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(prev.encode() + _canonical(body)).hexdigest()


def input_digest(feeds: dict[str, Any]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the inputs: identifies the input, reveals nothing."""
    h = hashlib.sha256()
    for name in sorted(feeds):
        arr = np.asarray(feeds[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        if arr.dtype.kind in "OU":
            for item in arr.reshape(-1).tolist():
                h.update(str(item).encode("utf-8", "surrogatepass") + b"\x00")
        else:
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


class AuditLog:
    """Thread-safe appender of hash-chained records. Open once, share between models and threads."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._prev, self._seq = self._resume()

    def _resume(self) -> tuple[str, int]:
        """Continue the chain of an existing log; seal a torn tail left by a crash."""
        size = self.path.stat().st_size
        if size == 0:
            return GENESIS, 0
        with open(self.path, "rb") as fh:
            fh.seek(max(0, size - (1 << 20)))
            tail = fh.read()
        lines = tail.split(b"\n")
        torn = lines[-1]  # bytes after the last newline: b"" when the log ends cleanly
        last = next((ln for ln in reversed(lines[:-1]) if ln.strip()), None)
        prev, seq = GENESIS, 0
        if last is not None:
            try:
                rec = json.loads(last)
                prev, seq = rec["hash"], int(rec["seq"])
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{self.path}: the last complete record is not valid ({exc}); run "
                                 "'medinfer audit verify' and start a new log") from None
        if torn:
            os.write(self._fd, b"\n")  # end the torn line so the next record starts clean
            self._prev, self._seq = prev, seq
            self._append({"event": "recovered_torn_tail", "torn_bytes": len(torn),
                          "torn_sha256": hashlib.sha256(torn).hexdigest()})
            return self._prev, self._seq
        return prev, seq

    def _append(self, body: dict[str, Any]) -> str:
        body = {"seq": self._seq + 1, "prev": self._prev, **body}
        raw = _canonical(body)
        digest = hashlib.sha256(self._prev.encode() + raw).hexdigest()
        # verification pops "hash" and re-canonicalises, so appending it after the body keeps one dumps()
        line = raw[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
        os.write(self._fd, line)  # one write on O_APPEND: a record is whole or (at a crash) a torn last line
        if self.fsync:
            os.fsync(self._fd)
        self._prev, self._seq = digest, self._seq + 1
        return digest

    def record(self, *, model: str, version: str, model_sha256: str, feeds: dict[str, Any] | None,
               status: str, latency_us: float, output: dict[str, Any] | None = None,
               request_id: str | None = None, reason: str | None = None) -> str:
        """Append one inference record; returns its request id."""
        rid = request_id or uuid.uuid4().hex
        now = time.time()
        body: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z",
            "request_id": rid,
            "model": model,
            "version": version,
            "model_sha256": model_sha256,
            "input_sha256": input_digest(feeds) if feeds is not None else None,
            "status": status,
            "latency_us": round(latency_us, 1),
        }
        if output is not None:
            body["output"] = output
        if reason is not None:
            body["reason"] = reason
        with self._lock:
            self._append(body)
        return rid

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    records: int
    last_hash: str
    problem: str | None = None
    line: int | None = None
    torn_tail: bool = False


def verify_log(path: str | Path) -> AuditReport:
    """Re-derive the hash chain; report the first edited, deleted, inserted or reordered line.

    A torn last line (a crash mid-write) is reported (``torn_tail``) but does not fail verification of the
    complete records before it; a torn line that a later writer sealed must be followed by the recovery record
    that carries its exact length and sha256.
    """
    lines = Path(path).read_bytes().split(b"\n")
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
        except (ValueError, KeyError, AttributeError, TypeError):
            nxt = _json_or_none(complete[i]) if i < len(complete) else None
            if (nxt is not None and nxt.get("event") == "recovered_torn_tail" and nxt.get("torn_bytes") == len(raw)
                    and nxt.get("torn_sha256") == hashlib.sha256(raw).hexdigest()):
                continue  # a sealed torn line: its digest is chained by the recovery record that follows
            return AuditReport(False, seq, prev, f"line {n} is not a JSON audit record", n, torn)
        if rec.get("prev") != prev:
            return AuditReport(False, seq, prev, f"line {n} does not follow the record before it: a record was "
                               "deleted, inserted or reordered", n, torn)
        if rec.get("seq") != seq + 1:
            return AuditReport(False, seq, prev, f"line {n} has seq {rec.get('seq')}, expected {seq + 1}", n, torn)
        if _chain_hash(prev, rec) != claimed:
            return AuditReport(False, seq, prev, f"line {n} was edited: its content does not match its hash", n, torn)
        prev, seq = claimed, seq + 1
    return AuditReport(True, seq, prev, None, None, torn)


def _json_or_none(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
