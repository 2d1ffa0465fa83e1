"""Anchors of an audit log kept outside its lines: the head file and the monotonic counter (anchored mode).

The head (``<log>.head``) holds the record count, the last hash and the active file's size after each append
(HMAC'd under the device key in keyed mode): a log shorter than its head was truncated. An attacker who saved an
older head could truncate the log to match it and put the old head back; the counter catches that. It holds the
highest record count and hash ever anchored, written after the head on every append, in a file kept apart from
the log (``counter=``, by default ``<log>.counter``): a head behind its counter is a replayed head. The counter is
two fixed slots written in turn with ``pwrite`` (a torn write leaves the other slot), MAC'd like the head.

What the counter protects against depends on where it lives: beside the log it catches an old head put back on its
own; on storage the attacker cannot roll back (another partition, a TPM-backed file) it also catches a restore of
the log's whole folder. SECURITY.md says so.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import AuditError
from ..files import read_regular_file
from .record import HEAD_SUFFIX, head_mac, json_or_none, raw_mac, read_at, write_at

COUNTER_SUFFIX = ".counter"
HEAD_LIMIT = 4096
SLOT = 256


@dataclass(frozen=True)
class Anchor:
    """What a head (or the counter) anchors: the record count and the last hash (and, for a head, the active
    file's size then and whether a counter is kept)."""

    records: int
    last_hash: str
    end: int | None = None
    counter: bool = False


def head_path(log: Path) -> Path:
    """The head file of ``log``."""
    return Path(str(log) + HEAD_SUFFIX)


def counter_path(log: Path) -> Path:
    """The default counter file of ``log`` (beside it)."""
    return Path(str(log) + COUNTER_SUFFIX)


def _checked(doc: dict | None, key: bytes | None, what: str) -> tuple[Anchor | None, str | None]:
    if (doc is None or type(doc.get("records")) is not int or doc["records"] < 0
            or not isinstance(doc.get("last_hash"), str) or len(doc["last_hash"]) != 64):
        return None, f"{what} is not a head document"
    if key is not None:
        mac = doc.pop("mac", None)
        if mac != head_mac(key, doc):
            return None, f"{what} was not written with this key (or was edited)"
    end = doc.get("bytes")
    return Anchor(doc["records"], doc["last_hash"], end if type(end) is int and end >= 0 else None,
                  doc.get("counter") is True), None


def read_head(log: Path, key: bytes | None) -> tuple[Anchor | None, str | None]:
    """The head of ``log``: ``(anchor, None)``, ``(None, None)`` when there is none, or ``(None, problem)``."""
    path = head_path(log)
    if not os.path.lexists(path):
        return None, None
    try:
        raw = read_regular_file(path, HEAD_LIMIT, f"audit head {path}", AuditError, fix="restore it or start a new log")
    except AuditError as exc:
        return None, str(exc)
    return _checked(json_or_none(raw), key, path.name)


def anchor_bytes(key: bytes | None, records: int, last_hash: str, end: int | None = None,
                 counter: bool | None = None) -> bytes:
    """The canonical JSON of a head (``counter`` given) or of a counter slot, with its MAC when keyed; written
    directly (the same bytes as ``canonical`` of the document, which the verifier re-derives)."""
    head = ""
    if counter is not None:
        head = f'"bytes":{"null" if end is None else end},' + ('"counter":true,' if counter else "")
    middle = f'"last_hash":"{last_hash}",'
    tail = f'"records":{records}' + "}"
    if key is not None:
        mac = raw_mac(key, ("{" + head + middle + tail).encode())
        middle += f'"mac":"{mac}",'
    return ("{" + head + middle + tail).encode()


class HeadFile:
    """The writer's head file: replaced atomically (a temporary file renamed over it) after each append."""

    def __init__(self, log: Path, key: bytes | None, counter: bool) -> None:
        self.path, self.key, self.counter = head_path(log), key, counter
        self.forked()

    def forked(self) -> None:
        """(Also in a forked child:) the temporary file of this process."""
        self.tmp = str(self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp"))

    def write(self, records: int, last_hash: str, end: int) -> None:
        """Anchor ``records`` / ``last_hash`` and the active file's size ``end``.

        Raises:
            OSError: it cannot be written.
        """
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, anchor_bytes(self.key, records, last_hash, end, self.counter) + b"\n")
        finally:
            os.close(fd)
        os.replace(self.tmp, self.path)


def _best_slot(data: bytes, key: bytes | None, what: str) -> tuple[Anchor | None, str | None]:
    """The highest valid slot of a counter's bytes; a counter whose every slot is invalid is a problem."""
    if not data:
        return None, None
    found = [a for a, _ in (_checked(json_or_none(data[i:i + SLOT]), key, what) for i in (0, SLOT)) if a is not None]
    if not found:
        return None, f"{what} holds no valid slot (edited, or not written with this key)"
    return max(found, key=lambda a: a.records), None


def read_counter(path: Path, key: bytes | None) -> tuple[Anchor | None, str | None]:
    """The counter at ``path``: ``(anchor, None)``, ``(None, None)`` when missing or empty, or ``(None, problem)``."""
    if not os.path.lexists(path):
        return None, None
    try:
        data = read_regular_file(path, 2 * SLOT, f"audit counter {path}", AuditError,
                                 fix="restore it or start a new log")
    except AuditError as exc:
        return None, str(exc)
    return _best_slot(data, key, path.name)


class Counter:
    """The writer's open counter file (one descriptor; a write is one ``pwrite`` into the slot not holding the
    newest value).

    Raises:
        AuditError: the file cannot be opened or is not a regular file.
    """

    def __init__(self, path: Path, key: bytes | None) -> None:
        self.path, self.key = path, key
        self.fd = -1
        self.reopen()

    def reopen(self) -> None:
        """Open (again, e.g. in a forked child) the counter file."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NONBLOCK", 0), 0o640)
        except OSError as exc:
            raise AuditError(f"audit counter {self.path} cannot be opened ({exc.strerror or exc})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise AuditError(f"audit counter {self.path} is not a regular file")
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = fd

    def read(self) -> tuple[Anchor | None, str | None]:
        """The highest valid slot (see :func:`read_counter`)."""
        return _best_slot(read_at(self.fd, 2 * SLOT + 1, 0)[:2 * SLOT], self.key, self.path.name)

    def write(self, records: int, last_hash: str) -> None:
        """Anchor ``records`` / ``last_hash`` (the slot ``records % 2``).

        Raises:
            OSError: the write failed.
        """
        data = anchor_bytes(self.key, records, last_hash).ljust(SLOT - 1) + b"\n"
        if write_at(self.fd, data, (records % 2) * SLOT) != SLOT:
            raise OSError("short write to the audit counter")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
