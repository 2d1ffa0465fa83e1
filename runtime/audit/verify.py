"""Verifying an audit trail: re-derive the hash chain (:class:`~medinfer.audit.chain.Cursor`, the writer's own rule)
and name the first edited, deleted, inserted or reordered line; across a rotated set (a missing, reordered,
truncated or edited file breaks it) or an export (JSONL or RFC 5424 syslog, which carry the records unchanged);
with ``head=True`` also the anchored record count (deletions at the end) and the monotonic counter (an older
head put back). A torn last line (a crash mid-write) is reported, and a torn line a later writer sealed is
accepted only with the recovery record that carries its exact length and digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AuditError
from .anchor import Anchor, counter_path, read_counter, read_head
from .chain import ChainBreak, Cursor
from .record import CLOSED, OPENED, RETAINED, WITHHELD, parse_record, read_key
from .rotation import active_of
from .sources import FileLines, set_files


@dataclass(frozen=True)
class AuditReport:
    """What :func:`verify_log` found: ``ok``, the records verified, the last hash, and the first problem (its
    line, in ``file``), a torn tail, whether the log was keyed and its head checked; the files read, the first
    sequence number (above 1 when retention deleted older files), the records marked withheld (written, answer
    not returned) and those after the head's anchor."""

    ok: bool
    records: int
    last_hash: str
    problem: str | None = None
    line: int | None = None
    torn_tail: bool = False
    keyed: bool = False
    head_checked: bool = False
    files: tuple[str, ...] = ()
    first: int = 1
    withheld: int = 0
    unanchored: int = 0
    file: str | None = None


class _Broken(Exception):
    def __init__(self, problem: str, line: int | None = None, file: str | None = None) -> None:
        super().__init__(problem)
        self.problem, self.line, self.file = problem, line, file


def verify_log(path: str | Path, *, key: str | Path | bytes | None = None, head: bool = False,
               counter: str | Path | None = None) -> AuditReport:
    """Re-derive the hash chain; report the first edited, deleted, inserted or reordered line.

    Args:
        path: the JSONL log (its rotated files are verified with it, in chain order), or an export of it
            (``medinfer audit export``: JSONL or RFC 5424 syslog).
        key: the device key of a keyed log: every record must then verify with it (a plain record in a keyed
            check is refused, so the chain cannot be recomputed without the key).
        head: also check ``<path>.head``: the log must reach the record count and hash it anchors (detects
            records deleted from the end), and the head must not be behind its counter (an older head put back).
        counter: where the counter lives (default ``<path>.counter``); checked whenever the head says a counter is
            kept or the file exists.

    A torn last line (a crash mid-write) is reported (``torn_tail``) but does not fail verification of the
    complete records before it; a torn line that a later writer sealed must be followed by the recovery record
    that carries its exact length and sha256.

    Raises:
        AuditError: the log (or its head file) is missing or not a readable file.
    """
    path = Path(path)
    secret = read_key(key) if key is not None else None
    files = set_files(path)
    walk = _Walk(secret, _anchor(active_of(path), secret, counter) if head else None)
    try:
        walk.run(files)
    except _Broken as exc:
        return walk.report(False, exc.problem, exc.line, exc.file, head)
    return walk.report(True, None, None, None, head)


