"""The one rule of what may come next in an audit chain, for the writer and the verifier alike.

:class:`Cursor` follows a chain line by line from a known position (the previous record's hash and sequence
number). A line is accepted only when it is a record (:func:`~medinfer.audit.record.parse_record`) of the
cursor's mode (keyed records under a key, plain records without one: the two never mix), whose ``prev`` is the
position's hash, whose ``seq`` is the next number and whose ``hash`` is the link of its content. The one exception
is a torn line (a crash mid-write) that the next record seals with its exact length and sha256. Anything else
raises :class:`ChainBreak` naming the line and what is wrong with it: the verifier reports it, the writer stops
(it never appends after a line it could not check).
"""

from __future__ import annotations

from typing import Any

from .record import CLOSED, GENESIS, KEYED, OPENED, RECOVERED, Chain, canonical, parse_record, torn_digest


class ChainBreak(Exception):
    """A line that cannot follow the chain: ``problem`` says why, ``line`` is its number (1-based) in its file."""

    def __init__(self, problem: str, line: int | None) -> None:
        super().__init__(problem)
        self.problem, self.line = problem, line


class Cursor:
    """A position in a chain (``prev``, ``seq``) and the rule of what may follow it.

    Args:
        key: the device key of a keyed chain (None: a plain chain).
        prev: the hash of the record before the next line (GENESIS at the start of a log).
        seq: its sequence number (0 at the start).
        line: the number of lines of the file before the next one (for messages).
    """

    __slots__ = ("prev", "seq", "line", "last", "keyed", "_link", "_torn", "_torn_line")

    def __init__(self, key: bytes | None, prev: str = GENESIS, seq: int = 0, line: int = 0) -> None:
        self.prev, self.seq, self.line = prev, seq, line
        self.keyed = key is not None
        self._link = Chain(key).link
        self.last: dict[str, Any] | None = None  # the last record accepted (without its hash)
        self._torn: bytes | None = None
        self._torn_line = 0

    @property
    def event(self) -> Any:
        """The ``event`` of the last record accepted (None for an inference record or none yet)."""
        return self.last.get("event") if self.last is not None else None

    @property
    def pending(self) -> bool:
        """A complete line that is no record waits for the recovery record that seals it."""
        return self._torn is not None

    def follow(self, raw: bytes) -> dict[str, Any] | None:
        """Accept the next complete line (without its newline); returns its record (without ``hash``), or None
        for a torn line that the next record must seal.

        Raises:
            ChainBreak: the line cannot follow.
        """
        self.line += 1
        rec = parse_record(raw)
        if rec is None:
            if self._torn is not None:  # two lines in a row that are no records: the first is not sealed
                raise self._unsealed()
            self._torn, self._torn_line = raw, self.line
            return None
        if self._torn is not None:
            if not (rec.get("event") == RECOVERED and rec.get("torn_bytes") == len(self._torn)
                    and rec.get("torn_sha256") == torn_digest(self._torn)):
                raise self._unsealed()
            self._torn = None
        n = self.line
        if self.last is not None and self.last.get("event") == CLOSED and rec.get("event") != OPENED:
            raise ChainBreak(f"line {n} follows a file's closing record ({CLOSED}) but does not open the next file "
                             f"({OPENED}): a closed file takes no more records", n)
        claimed = rec.pop("hash")
        keyed = rec.get("chain") == KEYED
        if keyed and not self.keyed:
            raise ChainBreak(f"line {n} is keyed ({KEYED}): verify or continue it with the device key (--key); "
                             "keyed and plain records never mix in one log", n)
        if self.keyed and not keyed:
            raise ChainBreak(f"line {n} is not keyed although a key was given: it was written or recomputed "
                             "without the device key (keyed and plain records never mix in one log)", n)
        if rec["prev"] != self.prev:
            raise ChainBreak(f"line {n} does not follow the record before it: a record was deleted, inserted or "
                             "reordered", n)
        if rec["seq"] != self.seq + 1:
            raise ChainBreak(f"line {n} has seq {rec['seq']}, expected {self.seq + 1}", n)
        if self._link(self.prev, canonical(rec)) != claimed:
            raise ChainBreak(f"line {n} was edited: its content does not match its hash", n)
        self.prev, self.seq, self.last = claimed, self.seq + 1, rec
        return rec

    def finish(self) -> None:
        """The end of the complete lines: a line that is no record must have been sealed.

        Raises:
            ChainBreak: it was not.
        """
        if self._torn is not None:
            raise self._unsealed()

    def _unsealed(self) -> ChainBreak:
        n = self._torn_line
        return ChainBreak(f"line {n} is not a JSON audit record (and no recovery record seals it as a torn line)", n)


def resume(key: bytes | None, raw: bytes, line: int = 0) -> Cursor:
    """A cursor positioned after the record ``raw``, which must be a record of this mode whose hash is the link of
    its own content (its ``prev`` and ``seq`` taken from itself: where a writer resumes a log it did not write).

    Raises:
        ChainBreak: ``raw`` is no such record.
    """
    rec = parse_record(raw)
    if rec is None:
        raise ChainBreak(f"line {line + 1} is not a JSON audit record", line + 1)
    cursor = Cursor(key, rec["prev"], rec["seq"] - 1, line)
    cursor.follow(raw)
    return cursor
