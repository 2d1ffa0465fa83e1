"""The audit trail: an append-only, hash-chained JSONL log with one record per inference (EU AI Act Art. 12 style).

Split by responsibility, sharing public names only:

- :mod:`.record`: what a record holds and its canonical bytes, the chain link (plain or keyed), the head MAC, the
  input digest, the output summary, the strict parse of a line and the device key;
- :mod:`.chain`: :class:`~.chain.Cursor`, the one rule of what may follow in a chain (writer and verifier alike);
- :mod:`.writer`: :class:`AuditLog` (one writer per file per process, flock'd appends) with :mod:`.tail` (the
  check of the file before each append: it never continues a file it did not check), :mod:`.commit` (fsync, group
  commit, head and counter, withheld answers), :mod:`.rotation` (rotation and retention), :mod:`.anchor` (head
  and counter files), :mod:`.forks` (at-fork handlers) and :mod:`.binding` (:class:`AuditBinding`, a writer bound
  to one model);
- :mod:`.verify`: :func:`verify_log`, which re-derives the chain across a rotated set or an export and names the
  first broken line; :mod:`.sources` reads them, :mod:`.export` writes JSONL and RFC 5424 syslog exports.

Each record holds UTC time, sequence number, request id, model name/version/sha256, a digest of the input (never
the input itself), an output summary, status and latency, plus ``prev`` (the previous record's hash) and
``hash`` = sha256(prev + canonical JSON of the record without ``hash``). Editing, deleting or reordering any
line breaks the chain, and :func:`verify_log` names the first broken line.

Durability: each record is written with ONE ``os.write`` on an ``O_APPEND`` descriptor before the result is
returned, so a process killed (even with SIGKILL) leaves only complete records, or at worst a partial last line
that ``verify_log`` reports as a torn tail and that the next writer seals (its digest goes into a recovery record).
A complete last record that only lacks its newline is completed, not sealed. Against power loss:

- ``fsync=True``: every record is fsynced before its result is returned (nothing acknowledged is lost);
- group commit (``fsync=True, group_ms=W, group_records=N``): records are written at once but fsynced in groups.
  On power failure at most the last ``N`` records are lost — a hard bound: the append that would leave ``N``
  records unsynced fsyncs itself — and each lost record was appended less than ``W`` ms plus one fsync before the
  failure (an append finding the oldest unsynced record older than ``W`` fsyncs itself; when no append comes, a
  flusher thread does, so in idle periods add the thread's scheduling delay);
- ``fsync=False`` (default): the operating system decides when records reach the disk.

Modes and what they detect (SECURITY.md has the table):
- plain (default): any edit, deletion, insertion or reordering of records — except by someone who recomputes
  every later hash, and except truncation of the END of the log once its writer is gone (a running writer stops
  on a file shorter than it left it);
- keyed (``key=``): ``hash`` is HMAC-SHA256 with a device key, so recomputing the chain needs the key;
- anchored (``head=True``): ``<log>.head`` holds the record count, last hash and file size after each append
  (HMAC'd when keyed) and a counter kept apart (``counter=``) the highest count ever anchored;
  ``verify_log(..., head=True)`` then also detects records deleted from the end and an older head put back, and a
  restarted writer starts from its head.

Rotation (``rotate_mb=``, ``rotate_hours=``) carries the chain across files and retention (``retain_days=``, at
least 183) deletes only whole old files, recording it in the chain: :mod:`.rotation`.
"""

from __future__ import annotations

from ..errors import AuditError
from .record import GENESIS, HEAD_SUFFIX, KEYED, Chain, canonical, chain_hash, input_digest, read_key, summary
from .rotation import RETAIN_MIN_DAYS
from .verify import AuditReport, verify_log
from .writer import AuditBinding, AuditLog

__all__ = ["GENESIS", "HEAD_SUFFIX", "KEYED", "RETAIN_MIN_DAYS", "AuditBinding", "AuditError", "AuditLog",
           "AuditReport", "Chain", "canonical", "chain_hash", "export_log", "input_digest", "read_key", "summary",
           "verify_log"]


def __getattr__(name: str) -> object:
    """``export_log`` on first use: an export is a maintenance command, not part of what ``import medinfer`` loads."""
    if name == "export_log":
        from .export import export_log

        return export_log
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
