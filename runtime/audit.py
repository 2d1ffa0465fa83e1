"""An append-only, hash-chained JSONL audit trail: one record per inference (EU AI Act Art. 12 style).

Each record holds UTC time, sequence number, request id, model name/version/sha256, a digest of the input (never
the input itself), an output summary, status and latency, plus ``prev`` (the previous record's hash) and
``hash`` = sha256(prev + canonical JSON of the record without ``hash``). Editing, deleting or reordering any
line breaks the chain, and :func:`verify_log` names the first broken line.

Writers. :meth:`AuditLog.shared` gives ONE writer per file per process (``load(audit="audit.jsonl")`` uses it, so
two models share it); every append takes an exclusive ``flock`` on the file and continues the chain from the
file's real last record, so two processes appending to one file keep one valid chain.

Durability: each record is written with ONE ``os.write`` on an ``O_APPEND`` descriptor, so a process killed (even
with SIGKILL) leaves only complete records, or at worst a partial last line that ``verify_log`` reports as a torn
tail and that the next writer seals (its digest goes into a recovery record). A complete last record that only
lacks its newline is completed, not sealed. ``fsync=True`` also makes each record survive power loss.

Modes and what they detect (SECURITY.md has the table):
- plain (default): any edit, deletion, insertion or reordering of records — except by someone who recomputes
  every later hash, and except truncation of the END of the log;
- keyed (``key=``): ``hash`` is HMAC-SHA256 with a device key, so recomputing the chain needs the key;
- anchored (``head=True``): ``<log>.head`` holds the record count and last hash after each append (HMAC'd when
  keyed); ``verify_log(..., head=True)`` then also detects records deleted from the end.

A failed write raises :class:`~medinfer.errors.AuditError` and marks the log unhealthy (``healthy`` is False)
until a later write succeeds: a caller must not return a result it could not audit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .errors import AuditError

try:  # POSIX advisory locks; elsewhere one writer per file per process is what is guaranteed
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

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


class _Flock:
    """The exclusive flock on the log's descriptor, as a context manager (one class, not one per append)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        if fcntl is not None and self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: Any) -> None:
        if fcntl is not None and self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


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


