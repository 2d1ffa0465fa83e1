"""Rotation and retention of an audit log: the file names of a rotated set and the writer's rotation steps.

A log ``audit.jsonl`` rotates into ``audit.jsonl.<first seq, 12 digits>`` (the sequence number of the file's first
record, so names sort in chain order). The chain runs on across files: the closed file ends with an
``audit_file_closed`` record, and the first record of the next file (``audit_file_opened``) chains onto it and
names the closed file with its sha256 and size, so a missing, reordered, truncated or edited file breaks the set.

Retention deletes only whole rotated files whose last record is older than the declared period (at least 183
days: six months, EU AI Act Art. 19 and 26), oldest first, never the active file, and only files whose sha256 is
the one the chain pins; the deletion is written into the chain (``retention_deleted``: each file's name, sha256,
size and last time) before any file is removed.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AuditError, UsageError
from ..timestamps import parse_utc
from .chain import ChainBreak, resume
from .record import CLOSED, MAX_LINE, OPENED, RETAINED, fd_digest, json_or_none, parse_record, read_at

log = logging.getLogger("medinfer.audit")

RETAIN_MIN_DAYS = 183  # six months (EU AI Act Art. 19(1), 26(6): logs kept at least six months)
_DIGITS = 12


def rotated_name(active: Path, first_seq: int) -> Path:
    """The name a file of ``active`` gets when rotated: ``<active>.<first seq, 12 digits>``."""
    return active.with_name(f"{active.name}.{first_seq:0{_DIGITS}d}")


def rotated_files(active: Path) -> list[tuple[int, Path]]:
    """The rotated files of ``active`` as ``(first seq, path)``, in chain order."""
    pattern = re.compile(re.escape(active.name) + rf"\.(\d{{{_DIGITS}}})$")
    try:
        names = os.listdir(active.parent)
    except OSError:
        return []
    found = [(int(m.group(1)), active.parent / n) for n in names if (m := pattern.match(n))]
    return sorted(found)


def at_path(path: Path, fd: int) -> bool:
    """Whether the open file ``fd`` is the file named ``path`` now."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except FileNotFoundError:
        return False


def active_of(path: Path) -> Path:
    """The active file of the set ``path`` belongs to (``path`` itself unless it is a rotated file's name)."""
    match = re.match(rf"^(.+)\.\d{{{_DIGITS}}}$", path.name)
    return path.with_name(match.group(1)) if match else path


def check_retention(days: float | None) -> float | None:
    """``retain_days`` as given, once checked.

    Raises:
        UsageError: fewer than :data:`RETAIN_MIN_DAYS` days, or not a number.
    """
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not days >= RETAIN_MIN_DAYS:
        raise UsageError(f"audit retention {days!r} days: expected at least {RETAIN_MIN_DAYS} (six months, EU AI Act "
                         "Art. 19 and 26; a longer period where your regulator asks for one)")
    return float(days)


def line_ending_at(fd: int, end: int) -> bytes | None:
    """The complete line whose newline is the byte before ``end`` (without it), or None."""
    if end <= 0:
        return None
    start = max(0, end - MAX_LINE - 2)
    data = read_at(fd, end - start, start)
    if len(data) != end - start or not data.endswith(b"\n"):
        return None
    cut = data.rfind(b"\n", 0, len(data) - 1)
    if cut < 0 and start > 0:
        return None  # longer than any record
    return data[cut + 1:-1]


def first_line(fd: int) -> bytes:
    """The first line of an open file (at most MAX_LINE bytes)."""
    data = read_at(fd, MAX_LINE + 1, 0)
    return data.split(b"\n", 1)[0]


def started_at(fd: int) -> float:
    """When the file's first record was written (now, if it says no time): where time-based rotation counts
    from."""
    rec = parse_record(first_line(fd))
    try:
        return parse_utc(rec["time"]) if rec is not None else time.time()
    except (KeyError, TypeError, ValueError, AttributeError):
        return time.time()