class _Walk:
    """One pass over the files of a log in chain order."""

    def __init__(self, secret: bytes | None, anchor: Anchor | str | None) -> None:
        self.secret, self.anchor = secret, anchor
        self.cursor = Cursor(secret)
        self.names: list[str] = []
        self.first, self.torn, self.withheld = 1, False, 0
        self.starts_after: str | None = None  # the file a chain beginning mid-way follows (deleted by retention?)
        self.deleted: set[str] = set()

    def report(self, ok: bool, problem: str | None, line: int | None, file: str | None, head: bool) -> AuditReport:
        anchored = self.anchor.records if isinstance(self.anchor, Anchor) else 0
        unanchored = max(0, self.cursor.seq - anchored) if ok and head else 0
        return AuditReport(ok, self.cursor.seq - self.first + 1, self.cursor.prev,
                           problem, line, self.torn, self.secret is not None, head, tuple(self.names), self.first,
                           self.withheld, unanchored, file)

    def run(self, files: list[Path]) -> None:
        if isinstance(self.anchor, str):
            raise _Broken(self.anchor)
        previous: dict[str, Any] | None = None
        for i, path in enumerate(files):
            lines = FileLines(path)
            self._file(path, lines, previous, i == len(files) - 1, len(files) > 1)
            previous = {"file": path.name, "sha256": lines.sha256, "bytes": lines.size}
            self.names.append(path.name)
        if self.starts_after is not None and self.starts_after not in self.deleted:
            raise _Broken(f"the chain starts at record {self.first}, after {self.starts_after}, which no "
                          f"{RETAINED} record deleted: records before it are missing")
        if isinstance(self.anchor, Anchor) and self.cursor.seq < self.anchor.records:
            raise _Broken(f"the log has {self.cursor.seq} records but its head anchors {self.anchor.records}: "
                          "records were deleted from the end")

    def _file(self, path: Path, lines: FileLines, previous: dict[str, Any] | None, last: bool, named: bool) -> None:
        cursor, name = self.cursor, path.name
        cursor.line, cursor.last = 0, None
        try:
            for raw in lines:
                if cursor.line == 0:
                    self._first_line(raw, previous, name)
                rec = cursor.follow(raw)
                if rec is not None:
                    self._note(rec)
            cursor.finish()
        except ChainBreak as exc:
            raise _Broken(f"{name}: {exc.problem}" if named else exc.problem, exc.line, name) from None
        if lines.torn:
            if not last:
                raise _Broken(f"{name} ends with a torn line although a later file follows it: it was truncated",
                              None, name)
            self.torn = True
        if not last and cursor.event != CLOSED:
            raise _Broken(f"{name} does not end with its closing record ({CLOSED}): records are missing from it",
                          None, name)

    def _first_line(self, raw: bytes, previous: dict[str, Any] | None, name: str) -> None:
        """The first record of a file: the log's first, or the one that pins the file before it."""
        rec = parse_record(raw)
        opened = rec is not None and rec.get("event") == OPENED and isinstance(rec.get("previous"), dict)
        if previous is None:  # the first file read
            if opened and rec["seq"] > 1:  # type: ignore[index]
                self.cursor.prev, self.cursor.seq = rec["prev"], rec["seq"] - 1  # type: ignore[index]
                self.first, self.starts_after = rec["seq"], str(rec["previous"].get("file"))  # type: ignore[index]
            return
        if not opened:
            raise _Broken(f"{name} does not begin with the record that pins the file before it ({OPENED}): a "
                          "file is missing or out of order", 1, name)
        pinned = rec["previous"]  # type: ignore[index]
        for field in ("file", "sha256", "bytes"):
            if pinned.get(field) != previous[field]:
                raise _Broken(f"{name} pins {field} {pinned.get(field)!r} of the file before it, but "
                              f"{previous['file']} has {previous[field]!r}: a file is missing, reordered, truncated "
                              "or edited", 1, name)

    def _note(self, rec: dict[str, Any]) -> None:
        """What the verifier keeps of an accepted record: deletions, withheld answers, the head's anchor."""
        event = rec.get("event")
        if event == RETAINED and isinstance(rec.get("files"), list):
            self.deleted.update(str(f.get("file")) for f in rec["files"] if isinstance(f, dict))
        elif event == WITHHELD and isinstance(rec.get("records"), list) and len(rec["records"]) == 2:
            first, last = rec["records"]
            if type(first) is int and type(last) is int:
                self.withheld += max(0, last - first + 1)
        anchor = self.anchor
        if isinstance(anchor, Anchor) and rec["seq"] == anchor.records and self.cursor.prev != anchor.last_hash:
            raise ChainBreak(f"record {anchor.records} does not carry the hash its head anchors: the log was "
                             "rewritten", self.cursor.line)


def _anchor(active: Path, secret: bytes | None, counter: str | Path | None) -> Anchor | str:
    """The head (checked against its counter), or the problem found."""
    head, problem = read_head(active, secret)
    if problem:
        return problem
    if head is None:
        raise AuditError(f"{active}.head does not exist: the log was not written with head=True, or the head was "
                         "removed")
    where = Path(counter) if counter is not None else counter_path(active)
    counted, problem = read_counter(where, secret)
    if problem:
        return problem
    if counted is None:
        return f"the head says a counter is kept but {where} is missing or empty" if head.counter else head
    if counted.records > head.records or counted.records == head.records and counted.last_hash != head.last_hash:
        return (f"the head anchors {head.records} records but the counter {counted.records}: an older head was put "
                "back (a replay)")
    return head
