"""Where the verifier (and drift, and export) read audit records from: a log, a rotated set, or an export.

:func:`set_files` gives the files of a log in chain order (the rotated files, then the active file).
:class:`FileLines` reads one file's complete lines in bounded memory (a line longer than any record is read
through, never held), hashing the file's bytes as it goes, and unwraps RFC 5424 syslog lines (an export made by
``medinfer audit export --format syslog``) into the record each carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import AuditError
from .record import MAX_LINE, file_hasher, parse_record
from .rotation import active_of, rotated_files

# <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [BOM]MSG (RFC 5424)
_SYSLOG = re.compile(rb"^<\d{1,3}>1 \S+ \S+ \S+ \S+ \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?:\xef\xbb\xbf)?(.*))?$",
                     re.DOTALL)
_BLOCK = MAX_LINE + 4096  # a syslog header on top of the longest record
TOO_LONG = b" " * (MAX_LINE + 1)  # what a line longer than any record reads as (no record, never held whole)


def set_files(path: Path) -> list[Path]:
    """The files holding the log ``path`` in chain order: its rotated files, then the active file (if present).

    Raises:
        AuditError: neither the file nor any rotated file of it exists, or it is a folder.
    """
    active = active_of(path)
    files = [p for _, p in rotated_files(active)]
    if active.is_dir() or path.is_dir():
        raise AuditError(f"audit log {path} is a folder; give the JSONL file written by medinfer (e.g. audit.jsonl)")
    if active.exists():
        files.append(active)
    if not files:
        raise AuditError(f"audit log {path} does not exist; give the JSONL file written by medinfer (e.g. "
                         "audit.jsonl)")
    return files


def syslog_payload(line: bytes) -> bytes | None:
    """The record an RFC 5424 syslog line carries (its MSG), or None if it is no such line."""
    match = _SYSLOG.match(line)
    return match.group(1) if match and match.group(1) is not None else None


class FileLines:
    """The complete lines of one file, unwrapped from syslog when they are syslog lines; after iteration,
    ``torn`` holds the bytes after the last newline and ``sha256`` / ``size`` describe the whole file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.torn = b""
        self.sha256 = ""
        self.size = 0
        self.syslog = False

    def __iter__(self) -> Iterator[bytes]:
        digest: Any = file_hasher()
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed below, after the generator's last line
        except OSError as exc:
            raise AuditError(f"audit log {self.path} cannot be read ({exc.strerror or exc})") from None
        with fh:
            first = True
            while True:
                line = fh.readline(_BLOCK)
                if not line:
                    break
                digest.update(line)
                self.size += len(line)
                if not line.endswith(b"\n"):
                    if len(line) < _BLOCK:
                        self.torn = line  # the end of the file
                        break
                    if self._read_through(fh, digest) is None:
                        break
                    yield TOO_LONG
                    continue
                raw = line[:-1]
                if first:
                    self.syslog, first = raw.startswith(b"<"), False
                if self.syslog:
                    raw = syslog_payload(raw) or b""
                yield raw
        self.sha256 = digest.hexdigest()

    def _read_through(self, fh: Any, digest: Any) -> bytes | None:
        """Read the rest of an overlong line; None if the file ends inside it (then it is the torn tail)."""
        while True:
            more = fh.readline(_BLOCK)
            digest.update(more)
            self.size += len(more)
            if not more:
                self.torn = TOO_LONG
                return None
            if more.endswith(b"\n"):
                return more


def records(path: Path) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Every record of the log ``path`` (its rotated set, or an export) in chain order, as ``(file name, line,
    record)``; lines that are no record (a sealed torn line) are skipped. Verify the log first
    (:func:`~medinfer.audit.verify_log`): this only reads."""
    for file in set_files(path):
        for n, raw in enumerate(FileLines(file), 1):
            rec = parse_record(raw)
            if rec is not None:
                yield file.name, n, rec
