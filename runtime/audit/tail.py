"""The writer's check of its file before it appends: it never continues a chain it has not checked.

At open, the writer resumes from the head (anchored mode: the record the head names must be where the head says,
and the head must not be behind its counter) or from the file's last records (each a record of the writer's mode
whose hash is the link of its content, the last following the one before it). Every line after that point is
followed with :class:`~medinfer.audit.chain.Cursor`. On each append the writer compares the file's size with the
size it left (one ``lseek`` under the flock); only when they differ does it read the new lines (another process
appended, or crashed mid-write) and follow them. A file shorter than the writer left it, or a line that does not
follow, stops the writer for good (:class:`~medinfer.errors.AuditError`, ``healthy`` False): a truncated or
altered log is never laundered by the next ordinary append.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AuditError
from .anchor import Anchor, Counter, HeadFile, head_path, read_head
from .chain import ChainBreak, Cursor, resume
from .record import CLOSED, GENESIS, MAX_LINE, OPENED, RECOVERED, fd_digest, parse_record, read_at, torn_digest
from .rotation import at_path, check_closed, line_ending_at, rotated_files, started_at

try:  # POSIX advisory locks; elsewhere one writer per file per process is what is guaranteed
    import fcntl

    FLOCK: Any = fcntl.flock
    LOCK_EX, LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_UN
except ImportError:  # pragma: no cover - Windows
    FLOCK = None
    LOCK_EX = LOCK_UN = 0


class TailCheck:
    """The tail-checking half of :class:`~medinfer.audit.AuditLog` (its state lives on the log, under its locks)."""

    path: Path
    key: bytes | None
    head: bool
    _fd: int
    _fd_active: bool
    _prev: str
    _seq: int
    _end: int
    _file_started: float
    _counter: Counter | None
    _head: HeadFile | None
    _withheld: tuple[int, int, str] | None
    _lock: threading.Lock
    _wake: threading.Condition
    _flusher: threading.Thread | None
    _written: int
    _synced: int
    failed: str | None
    _stopped: str | None

    if TYPE_CHECKING:  # the writer's own steps (medinfer.audit.writer, medinfer.audit.rotation)
        def _append(self, build: Any, prefix: bytes = b"") -> str: ...
        def _generic(self, body: dict[str, Any]) -> Any: ...
        def _write(self, data: bytes) -> None: ...
        def _stop(self, problem: str) -> AuditError: ...
        def _now(self) -> str: ...
        def _new_ids(self) -> None: ...
        def _next_file(self) -> tuple[int, bool]: ...

    # -- the file ----------------------------------------------------------------------------------------------
    def _open_fd(self) -> int:
        """Open the active file for appending (and reading its tail), flock'd, and still the active file once
        locked; refuse a FIFO or socket (a write could block for ever).

        Only the holder of a file's flock renames it out of the active name, so a file that is at the active name
        once this writer holds its lock stays there until this writer lets go. A file rotated away while this
        writer waited for its lock is closed and the new active file opened (without that check, a writer could
        start a chain of its own in a file no longer in the set, or rename a file it does not hold).
        """
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0), 0o640)
            except OSError as exc:
                raise AuditError(f"audit trail {self.path} cannot be opened for appending ({exc.strerror or exc})") \
                    from None
            mode = os.fstat(fd).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                os.close(fd)
                raise AuditError(f"audit trail {self.path} is a FIFO or socket: give a regular file")
            if FLOCK is None:
                return fd
            FLOCK(fd, LOCK_EX)
            if at_path(self.path, fd):
                return fd
            os.close(fd)  # rotated away while this writer waited: the active file is a newer one

    def _swap_fd(self, new: int, active: bool = True) -> None:
        """Continue in ``new`` (the active file, flock'd; or a rotated file read without a lock), closing the file
        before it (which releases its flock)."""
        old, self._fd, self._end, self._fd_active = self._fd, new, 0, active
        if old >= 0:
            os.close(old)

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._counter is not None:
            self._counter.close()

    # -- fork: see medinfer.audit.forks ---------------------------------------------------------------------------
    def hold(self) -> None:
        self._lock.acquire()

    def release_hold(self) -> None:
        self._lock.release()

    def forked(self) -> None:
        """In a forked child: fresh locks, ids and no flusher; the file opened again (its own open file
        description, so that its flock and its parent's exclude each other)."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._flusher = None
        self._synced = self._written  # the parent's unsynced records are the parent's to sync
        self._new_ids()
        if self._fd >= 0:
            try:
                new = os.open(f"/proc/self/fd/{self._fd}", os.O_RDWR | os.O_APPEND)
            except OSError:
                new = -1
                self.failed = self._stopped = "the log could not be opened again in a forked process"
            if new >= 0:
                os.close(self._fd)
                self._fd = new
            if self._counter is not None:
                self._counter.reopen()
            if self._head is not None:
                self._head.forked()

    # -- where the chain goes on ------------------------------------------------------------------------------
    def _resume(self) -> None:
        """Find where the chain goes on, checked, and follow every line after it (at open, under both locks)."""
        size = os.fstat(self._fd).st_size
        if not self.head and os.path.lexists(head_path(self.path)):
            raise AuditError(f"audit trail {self.path} is anchored ({head_path(self.path).name} exists): open it with "
                             "head=True (--head, --audit-head) like the writer that anchored it, so that its head "
                             "keeps up with every record")
        anchor = self._read_anchor() if self.head else None
        if size == 0:
            self._resume_empty(anchor)
            return
        if anchor is not None and anchor.records and anchor.end is not None:
            cursor, end = self._at_anchor(anchor, size)
        else:
            cursor, end = self._at_tail(size)
            if anchor is not None and cursor.seq < anchor.records:
                raise self._stop(f"the log ends at record {cursor.seq} but its head anchors {anchor.records}: "
                                 "records were deleted from the end")
        self._prev, self._seq, self._end = cursor.prev, cursor.seq, end
        self._file_started = started_at(self._fd)
        found = self._advance(size, cursor)
        if anchor is not None and found > anchor.records:
            self._withheld = (anchor.records + 1, found, "written after the last record the head anchors (the "
                              "writer stopped before anchoring them: their answers were not returned)")

    def _read_anchor(self) -> Anchor | None:
        """The head, checked against the counter (a head behind its counter was put back: a replay)."""
        head, problem = read_head(self.path, self.key)
        if problem:
            raise self._stop(problem)
        counted, problem = self._counter.read() if self._counter is not None else (None, None)
        if problem:
            raise self._stop(problem)
        if counted is not None and counted.records:
            if head is None:
                raise self._stop(f"the head file is missing but the counter anchors {counted.records} records")
            if counted.records > head.records or (counted.records == head.records
                                                  and counted.last_hash != head.last_hash):
                raise self._stop(f"the head anchors {head.records} records but the counter "
                                 f"{counted.records}: an older head was put back (a replay)")
        return head

    def _at_anchor(self, anchor: Anchor, size: int) -> tuple[Cursor, int]:
        """A cursor after the record the head anchors, which must end at the offset the head names (in the active
        file, or closing the newest rotated file when a rotation stopped before its head was written)."""
        end = anchor.end or 0
        cursor = _anchored(self._fd, end, anchor, self.key) if size >= end else None
        if cursor is not None:
            return cursor, end
        files = rotated_files(self.path)
        if files:
            fd = os.open(files[-1][1], os.O_RDONLY)
            try:
                if os.fstat(fd).st_size == end and (cursor := _anchored(fd, end, anchor, self.key)) is not None:
                    return cursor, 0
            finally:
                os.close(fd)
        if size < end:
            raise self._stop(f"the log has {size} bytes but its head anchors {end}: it was truncated")
        raise self._stop(f"record {anchor.records} is not where its head anchors it: the log was rewritten")

    def _at_tail(self, size: int) -> tuple[Cursor, int]:
        """A cursor after the last complete record, which must be a record of this mode following the one before
        it (or the first record of the log, or of a rotated-to file)."""
        for window in (1 << 16, 3 * (MAX_LINE + 1)):
            start = max(0, size - window)
            data = read_at(self._fd, size - start, start)
            lines = data[:data.rfind(b"\n") + 1].split(b"\n")[:-1]
            if start:
                lines = lines[1:]  # the first may be cut by the window
            if start == 0 or len(lines) >= 3:
                break
        if not lines:
            if start:
                raise self._stop("the log's last line is longer than any record")
            return Cursor(self.key), 0  # one torn line, no record yet: _advance seals it
        end = start + len(data[:data.rfind(b"\n") + 1])
        last = lines[-1]
        rec = parse_record(last)
        if rec is None:
            raise self._stop(f"the last complete line is not a record ({_what(last)})")
        before, torn = lines[:-1], None
        if rec.get("event") == RECOVERED and before:
            before, torn = before[:-1], before[-1]
        try:
            if before:
                cursor = resume(self.key, before[-1])
            elif start == 0 and rec["seq"] == 1:
                cursor = Cursor(self.key)
            elif start == 0 and rec.get("event") == OPENED and torn is None:
                return resume(self.key, last), end  # the first record of a rotated-to file
            else:
                raise ChainBreak("the record before the last one cannot be read", None)
            if torn is not None:
                cursor.follow(torn)
            cursor.follow(last)
        except ChainBreak as exc:
            raise self._stop(f"the log's last records do not verify ({exc.problem})") from None
        return cursor, end

    def _resume_empty(self, anchor: Anchor | None) -> None:
        """An empty active file: a new log, or the next file of a rotated set (whose first record then chains
        onto the closing record of the newest rotated file)."""
        files = rotated_files(self.path)
        self._file_started = time.time()
        if not files:
            if anchor is not None and anchor.records:
                raise self._stop(f"the log is empty but its head anchors {anchor.records} records: they were "
                                 "deleted")
            self._prev, self._seq, self._end = GENESIS, 0, 0
            return
        newest = files[-1][1]
        fd = os.open(newest, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            try:
                cursor = check_closed(fd, size, self.key, newest.name)
            except ChainBreak as exc:
                raise self._stop(f"the active file is empty and {exc.problem}") from None
            if anchor is not None and (anchor.records > cursor.seq or anchor.records == cursor.seq
                                       and anchor.last_hash != cursor.prev):
                raise self._stop(f"the active file is empty but its head anchors record {anchor.records}: "
                                 "records were deleted")
            previous = {"file": newest.name, "sha256": fd_digest(fd, size), "bytes": size}
        finally:
            os.close(fd)
        self._prev, self._seq, self._end = cursor.prev, cursor.seq, 0
        self._append(self._generic({"event": OPENED, "previous": previous, "time": self._now()}))

    def _advance(self, size: int, cursor: Cursor | None = None) -> int:
        """Follow every line between where this writer left the file and ``size`` (another process's records, a
        torn line), and through the files after it when it ends with its closing record (rotated by another
        process, maybe several times). Returns the sequence number the existing lines reach.

        Raises:
            AuditError: the file is shorter than this writer left it, or a line does not follow (the writer stops).
        """
        found, closed = self._follow_lines(size, cursor)
        while closed:
            found, closed = self._next_file()
        return found

    def _follow_lines(self, size: int, cursor: Cursor | None = None, active: bool = True) -> tuple[int, bool]:
        """Follow the lines of the current file from where this writer left it to ``size``; seal a torn last
        line of the active file. Returns the sequence number they reach and whether the file ends with its
        closing record."""
        begin = self._end
        if size < begin:
            raise self._stop(f"the log has {size} bytes, fewer than the {begin} this writer left: it was truncated")
        cursor = cursor or Cursor(self.key, self._prev, self._seq)
        offset, rest = begin, b""
        try:
            while offset < size:
                block = read_at(self._fd, min(1 << 20, size - offset), offset)
                if not block:
                    break
                offset += len(block)
                *lines, rest = (rest + block).split(b"\n")
                for raw in lines:
                    cursor.follow(raw)
                if len(rest) > MAX_LINE:
                    raise ChainBreak("a line longer than any record", None)
            cursor.finish()
            if rest and not active:
                raise ChainBreak("a rotated file ends with a torn line: it was truncated", None)
        except ChainBreak as exc:
            raise self._stop(f"{exc.problem} (counting lines from byte {begin}): this writer never appends after "
                             "a line it could not check") from None
        found = cursor.seq
        self._prev, self._seq, self._end = cursor.prev, cursor.seq, offset - len(rest)
        if rest:
            self._seal(rest, cursor)
        return found, not rest and cursor.event == CLOSED

    def _seal(self, rest: bytes, cursor: Cursor) -> None:
        """A last line without its newline: complete it if it is the next record, else seal it (a recovery record
        with its length and sha256, written with the newline in one write)."""
        if parse_record(rest) is not None:
            try:
                cursor.follow(rest)
            except ChainBreak:
                pass
            else:
                self._write(b"\n")
                self._prev, self._seq, self._end = cursor.prev, cursor.seq, self._end + len(rest) + 1
                return
        self._end += len(rest)
        self._append(self._generic({"event": RECOVERED, "torn_bytes": len(rest), "torn_sha256": torn_digest(rest)}),
                     prefix=b"\n")


def _anchored(fd: int, end: int, anchor: Anchor, key: bytes | None) -> Cursor | None:
    """A cursor after the record ending at ``end`` if it is the anchored one (its seq, its hash, valid)."""
    raw = line_ending_at(fd, end)
    if raw is None:
        return None
    try:
        cursor = resume(key, raw)
    except ChainBreak:
        return None
    return cursor if cursor.seq == anchor.records and cursor.prev == anchor.last_hash else None


def _what(raw: bytes) -> str:
    """A short, printable description of a line that is no record (never the line itself: it may be huge)."""
    if len(raw) > MAX_LINE:
        return f"{len(raw)} bytes, longer than any record"
    return f"{len(raw)} bytes, not a JSON object with an integer seq >= 1 and 64-character prev and hash"
