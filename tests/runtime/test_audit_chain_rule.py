"""The chain rule itself (``medinfer.audit.chain.Cursor``), line by line, with records built here by the chain's
own link: what may follow a file's closing record, how a torn line must be sealed, and the line numbers and words
of each refusal. These pin behaviours that mutation testing (``make mutation-score``) found unpinned in
runtime/audit/chain.py: each fails when the rule it names is weakened."""

from __future__ import annotations

import pytest
from medinfer.audit.chain import ChainBreak, Cursor, resume
from medinfer.audit.record import CLOSED, GENESIS, OPENED, RECOVERED, Chain, canonical, torn_digest


class Writer:
    """Builds the lines of a plain chain (what AuditLog writes, minus everything the rule does not read)."""

    def __init__(self) -> None:
        self.prev, self.seq, self.link = GENESIS, 0, Chain(None).link

    def line(self, **fields: object) -> bytes:
        body = {"seq": self.seq + 1, "prev": self.prev, **fields}
        raw = canonical(body)
        digest = self.link(self.prev, raw)
        self.prev, self.seq = digest, self.seq + 1
        return raw[:-1] + b',"hash":"' + digest.encode() + b'"}'


def test_a_closed_file_takes_no_more_records_but_the_next_file_opens() -> None:
    w, cursor = Writer(), Cursor(None)
    cursor.follow(w.line(request_id="a"))
    cursor.follow(w.line(event=CLOSED))
    after = w.line(request_id="b")  # correctly chained, yet after the closing record
    with pytest.raises(ChainBreak) as info:
        cursor.follow(after)
    assert info.value.line == 3 and str(info.value) == info.value.problem == (
        f"line 3 follows a file's closing record ({CLOSED}) but does not open the next file ({OPENED}): a closed "
        "file takes no more records")
    w, cursor = Writer(), Cursor(None)
    cursor.follow(w.line(event=CLOSED))
    assert cursor.follow(w.line(event=OPENED))["event"] == OPENED and cursor.seq == 2


@pytest.mark.parametrize("seal", ["right", "short", "other sha256", "not a recovery"])
def test_a_torn_line_is_accepted_only_when_the_next_record_seals_it_exactly(seal: str) -> None:
    torn = b'{"seq":2,"prev":"ab'
    fields = {"event": RECOVERED, "torn_bytes": len(torn), "torn_sha256": torn_digest(torn)}
    if seal == "short":
        fields["torn_bytes"] = len(torn) - 1
    elif seal == "other sha256":
        fields["torn_sha256"] = torn_digest(torn + b"x")
    elif seal == "not a recovery":
        fields["event"] = "something_else"
    w, cursor = Writer(), Cursor(None)
    cursor.follow(w.line(request_id="a"))
    assert cursor.follow(torn) is None and cursor.pending
    if seal == "right":
        assert cursor.follow(w.line(**fields))["event"] == RECOVERED and not cursor.pending
        return
    with pytest.raises(ChainBreak) as info:
        cursor.follow(w.line(**fields))
    assert info.value.line == 2 and str(info.value) == (
        "line 2 is not a JSON audit record (and no recovery record seals it as a torn line)")


def test_line_numbers_count_from_where_the_cursor_starts() -> None:
    w = Writer()
    first, second = w.line(request_id="a"), w.line(request_id="b")
    with pytest.raises(ChainBreak) as info:
        Cursor(None).follow(second)  # a fresh cursor is at line 0: this is line 1
    assert info.value.line == 1 and str(info.value).startswith("line 1 does not follow the record before it")
    cursor = resume(None, first, line=6)  # the record is line 7 of its file
    assert cursor.line == 7 and cursor.seq == 1
    cursor.follow(second)
    assert cursor.line == 8
    with pytest.raises(ChainBreak) as info:
        resume(None, b"not json", line=4)
    assert info.value.line == 5 and str(info.value) == info.value.problem == "line 5 is not a JSON audit record"


def test_resume_counts_from_the_first_line_by_default() -> None:
    with pytest.raises(ChainBreak) as info:
        resume(None, b"not json")
    assert info.value.line == 1 and str(info.value) == "line 1 is not a JSON audit record"
