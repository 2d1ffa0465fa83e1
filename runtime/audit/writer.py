"""The audit trail's writer: :class:`AuditLog` and :class:`AuditBinding` (modes, durability and what each detects:
the package docstring, :mod:`medinfer.audit`).

Writers. :meth:`AuditLog.shared` gives ONE writer per file per process (``load(audit="audit.jsonl")`` uses it, so
two models share it); every append takes an exclusive ``flock`` on the file and continues the chain from the
file's real end, so two processes appending to one file keep one valid chain. A failed write raises
:class:`~medinfer.errors.AuditError` and marks the log unhealthy (``healthy`` is False) until a later write
succeeds: a caller must not return a result it could not audit.

Cost (measured in ``python -m benchmarks safety``): the record is built and encoded directly as canonical bytes
(the verifier's ``json.dumps`` gives the same bytes: a tested property), the input is digested through the
buffer protocol (no copy), and per append the kernel sees one ``flock`` pair, one ``lseek`` and one ``write``.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import threading
import weakref
from pathlib import Path
from typing import Any, ClassVar

from ..errors import AuditError
from ..timestamps import UtcClock
from .commit import GroupCommit
from .record import (
    GENESIS,
    HEAD_SUFFIX,
    KEYED,
    Chain,
    canonical,
    head_mac,
    input_digest,
    json_string,
    last_record,
    number_text,
    output_text,
    read_key,
    torn_digest,
)

try:  # POSIX advisory locks; elsewhere one writer per file per process is what is guaranteed
    import fcntl

    _FLOCK: Any = fcntl.flock
    _LOCK_EX, _LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_UN
except ImportError:  # pragma: no cover - Windows
    _FLOCK = None
    _LOCK_EX = _LOCK_UN = 0

__all__ = ["AuditBinding", "AuditLog"]

_SEEK_END = os.SEEK_END


_WRITERS: weakref.WeakSet[AuditLog] = weakref.WeakSet()


def _renew_ids_after_fork() -> None:
    for log in list(_WRITERS):
        log._new_ids()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_ids_after_fork)


def _close_at_exit(ref: Any) -> None:
    log = ref()
    if log is not None:
        log.close()


class AuditLog(GroupCommit):
    """Thread- and process-safe appender of hash-chained records. Share one per file (:meth:`shared`).

    Args:
        path: the JSONL file (created when missing, in a folder that must exist: a typo in the path never
            creates folders).
        fsync: make records survive power loss (see the module docstring).
        key: a device key (bytes or a key file) for the keyed HMAC chain.
        head: also write ``<path>.head`` (record count and last hash) after each append.
        group_ms: with ``fsync=True``, commit in groups: fsync at the latest ``group_ms`` after the oldest
            unsynced record, and at the latest every ``group_records`` records. None: one fsync per record.
        group_records: the group's record bound (the most records a power failure can lose).

    Raises:
        AuditError: the file cannot be opened or its last record is not valid.
        ValueError: group commit without fsync, or a non-positive bound.
    """

    _SHARED: ClassVar[dict[str, AuditLog]] = {}
    _SHARED_LOCK: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str | Path, *, fsync: bool = False, key: str | Path | bytes | None = None,
                 head: bool = False, group_ms: float | None = None, group_records: int = 64) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise AuditError(f"audit trail {self.path} is a folder; give a file path such as {self.path}/audit.jsonl")
        folder = self.path.parent
        if not folder.is_dir():
            raise AuditError(f"audit trail {self.path}: the folder {folder} "
                             f"{'is not a folder' if folder.exists() else 'does not exist'}; create it first "
                             "(audit trails are never written to folders made on the fly)")
        if group_ms is not None and (not fsync or not group_ms > 0 or group_records < 1):
            raise ValueError(f"group commit needs fsync=True, group_ms > 0 and group_records >= 1 (got fsync={fsync}, "
                             f"group_ms={group_ms}, group_records={group_records})")
        self.fsync = fsync
        self.key = read_key(key) if key is not None else None
        self.head = head
        self.group_ms = group_ms
        self.group_records = group_records
        self.failed: str | None = None
        self._lock = threading.Lock()
        self._link = Chain(self.key).link
        self._chain = '{"chain":"' + KEYED + '",' if self.key is not None else "{"
        self._models: dict[tuple[str, str, str], AuditBinding] = {}
        self._clock = UtcClock()
        self._new_ids()
        _WRITERS.add(self)  # a forked child renews the ids of every writer (never repeats its parent's)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise AuditError(f"audit trail {self.path} cannot be opened for appending ({exc.strerror or exc})") \
                from None
        self._prev, self._seq, self._end = GENESIS, 0, -1
        # group commit: records written / covered by a completed fsync, and when the oldest unsynced was written
        self._written = self._synced = 0
        self._oldest = 0.0
        self._undurable: str | None = None  # why the last group fsync failed (appends refused until it works)
        self._wake = threading.Condition(self._lock)
        self._flusher: threading.Thread | None = None
        with self._lock:
            self._locked(self._sync)
        if group_ms is not None:
            atexit.register(_close_at_exit, weakref.ref(self))  # the last group is fsynced at a normal exit

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

    def _new_ids(self) -> None:
        """Request ids: 64 random bits of this writer (and process) + a counter, 32 hex digits like a UUID's."""
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count(1)

    # -- the chain's position ------------------------------------------------------------------------------
    def _locked(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` holding the file's exclusive flock (the caller holds ``self._lock``)."""
        fd = self._fd
        if _FLOCK is None or fd < 0:
            return fn(*args)
        _FLOCK(fd, _LOCK_EX)
        try:
            return fn(*args)
        finally:
            _FLOCK(fd, _LOCK_UN)

    def _sync(self) -> None:
        """Continue from the file's real end (another writer may have appended); complete or seal a last line
        without its newline. Called under both locks."""
        size = os.lseek(self._fd, 0, _SEEK_END)
        if size == self._end:
            return
        if size == 0:
            self._prev, self._seq, self._end = GENESIS, 0, 0
            return
        with open(self.path, "rb") as fh:
            fh.seek(max(0, size - (1 << 20)))
            tail = fh.read(size)
        record, torn = last_record(tail)
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
                self._end = os.lseek(self._fd, 0, _SEEK_END)
                self._append(self._generic({"event": "recovered_torn_tail", "torn_bytes": len(torn),
                                            "torn_sha256": torn_digest(torn)}))
                return
        else:
            self._prev, self._seq = prev, seq
        self._end = os.lseek(self._fd, 0, _SEEK_END)

    def _complete_record(self, raw: bytes, prev: str, seq: int) -> tuple[str, int] | None:
        try:
            rec = json.loads(raw)
            claimed = rec.pop("hash")
        except (ValueError, KeyError, AttributeError, TypeError):
            return None
        if rec.get("prev") == prev and rec.get("seq") == seq + 1 and self._link(prev, canonical(rec)) == claimed:
            return claimed, seq + 1
        return None

    # -- encoding ----------------------------------------------------------------------------------------------
    def _generic(self, body: dict[str, Any]) -> Any:
        """A builder ``(seq, prev) -> canonical bytes`` for any record body."""
        def build(seq: int, prev: str) -> bytes:
            full = {"seq": seq, "prev": prev, **body}
            if self.key is not None:
                full["chain"] = KEYED
            return canonical(full)
        return build

    def _now(self) -> str:
        return self._clock.now()

    # -- writing ---------------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._fd < 0:
            raise AuditError(f"audit trail {self.path} is closed: nothing more can be recorded")
        try:
            written = os.write(self._fd, data)  # one write on O_APPEND: whole, or (at a crash) a torn last line
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes (disk full?)")
            if self.fsync and self.group_ms is None:
                os.fsync(self._fd)
        except OSError as exc:
            self.failed = f"{type(exc).__name__}: {exc.strerror or exc}"
            raise AuditError(f"audit trail {self.path} cannot be written ({self.failed}); the result was not "
                             "returned because it could not be recorded") from None

    def _append(self, build: Any) -> str:
        """Append the record ``build`` makes: a function ``(seq, prev) -> canonical bytes``, or the inference
        record's three canonical text parts around ``prev`` and ``seq`` (see :meth:`record`)."""
        prev = self._prev
        try:
            if type(build) is tuple:
                raw = f'{build[0]},"prev":"{prev}"{build[1]},"seq":{self._seq + 1}{build[2]}'.encode()
            else:
                raw = build(self._seq + 1, prev)
        except (UnicodeEncodeError, TypeError, ValueError, RecursionError) as exc:
            raise AuditError(f"an audit record cannot be encoded ({exc}); nothing was written") from None
        digest = self._link(prev, raw)
        # verification pops "hash" and re-canonicalises, so appending it after the body keeps one encoding
        data = raw[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
        self._write(data)
        self._prev, self._seq = digest, self._seq + 1
        self._end += len(data)  # under the flock, our O_APPEND write landed at the end that _sync saw
        if self.head:
            self._write_head()
        if self.group_ms is not None:
            self._group_commit()
        self.failed = None
        return digest

    def _write_head(self) -> None:
        doc: dict[str, Any] = {"records": self._seq, "last_hash": self._prev, "bytes": self._end}
        if self.key is not None:
            doc["mac"] = head_mac(self.key, doc)
        head = Path(str(self.path) + HEAD_SUFFIX)
        tmp = head.with_name(f".{head.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(canonical(doc) + b"\n")
            os.replace(tmp, head)
        except OSError as exc:
            self.failed = f"head file: {exc.strerror or exc}"
            raise AuditError(f"audit head {head} cannot be written ({exc.strerror or exc})") from None

    def _append_locked(self, build: Any) -> str:
        with self._lock:
            if self._fd < 0:
                raise AuditError(f"audit trail {self.path} is closed: nothing more can be recorded")
            if self._undurable is not None:
                raise AuditError(f"audit trail {self.path}: the group commit's fsync failed ({self._undurable}); "
                                 "records are not durable, so no more are accepted until 'probe' succeeds")
            fd = self._fd
            if _FLOCK is not None:
                _FLOCK(fd, _LOCK_EX)
            try:
                if os.lseek(fd, 0, _SEEK_END) != self._end:
                    self._sync()
                return self._append(build)
            finally:
                if _FLOCK is not None:
                    _FLOCK(fd, _LOCK_UN)

    def record(self, *, model: str, version: str, model_sha256: str, feeds: dict[str, Any] | None,
               status: str, latency_us: float, output: dict[str, Any] | None = None,
               request_id: str | None = None, reason: str | None = None, **extra: Any) -> str:
        """Append one inference record; returns its request id.

        Raises:
            AuditError: the record could not be written (the caller must not return the result).
        """
        if extra or feeds is None:  # anything beyond the inference record's own fields: the generic encoder
            rid = request_id or f"{self._id_prefix}{next(self._ids):016x}"
            body: dict[str, Any] = {"time": self._now(), "request_id": rid, "model": model, "version": version,
                                    "model_sha256": model_sha256, "status": status,
                                    "input_sha256": input_digest(feeds) if feeds is not None else None,
                                    "latency_us": round(latency_us, 1), **extra}
            if output is not None:
                body["output"] = output
            if reason is not None:
                body["reason"] = reason
            self._append_locked(self._generic(body))
            return rid
        return self.bind(model, version, model_sha256).record(feeds, status, latency_us, output, request_id, reason)

    def bind(self, model: str, version: str, model_sha256: str) -> AuditBinding:
        """This writer bound to one model: :meth:`AuditBinding.record` writes the same records as :meth:`record`
        without looking the model up per call (what :class:`~medinfer.Model` uses)."""
        key = (model, version, model_sha256)
        bound = self._models.get(key)
        if bound is None:
            bound = self._models[key] = AuditBinding(self, model, version, model_sha256)
        return bound

    def event(self, name: str, **fields: Any) -> str:
        """Append a non-inference record (server start, recovery after a failed write, ...)."""
        return self._append_locked(self._generic({"event": name, "time": self._clock.now(), **fields}))

    # -- health ------------------------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        """False after a write failed, until a later write succeeds (see :meth:`probe`)."""
        return self.failed is None and self._fd >= 0

    def probe(self) -> bool:
        """After a failure, try to record that the trail works again; returns :attr:`healthy`."""
        if self.failed is not None and self._fd >= 0:
            failure = self.failed
            try:
                if self._undurable is not None:
                    with self._lock:
                        self._fsync(self._written)
                self.event("audit_recovered", after=failure)
            except AuditError:
                return False
        return self.healthy

    def close(self) -> None:
        """Stop the group-commit flusher (after a last fsync of what it had not synced) and close the file."""
        with self._lock:
            if self._fd >= 0:
                if self._written > self._synced:
                    try:
                        os.fsync(self._fd)
                        self._synced = self._written
                    except OSError as exc:
                        self.failed = f"fsync: {exc.strerror or exc}"
                os.close(self._fd)
                self._fd = -1
                self._wake.notify_all()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()



class AuditBinding:
    """An :class:`AuditLog` bound to one model (from :meth:`AuditLog.bind`): the model's JSON is encoded once."""

    __slots__ = ("log", "model", "version", "model_sha256", "_middle", "_end")

    def __init__(self, log: AuditLog, model: str, version: str, model_sha256: str) -> None:
        self.log, self.model, self.version, self.model_sha256 = log, model, version, model_sha256
        self._middle = f',"model":{json_string(model)},"model_sha256":{json_string(model_sha256)}'
        self._end = f',"version":{json_string(version)}}}'

    def record(self, feeds: dict[str, Any] | None, status: str, latency_us: float,
               output: dict[str, Any] | None = None, request_id: str | None = None, reason: str | None = None) -> str:
        """Append one inference record of the bound model; returns its request id (see :meth:`AuditLog.record`).

        Raises:
            AuditError: the record could not be written (the caller must not return the result).
        """
        log = self.log
        if feeds is None:
            return log.record(model=self.model, version=self.version, model_sha256=self.model_sha256, feeds=None,
                              status=status, latency_us=latency_us, output=output, request_id=request_id,
                              reason=reason)
        rid = request_id or f"{log._id_prefix}{next(log._ids):016x}"
        latency = round(latency_us, 1)
        # The canonical text in sorted key order, in three parts: "prev" and "seq" are filled in under the lock.
        log._append_locked((
            f'{log._chain}"input_sha256":"{input_digest(feeds)}","latency_us":{number_text(latency)}{self._middle}'
            + ("" if output is None else ',"output":' + output_text(output)),
            ("" if reason is None else ',"reason":' + json_string(reason)) + f',"request_id":{json_string(rid)}',
            f',"status":{json_string(status)},"time":"{log._now()}"{self._end}'))
        return rid
