"""The audit trail's writer: :class:`AuditLog` and :class:`AuditBinding` (modes, durability and what each detects:
the package docstring, :mod:`medinfer.audit`).

Writers. :meth:`AuditLog.shared` gives ONE writer per file per process (``load(audit="audit.jsonl")`` uses it, so
two models share it); every append takes an exclusive ``flock`` on the file and continues the chain from where it
is, so two processes appending to one file keep one valid chain. Before it appends, the writer checks the file
against the state it left (:mod:`.tail`): lines it did not write are followed and checked, never trusted, and a
shorter or altered file stops it for good. A failed write raises :class:`~medinfer.errors.AuditError` and marks
the log unhealthy (``healthy`` is False) until a later write succeeds: a caller must not return a result it could
not audit. A record written whose answer is then withheld (its head, counter or fsync failed) is named by an
``answer_withheld`` record, so no ``ok`` record stands for an answer never delivered.

Cost (measured in ``python -m benchmarks safety``): the record is built and encoded directly as canonical bytes
(the verifier's ``json.dumps`` gives the same bytes: a tested property), the input is digested through the
buffer protocol (no copy), and per append the kernel sees one ``flock`` pair, one ``lseek`` (the tail check: the
size this writer left) and one ``write``.

Fork: see :mod:`.forks` (a child forked while another thread appends never deadlocks).
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, ClassVar

from ..errors import AuditError, UsageError
from ..timestamps import UtcClock
from .anchor import Counter, HeadFile, counter_path
from .binding import AuditBinding
from .commit import GroupCommit
from .forks import WRITERS, register
from .record import (
    GENESIS,
    KEYED,
    MAX_LINE,
    Chain,
    canonical,
    input_digest,
    read_key,
)
from .rotation import Rotation, check_retention
from .tail import FLOCK, LOCK_EX, LOCK_UN, TailCheck

_FLOCK, _LOCK_EX, _LOCK_UN = FLOCK, LOCK_EX, LOCK_UN

__all__ = ["AuditBinding", "AuditLog"]

_SEEK_END = os.SEEK_END
_NO_ROTATION = sys.maxsize
_RECORD_LIMIT = MAX_LINE - 80  # the body, before its hash is appended


def _close_at_exit(ref: Any) -> None:
    log = ref()
    if log is not None:
        log.close()


class AuditLog(GroupCommit, TailCheck, Rotation):
    """Thread- and process-safe appender of hash-chained records. Share one per file (:meth:`shared`).

    Args:
        path: the JSONL file (created when missing, in a folder that must exist: a typo in the path never
            creates folders).
        fsync: make records survive power loss (see the module docstring).
        key: a device key (bytes or a key file) for the keyed HMAC chain.
        head: anchored mode: also write ``<path>.head`` (record count, last hash, file size) after each append,
            and the monotonic counter after it.
        group_ms: with ``fsync=True``, commit in groups: fsync at the latest ``group_ms`` after the oldest
            unsynced record, and at the latest every ``group_records`` records. None: one fsync per record.
        group_records: the group's record bound (the most records a power failure can lose).
        counter: anchored mode: where the counter lives (default ``<path>.counter``; put it where an attacker
            cannot roll it back, see SECURITY.md).
        rotate_mb: rotate the active file before it grows past this many MiB (None: never by size).
        rotate_hours: rotate the active file when its first record is this old (None: never by time).
        retain_days: after each rotation, delete the rotated files whose last record is older than this (at
            least 183 days; None: keep every file).

    Raises:
        AuditError: the file cannot be opened, or its last records (or its head) do not verify.
        UsageError: group commit without fsync, a non-positive bound or rotation size, a retention period under
            183 days.
    """

    _SHARED: ClassVar[dict[str, AuditLog]] = {}
    _SHARED_LOCK: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str | Path, *, fsync: bool = False, key: str | Path | bytes | None = None,
                 head: bool = False, group_ms: float | None = None, group_records: int = 64,
                 counter: str | Path | None = None, rotate_mb: float | None = None,
                 rotate_hours: float | None = None, retain_days: float | None = None) -> None:
        self.path = Path(path)
        self._check_options(fsync, group_ms, group_records, rotate_mb, rotate_hours)
        self.fsync = fsync
        self.key = read_key(key) if key is not None else None
        self.head = head
        self.group_ms = group_ms
        self.group_records = group_records
        self.retain_days = check_retention(retain_days)
        self._rotate_at = int(rotate_mb * (1 << 20)) if rotate_mb is not None else _NO_ROTATION
        self._rotate_s = rotate_hours * 3600.0 if rotate_hours is not None else None
        self.options = {"fsync": fsync, "key": self.key, "head": head, "group_ms": group_ms,
                        "group_records": group_records, "counter": counter, "rotate_mb": rotate_mb,
                        "rotate_hours": rotate_hours, "retain_days": self.retain_days}
        self.failed: str | None = None
        self._stopped: str | None = None  # tampering found: the writer stays stopped
        self._withheld: tuple[int, int, str] | None = None  # records whose answers were withheld, not yet marked
        self._lock = threading.Lock()
        self._link = Chain(self.key).link
        self._chain = '{"chain":"' + KEYED + '",' if self.key is not None else "{"
        self._models: dict[tuple[str, str, str], AuditBinding] = {}
        self._clock = UtcClock()
        self._new_ids()
        self._prev, self._seq, self._end = GENESIS, 0, -1
        self._file_started = time.time()
        # group commit: records written / covered by a completed fsync, and when the oldest unsynced was written
        self._written = self._synced = 0
        self._oldest = 0.0
        self._undurable: str | None = None  # why the last group fsync failed (appends refused until it works)
        self._wake = threading.Condition(self._lock)
        self._flusher: threading.Thread | None = None
        self._fd, self._fd_active = -1, False
        self._counter = Counter(Path(counter) if counter else counter_path(self.path), self.key) if head else None
        self._head = HeadFile(self.path, self.key, counter=True) if head else None
        try:
            self._fd, self._fd_active = self._open_fd(), True
            with self._lock:
                self._slow(self._resume)
                if self._withheld is not None:
                    self._mark_withheld()
        except BaseException:
            self._release()
            raise
        finally:
            if self._fd >= 0 and _FLOCK is not None:
                _FLOCK(self._fd, _LOCK_UN)
        WRITERS.add(self)  # a forked child gets fresh locks and ids for every writer
        if group_ms is not None:
            atexit.register(_close_at_exit, weakref.ref(self))  # the last group is fsynced at a normal exit

    def _check_options(self, fsync: bool, group_ms: float | None, group_records: int, rotate_mb: float | None,
                       rotate_hours: float | None) -> None:
        if self.path.is_dir():
            raise AuditError(f"audit trail {self.path} is a folder; give a file path such as {self.path}/audit.jsonl")
        folder = self.path.parent
        if not folder.is_dir():
            raise AuditError(f"audit trail {self.path}: the folder {folder} "
                             f"{'is not a folder' if folder.exists() else 'does not exist'}; create it first "
                             "(audit trails are never written to folders made on the fly)")
        if group_ms is not None and (not fsync or not group_ms > 0 or group_records < 1):
            raise UsageError(f"group commit needs fsync=True, group_ms > 0 and group_records >= 1 (got "
                             f"fsync={fsync}, group_ms={group_ms}, group_records={group_records})")
        for name, value in (("rotate_mb", rotate_mb), ("rotate_hours", rotate_hours)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value < float("inf")):
                raise UsageError(f"audit {name} {value!r}: expected a number > 0")

    @classmethod
    def shared(cls, path: str | Path, **options: Any) -> AuditLog:
        """The process's one writer for ``path`` (created on first use with ``options``).

        Raises:
            UsageError: the writer exists with other options (e.g. keyed and plain for one file).
        """
        key = os.path.realpath(path)
        with cls._SHARED_LOCK:
            log = cls._SHARED.get(key)
            if log is None or log._fd < 0:
                log = cls(path, **options)
                cls._SHARED[key] = log
            elif options and _differs(log, options):
                raise UsageError(f"audit trail {path} is already open in this process with other options (one "
                                 "writer per file: keyed and plain records, or two rotation policies, never mix)")
            return log

    def _new_ids(self) -> None:
        """Request ids: 64 random bits of this writer (and process) + a counter, 32 hex digits like a UUID's."""
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count(1)

    @classmethod
    def hold_shared(cls) -> None:
        cls._SHARED_LOCK.acquire()

    @classmethod
    def release_shared(cls) -> None:
        cls._SHARED_LOCK.release()

    @classmethod
    def renew_shared(cls) -> None:
        cls._SHARED_LOCK = threading.Lock()

    def _stop(self, problem: str) -> AuditError:
        """Stop the writer for good (tampering found): the error to raise."""
        self._stopped = self.failed = problem
        return AuditError(f"audit trail {self.path}: {problem}. The writer stopped: no more records, and no "
                          "result that would need one, until the log is checked ('medinfer audit verify') and a new "
                          "log is started")

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
        except OSError as exc:
            self.failed = f"{type(exc).__name__}: {exc.strerror or exc}"
            raise AuditError(f"audit trail {self.path} cannot be written ({self.failed}); the result was not "
                             "returned because it could not be recorded") from None

    def _append(self, build: Any, prefix: bytes = b"") -> str:
        """Append the record ``build`` makes: a function ``(seq, prev) -> canonical bytes``, or the inference
        record's three canonical text parts around ``prev`` and ``seq`` (see :meth:`record`). Then its fsync,
        head and counter; if one of them fails, the record is marked withheld (its answer is not returned)."""
        prev = self._prev
        try:
            if type(build) is tuple:
                raw = f'{build[0]},"prev":"{prev}"{build[1]},"seq":{self._seq + 1}{build[2]}'.encode()
            else:
                raw = build(self._seq + 1, prev)
        except (UnicodeEncodeError, TypeError, ValueError, RecursionError) as exc:
            raise AuditError(f"an audit record cannot be encoded ({exc}); nothing was written") from None
        if len(raw) >= _RECORD_LIMIT:
            raise AuditError(f"an audit record of {len(raw)} bytes is longer than any record may be ({MAX_LINE}); "
                             "nothing was written")
        digest = self._link(prev, raw)
        # verification pops "hash" and re-canonicalises, so appending it after the body keeps one encoding
        data = raw[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
        if prefix:
            data = prefix + data
        self._write(data)
        self._prev, self._seq = digest, self._seq + 1
        self._end += len(data)  # under the flock, our O_APPEND write landed at the end that was checked
        if self.fsync or self.head:
            self._settle()
        self.failed = None
        return digest

    def _append_locked(self, build: Any) -> str:
        with self._lock:
            if self._fd < 0:
                raise AuditError(f"audit trail {self.path} is closed: nothing more can be recorded")
            if self._stopped is not None:
                raise AuditError(f"audit trail {self.path}: the writer stopped ({self._stopped}); check the log "
                                 "with 'medinfer audit verify' and start a new one")
            if self._undurable is not None:
                raise AuditError(f"audit trail {self.path}: the group commit's fsync failed ({self._undurable}); "
                                 "records are not durable, so no more are accepted until 'probe' succeeds")
            fd = self._fd
            if _FLOCK is not None:
                _FLOCK(fd, _LOCK_EX)
            try:
                if os.lseek(fd, 0, _SEEK_END) != self._end or self._withheld is not None:
                    self._slow(self._catch_up)
                if self._end >= self._rotate_at or (self._rotate_s is not None
                                                    and time.time() - self._file_started >= self._rotate_s):
                    self._slow(self._rotate, "size" if self._end >= self._rotate_at else "time")
                return self._append(build)
            finally:
                if _FLOCK is not None and self._fd >= 0:
                    _FLOCK(self._fd, _LOCK_UN)

    def _locked(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` holding the file's exclusive flock (the caller holds ``self._lock``)."""
        if _FLOCK is not None:
            _FLOCK(self._fd, _LOCK_EX)
        try:
            return fn(*args)
        finally:
            if _FLOCK is not None and self._fd >= 0:
                _FLOCK(self._fd, _LOCK_UN)

    def _catch_up(self) -> None:
        size = os.lseek(self._fd, 0, _SEEK_END)
        if size != self._end:
            self._advance(size)
        if self._withheld is not None:
            self._mark_withheld()

    def _slow(self, step: Any, *args: Any) -> None:
        """A step off the hot path (catching up with the file, rotating): whatever it meets becomes an
        AuditError, never another exception."""
        try:
            step(*args)
        except AuditError:
            raise
        except Exception as exc:  # noqa: BLE001 - an I/O error or a bug: the caller gets a typed refusal
            self.failed = f"{type(exc).__name__}: {exc}"
            raise AuditError(f"audit trail {self.path} cannot be continued ({self.failed})") from None

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
        """False after a write failed, until a later write succeeds (see :meth:`probe`); False for good once the
        writer stopped (a truncated or altered log)."""
        return self.failed is None and self._fd >= 0

    def probe(self) -> bool:
        """After a failure, try to record that the trail works again; returns :attr:`healthy`."""
        if self.failed is not None and self._fd >= 0 and self._stopped is None:
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
                self._release()
                self._wake.notify_all()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()





def _differs(log: AuditLog, options: dict[str, Any]) -> bool:
    """Whether ``options`` ask for another writer than ``log`` (a key compared as the key it reads to)."""
    wanted = dict(options)
    if wanted.get("key") is not None:
        wanted["key"] = read_key(wanted["key"])
    return any(log.options.get(name) != value for name, value in wanted.items())


register(AuditLog)