class Rotation:
    """The rotation half of :class:`~medinfer.audit.AuditLog` (its state lives on the log, under its locks)."""

    path: Path
    key: bytes | None
    retain_days: float | None
    _fd: int
    _fd_active: bool
    _end: int
    _seq: int
    _file_started: float
    _stopped: str | None
    _lock: Any

    if TYPE_CHECKING:  # the writer's own steps (medinfer.audit.writer, medinfer.audit.tail)
        def _append(self, build: Any, prefix: bytes = b"") -> str: ...
        def _generic(self, body: dict[str, Any]) -> Any: ...
        def _open_fd(self) -> int: ...
        def _swap_fd(self, new: int, active: bool = True) -> None: ...
        def _follow_lines(self, size: int, cursor: Any = None, active: bool = True) -> tuple[int, bool]: ...
        def _stop(self, problem: str) -> AuditError: ...
        def _now(self) -> str: ...
        def _slow(self, step: Any, *args: Any) -> None: ...
        def _catch_up(self) -> None: ...
        def _locked(self, fn: Any, *args: Any) -> Any: ...

    def rotate(self, reason: str = "manual") -> None:
        """Rotate the active file now (``medinfer audit rotate``), then apply the retention policy if any.

        Raises:
            AuditError: the log cannot be rotated (or does not verify where this writer continues it).
        """
        with self._lock:
            if self._fd < 0 or self._stopped is not None:
                raise AuditError(f"audit trail {self.path} is closed or stopped: it cannot be rotated")
            self._locked(self._rotate_now, reason)

    @property
    def files(self) -> list[Path]:
        """The files of this log in chain order: the rotated ones, then the active file."""
        return [p for _, p in rotated_files(self.path)] + [self.path]

    def _rotate_now(self, reason: str) -> None:
        self._slow(self._catch_up)
        self._slow(self._rotate, reason)

    def _rotate(self, reason: str) -> None:
        """Close the active file with a record, rename it into the set, and open the next file with the record
        that chains onto it (called under both locks)."""
        self._append(self._generic({"event": CLOSED, "reason": reason, "time": self._now()}))
        try:
            os.fsync(self._fd)  # the file's sha256 goes into the chain: pin what is on the disk
        except OSError as exc:
            raise AuditError(f"audit trail {self.path} cannot be rotated (fsync: {exc.strerror or exc})") from None
        _, closed = self._open_next(self._rename_closed())
        while closed:
            _, closed = self._next_file()
        if self.retain_days is not None:
            self._retain()

    def _rename_closed(self) -> dict[str, Any]:
        """Give the closed active file its rotated name (no file is ever overwritten); returns what the next
        file's first record says of it."""
        fd = self._fd
        size = os.fstat(fd).st_size
        first = parse_record(first_line(fd))
        if first is None:
            raise self._stop("the first line of the active file is not a record: it cannot be named for rotation")
        target = rotated_name(self.path, first["seq"])
        try:
            os.link(self.path, target)
        except FileExistsError:
            if not os.path.samestat(os.stat(target), os.fstat(fd)):
                raise self._stop(f"{target.name} exists and is not this log: a rotated file is never "
                                 "overwritten") from None
        except OSError:  # a filesystem without hard links
            if os.path.exists(target):
                raise self._stop(f"{target.name} exists: a rotated file is never overwritten") from None
            os.rename(self.path, target)
        if os.path.exists(self.path) and os.path.samestat(os.stat(self.path), os.fstat(fd)):
            os.unlink(self.path)
        return {"file": target.name, "sha256": fd_digest(fd, size), "bytes": size}

    def _open_next(self, previous: dict[str, Any]) -> tuple[int, bool]:
        """Open the active file that follows (flock'd) and write its first record, unless another writer did
        (then follow its lines). Returns what :meth:`_follow_lines` does."""
        closed = os.fstat(self._fd)
        self._swap_fd(self._open_fd())
        if os.path.samestat(os.fstat(self._fd), closed):
            # The closed file this writer read without a lock is still the active file, now locked by this writer:
            # its rotation stopped between the new name and the removal of the old one (its writer died). Finish it.
            self._end = closed.st_size
            return self._open_next(self._rename_closed())
        # Another process may have opened the file after ours AND rotated it between our look for it and our lock
        # on the active file (this writer was several rotations behind, or slow between its rename and this
        # open): then the file after ours is a rotated one and the active file, empty or not, chains onto a later
        # file. Under the active file's flock no rotation can happen, so this look holds.
        following = rotated_name(self.path, self._seq + 1)
        if os.path.exists(following) and not os.path.samestat(os.stat(following), os.fstat(self._fd)):
            self._swap_fd(os.open(following, os.O_RDONLY), active=False)
            return self._follow_lines(os.fstat(self._fd).st_size, active=False)
        size = os.fstat(self._fd).st_size
        if size:  # another process opened it first: its first record must chain onto ours
            self._file_started = started_at(self._fd)
            return self._follow_lines(size)
        found = self._seq
        self._append(self._generic({"event": OPENED, "previous": previous, "time": self._now()}))
        self._file_started = time.time()
        return found, False

    def _next_file(self) -> tuple[int, bool]:
        """The current file ends with its closing record: go on in the file after it. That is the active file
        renamed now (a rotation cut short by a crash), a newer rotated file (this writer is several rotations
        behind), or the active file.

        Only a writer holding the closed file's flock renames it: one reading a rotated file without a lock that
        finds it still at the active name takes the lock first (:meth:`_open_next`), as another writer may be
        between its rename and the removal of the old name (renaming it then would remove the new active file
        that writer opens next, with the records it writes there)."""
        old = self._fd
        if self._fd_active and at_path(self.path, old):
            return self._open_next(self._rename_closed())
        following = rotated_name(self.path, self._seq + 1)
        if os.path.exists(following):
            self._swap_fd(os.open(following, os.O_RDONLY), active=False)
            return self._follow_lines(os.fstat(self._fd).st_size, active=False)
        return self._open_next(self._previous_of(old))

    def _previous_of(self, fd: int) -> dict[str, Any]:
        info = os.fstat(fd)
        for _, path in reversed(rotated_files(self.path)):
            if os.path.samestat(os.stat(path), info):
                return {"file": path.name, "sha256": fd_digest(fd, info.st_size), "bytes": info.st_size}
        raise self._stop("the closed log file is no longer among the rotated files: it was moved or deleted")

    def _retain(self) -> None:
        """Delete the rotated files whose last record is older than the retention period (oldest first, whole
        files, only those the chain pins), after recording the deletion in the chain."""
        cutoff = time.time() - self.retain_days * 86400  # type: ignore[operator]
        files = rotated_files(self.path)
        doomed: list[dict[str, Any]] = []
        for i, (_, path) in enumerate(files):
            info = _closed_file(path, cutoff)
            if info is None:
                break  # unreadable, or not older than the period: it and every later file are kept
            pinned = self._pinned(files[i + 1][1] if i + 1 < len(files) else self.path)
            if pinned is None or pinned.get("file") != path.name or pinned.get("sha256") != info["sha256"]:
                log.warning("audit retention: %s is not the file the chain pins; it is kept", path)
                break
            doomed.append(info)
        if not doomed:
            return
        self._append(self._generic({"event": RETAINED, "files": doomed, "retain_days": self.retain_days,
                                    "time": self._now()}))
        for entry in doomed:
            try:
                os.unlink(self.path.parent / entry["file"])
            except OSError as exc:
                log.warning("audit retention: %s could not be deleted (%s)", entry["file"], exc)

    def _pinned(self, next_file: Path) -> dict[str, Any] | None:
        """What the first record of ``next_file`` says of the file before it."""
        try:
            with open(next_file, "rb") as fh:
                first = fh.readline(MAX_LINE + 1).rstrip(b"\n")
        except OSError:
            return None
        rec = json_or_none(first)
        previous = rec.get("previous") if rec is not None and rec.get("event") == OPENED else None
        return previous if isinstance(previous, dict) else None


def _closed_file(path: Path, cutoff: float) -> dict[str, Any] | None:
    """Name, sha256, size and last time of a rotated file whose closing record is older than ``cutoff``; None for
    a younger or unreadable file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        rec = parse_record(line_ending_at(fd, size) or b"")
        text = rec.get("time") if rec is not None and rec.get("event") == CLOSED else None
        try:
            when = parse_utc(text) if isinstance(text, str) else None
        except ValueError:
            when = None
        if when is None or not when < cutoff:
            return None
        return {"file": path.name, "sha256": fd_digest(fd, size), "bytes": size, "last_time": text}
    finally:
        os.close(fd)


def check_closed(fd: int, size: int, key: bytes | None, name: str) -> Any:
    """A cursor after the closing record of a rotated file (its last line, checked as a record of this mode).

    Raises:
        ChainBreak: the file does not end with a valid closing record.
    """
    raw = line_ending_at(fd, size)
    if raw is None:
        raise ChainBreak(f"{name} does not end with a complete record", None)
    cursor = resume(key, raw)
    if cursor.event != CLOSED:
        raise ChainBreak(f"{name} does not end with its closing record ({CLOSED}): records are missing from it",
                         None)
    return cursor
