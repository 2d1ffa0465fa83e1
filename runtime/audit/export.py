"""Export of an audit log (all of its rotated set, in chain order) that keeps the chain verifiable.

``jsonl``: the records' lines exactly as written, one after the other: the export is itself a chain that
:func:`~medinfer.audit.verify_log` verifies (rotation records included, so it shows where each file began).
``syslog``: each record as an RFC 5424 message (facility 13 "log audit", severity 6 "informational", APP-NAME
``medinfer``, MSGID ``audit``, the record's time as TIMESTAMP) whose MSG is the record's line, unchanged, after
a UTF-8 BOM: a collector keeps the hashes, and ``medinfer audit verify`` reads such a file back.

The log is verified before anything is exported: an export never carries a chain that does not verify.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from typing import IO

from ..errors import AuditError, UsageError
from .record import parse_record
from .sources import FileLines, set_files
from .verify import verify_log

FORMATS = ("jsonl", "syslog")
PRI = 13 * 8 + 6  # facility 13 (log audit), severity 6 (informational)
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
_BOM = b"\xef\xbb\xbf"


def syslog_line(raw: bytes, hostname: str) -> bytes:
    """One record line as an RFC 5424 syslog message."""
    rec = parse_record(raw)
    when = rec.get("time") if rec is not None else None
    stamp = when if isinstance(when, str) and _TIME.match(when) else "-"
    return f"<{PRI}>1 {stamp} {hostname} medinfer - audit - ".encode() + _BOM + raw + b"\n"


def _hostname(name: str | None) -> str:
    name = name if name is not None else socket.gethostname()
    clean = "".join(c for c in name if 33 <= ord(c) <= 126)[:255]
    return clean or "-"


def export_log(path: str | Path, out: str | Path, fmt: str = "jsonl", *, key: str | Path | bytes | None = None,
               hostname: str | None = None) -> int:
    """Write the verified records of ``path`` (its whole rotated set) to ``out`` (``-``: standard output) as
    ``jsonl`` or ``syslog``; returns the number of records.

    Raises:
        UsageError: an unknown format.
        AuditError: the log does not verify, or cannot be read or written.
    """
    if fmt not in FORMATS:
        raise UsageError(f"audit export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    report = verify_log(path, key=key)
    if not report.ok:
        raise AuditError(f"audit log {path} does not verify ({report.problem}); nothing was exported (copy the "
                         "files themselves to keep the evidence)")
    host = _hostname(hostname)
    if str(out) == "-":
        _write(Path(path), sys.stdout.buffer, fmt, host)
        sys.stdout.flush()
        return report.records
    target = Path(out)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            _write(Path(path), fh, fmt, host)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise AuditError(f"audit export {target} cannot be written ({exc.strerror or exc})") from None
    return report.records


def _write(path: Path, fh: IO[bytes], fmt: str, host: str) -> None:
    for file in set_files(path):
        for raw in FileLines(file):  # complete lines only: a torn tail is not exported
            fh.write(raw + b"\n" if fmt == "jsonl" else syslog_line(raw, host))