class AuditLog:
    """Thread- and process-safe appender of hash-chained records. Share one per file (:meth:`shared`)."""

    _SHARED: ClassVar[dict[str, AuditLog]] = {}
    _SHARED_LOCK: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str | Path, *, fsync: bool = False, key: str | Path | bytes | None = None,
                 head: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise AuditError(f"audit trail {self.path} is a folder; give a file path such as {self.path}/audit.jsonl")
        self.fsync = fsync
        self.key = read_key(key) if key is not None else None
        self.head = head
        self.failed: str | None = None
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise AuditError(f"audit trail {self.path} cannot be opened for appending ({exc.strerror or exc})") \
                from None
        self._prev, self._seq, self._end = GENESIS, 0, -1
        with self._lock, self._locked():
            self._sync()

    @classmethod
    def shared(cls, path: str | Path, **options: Any) -> AuditLog:
        """The process's one writer for ``path`` (created on first use with ``options``)."""
        key = os.path.realpath(path)
        with cls._SHARED_LOCK:
            log = cls._SHARED.get(key)
            if log is None or log._fd < 0:
                log = cls(path, **options)
                cls._SHARED[key] = log
            return log

    # -- the chain's position ------------------------------------------------------------------------------
    def _locked(self) -> _Flock:
        return _Flock(self._fd)

    def _sync(self) -> None:
        """Continue from the file's real end (another writer may have appended); complete or seal a last line
        without its newline. Called under both locks."""
        size = os.fstat(self._fd).st_size
        if size == self._end:
            return
        if size == 0:
            self._prev, self._seq, self._end = GENESIS, 0, 0
            return
        with open(self.path, "rb") as fh:
            fh.seek(max(0, size - (1 << 20)))
            tail = fh.read(size)
        record, torn = _last_record(tail)
        prev, seq = GENESIS, 0
        if record is not None:
            try:
                prev, seq = record["hash"], int(record["seq"])
            except (KeyError, TypeError, ValueError) as exc:
                raise AuditError(f"{self.path}: the last complete record is not valid ({exc}); run 'medinfer audit "
                                 "verify' and start a new log") from None
        if torn:
            complete = self._complete_record(torn, prev, seq)
            self._write(b"\n")
            if complete is not None:  # a whole record that only lacked its newline: it continues the chain
                self._prev, self._seq = complete
            else:
                self._prev, self._seq = prev, seq
                self._end = os.fstat(self._fd).st_size
                self._append({"event": "recovered_torn_tail", "torn_bytes": len(torn),
                              "torn_sha256": hashlib.sha256(torn).hexdigest()})
                return
        else:
            self._prev, self._seq = prev, seq
        self._end = os.fstat(self._fd).st_size

    def _complete_record(self, raw: bytes, prev: str, seq: int) -> tuple[str, int] | None:
        try:
            rec = json.loads(raw)
            claimed = rec.pop("hash")
        except (ValueError, KeyError, AttributeError, TypeError):
            return None
        if rec.get("prev") == prev and rec.get("seq") == seq + 1 and _chain_hash(prev, rec, self.key) == claimed:
            return claimed, seq + 1
        return None

    # -- writing ---------------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._fd < 0:
            raise AuditError(f"audit trail {self.path} is closed: nothing more can be recorded")
        try:
            written = os.write(self._fd, data)  # one write on O_APPEND: whole, or (at a crash) a torn last line
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes (disk full?)")
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            self.failed = f"{type(exc).__name__}: {exc.strerror or exc}"
            raise AuditError(f"audit trail {self.path} cannot be written ({self.failed}); the result was not "
                             "returned because it could not be recorded") from None

    def _append(self, body: dict[str, Any]) -> str:
        body = {"seq": self._seq + 1, "prev": self._prev, **body}
        if self.key is not None:
            body["chain"] = KEYED
        try:
            raw = _canonical(body)
        except (UnicodeEncodeError, TypeError, ValueError) as exc:
            raise AuditError(f"an audit record cannot be encoded ({exc}); nothing was written") from None
        digest = _digest(self.key, self._prev, raw)
        # verification pops "hash" and re-canonicalises, so appending it after the body keeps one dumps()
        line = raw[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
        self._write(line)
        self._prev, self._seq = digest, self._seq + 1
        # Under the flock, after _sync: the file ended at _end and one O_APPEND write added exactly this line.
        self._end += len(line)
        if self.head:
            self._write_head()
        self.failed = None
        return digest

    def _write_head(self) -> None:
        doc: dict[str, Any] = {"records": self._seq, "last_hash": self._prev, "bytes": self._end}
        if self.key is not None:
            doc["mac"] = hmac.new(self.key, _canonical(doc), hashlib.sha256).hexdigest()
        head = Path(str(self.path) + HEAD_SUFFIX)
        tmp = head.with_name(f".{head.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(_canonical(doc) + b"\n")
            os.replace(tmp, head)
        except OSError as exc:
            self.failed = f"head file: {exc.strerror or exc}"
            raise AuditError(f"audit head {head} cannot be written ({exc.strerror or exc})") from None

    def _append_locked(self, body: dict[str, Any]) -> str:
        with self._lock:
            if self._fd < 0:
                raise AuditError(f"audit trail {self.path} is closed: nothing more can be recorded")
            with self._locked():
                self._sync()
                return self._append(body)

    def record(self, *, model: str, version: str, model_sha256: str, feeds: dict[str, Any] | None,
               status: str, latency_us: float, output: dict[str, Any] | None = None,
               request_id: str | None = None, reason: str | None = None, **extra: Any) -> str:
        """Append one inference record; returns its request id.

        Raises:
            AuditError: the record could not be written (the caller must not return the result).
        """
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
            **extra,
        }
        if output is not None:
            body["output"] = output
        if reason is not None:
            body["reason"] = reason
        self._append_locked(body)
        return rid

    def event(self, name: str, **fields: Any) -> str:
        """Append a non-inference record (server start, recovery after a failed write, ...)."""
        now = time.time()
        return self._append_locked({"event": name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                                    **fields})

    @property
    def healthy(self) -> bool:
        """False after a write failed, until a later write succeeds (see :meth:`probe`)."""
        return self.failed is None and self._fd >= 0

    def probe(self) -> bool:
        """After a failure, try to record that the trail works again; returns :attr:`healthy`."""
        if self.failed is not None and self._fd >= 0:
            failure = self.failed
            try:
                self.event("audit_recovered", after=failure)
            except AuditError:
                return False
        return self.healthy

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
