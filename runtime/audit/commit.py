"""What follows a written record: its fsync (one per record, or group commit), its head and counter (anchored
mode), and when one of them fails, the ``answer_withheld`` record that says its answer was never returned.

Group commit: records are written at once but fsynced in groups, within two bounds.

At most ``group_records`` records of one writer are ever written but not yet fsynced (the append that would
reach the bound fsyncs itself), and none stays unsynced longer than ``group_ms`` plus one fsync: an append that
finds the oldest unsynced record older than the window fsyncs itself, and when no append comes a flusher thread
does (then add its scheduling delay). So a power failure loses at most the last ``group_records`` records, all
appended within that window before it. A failed fsync stops the trail (:class:`~medinfer.errors.AuditError`)
until :meth:`~medinfer.audit.AuditLog.probe` succeeds.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import AuditError
from .anchor import Counter, HeadFile
from .record import WITHHELD


class GroupCommit:
    """The commit half of :class:`~medinfer.audit.AuditLog` (its state lives on the log, under its lock)."""

    path: Any
    group_ms: float | None
    group_records: int
    failed: str | None
    _fd: int
    _lock: threading.Lock
    _wake: threading.Condition
    _written: int
    _synced: int
    _oldest: float
    _undurable: str | None
    _flusher: threading.Thread | None
    fsync: bool
    head: bool
    key: bytes | None
    _seq: int
    _prev: str
    _end: int
    _counter: Counter | None
    _head: HeadFile | None
    _withheld: tuple[int, int, str] | None
    _clock: Any
    _link: Any

    if TYPE_CHECKING:  # the writer's own steps (medinfer.audit.writer)
        def _generic(self, body: dict[str, Any]) -> Any: ...
        def _write(self, data: bytes) -> None: ...

    def _settle(self) -> None:
        """The record's fsync (one per record), head and counter, in that order; a failure withholds it."""
        step = "fsync"
        try:
            if self.fsync and self.group_ms is None:
                os.fsync(self._fd)
            if self.head:
                step = "head file"
                self._head.write(self._seq, self._prev, self._end)  # type: ignore[union-attr]
                if self._counter is not None:
                    step = "counter"
                    self._counter.write(self._seq, self._prev)
        except OSError as exc:
            self.failed = f"{step}: {exc.strerror or exc}"
            self._withhold(self._seq, self.failed)
            raise AuditError(f"audit trail {self.path}: the {step} cannot be written ({exc.strerror or exc}); the "
                             "record was marked withheld and its result is not returned") from None
        if self.group_ms is not None:
            self._group_settle()

    def _group_settle(self) -> None:
        try:
            self._group_commit()
        except AuditError:
            self._withhold(self._seq, self.failed or "fsync")
            raise

    def _withhold(self, seq: int, reason: str) -> None:
        """Mark record ``seq`` as written but not answered (now if the log takes it, else at the next append)."""
        first = self._withheld[0] if self._withheld is not None else seq
        self._withheld = (first, seq, reason)
        with contextlib.suppress(AuditError):  # else written before anything else once the trail works again
            self._mark_withheld()

    def _mark_withheld(self) -> None:
        """Write the pending ``answer_withheld`` record (no head or counter of its own: they may be what fails)."""
        first, last, reason = self._withheld  # type: ignore[misc]
        build = self._generic({"event": WITHHELD, "records": [first, last], "reason": reason,
                               "time": self._clock.now()})
        raw = build(self._seq + 1, self._prev)
        digest = self._link(self._prev, raw)
        data = raw[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
        self._write(data)
        self._prev, self._seq, self._end = digest, self._seq + 1, self._end + len(data)
        self._withheld = None


    def _group_commit(self) -> None:
        """After a write (under the lock): count it, fsync now if a bound is reached, else leave it to the flusher."""
        self._written += 1
        now = time.monotonic()
        if self._written - self._synced == 1:
            self._oldest = now
            self._wake.notify()
        if (self._written - self._synced >= self.group_records
                or now - self._oldest >= self.group_ms / 1e3):  # type: ignore[operator]
            self._fsync(self._written)
        elif self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name=f"audit-commit {self.path.name}",
                                             daemon=True)
            self._flusher.start()

    def _fsync(self, covered: int) -> None:
        """fsync the file, covering the first ``covered`` records (called under the lock)."""
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self.failed = self._undurable = f"fsync: {exc.strerror or exc}"
            raise AuditError(f"audit trail {self.path} cannot be made durable ({self.failed})") from None
        self._undurable = None
        self._synced = max(self._synced, covered)
        if self._written > self._synced:
            self._oldest = time.monotonic()

    def _flush_loop(self) -> None:
        window = (self.group_ms or 0.0) / 1e3
        with self._lock:
            while self._fd >= 0:
                if self._written == self._synced:
                    self._wake.wait()
                    continue
                due = self._oldest + window - time.monotonic()
                if due > 0:
                    self._wake.wait(due)
                    continue
                covered, fd = self._written, os.dup(self._fd)  # close() may close the writer's fd meanwhile
                self._lock.release()  # appends go on while the disk works
                error = None
                try:
                    os.fsync(fd)
                except OSError as exc:
                    error = f"fsync: {exc.strerror or exc}"
                finally:
                    os.close(fd)
                    self._lock.acquire()
                if error is not None:
                    self.failed = self._undurable = error
                    self._wake.wait(window or 0.01)
                    continue
                self._synced = max(self._synced, covered)
                if self._written > self._synced:
                    self._oldest = time.monotonic()

    @property
    def unsynced(self) -> int:
        """Records of this writer not yet covered by a completed fsync (group commit; else 0)."""
        return self._written - self._synced

