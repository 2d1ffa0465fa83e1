"""The audit chain's verifier in detail: complete reports for every outcome, head checks, device keys, the input digest.
These tests pin behaviours that mutation testing (``make mutation-score``, promises/mutation.toml) found unpinned:
each fails when the code it names is changed in the way the mutant changed it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

KEY = b"k" * 32


def _log(path: Path, n: int = 3, first: int = 0, **options) -> list[str]:
    from medinfer.audit import AuditLog

    with AuditLog(path, **options) as log:
        for i in range(first, first + n):
            log.event("e", i=i)
    return path.read_text().splitlines()


def _hash_of(line: str) -> str:
    return json.loads(line)["hash"]


def test_every_verify_outcome_is_a_complete_report(tmp_path: Path) -> None:
    """The whole report (ok, records, last good hash, problem, line, torn tail, keyed, head checked) for each
    outcome, so no field can be wrong unnoticed."""
    from medinfer.audit import GENESIS, AuditReport, verify_log

    plain = tmp_path / "plain.jsonl"
    lines = _log(plain)
    P = ("plain.jsonl",)
    assert verify_log(plain) == AuditReport(True, 3, _hash_of(lines[2]), files=P)
    plain.write_text("\n".join(lines) + "\n" + '{"seq":4,"pr')  # a torn tail after three complete records
    assert verify_log(plain) == AuditReport(True, 3, _hash_of(lines[2]), torn_tail=True, files=P)
    plain.write_text("\n".join([lines[0], "not json", lines[2]]) + "\n")
    assert verify_log(plain) == AuditReport(False, 1, _hash_of(lines[0]), "line 2 is not a JSON audit record (and no "
                                            "recovery record seals it as a torn line)", 2, file="plain.jsonl")
    record = json.loads(lines[1])
    record["seq"] = 7
    from medinfer.audit import chain_hash

    record.pop("hash")
    record["hash"] = chain_hash(_hash_of(lines[0]), record)
    plain.write_text("\n".join([lines[0], json.dumps(record), lines[2]]) + "\n")
    assert verify_log(plain) == AuditReport(False, 1, _hash_of(lines[0]), "line 2 has seq 7, expected 2", 2,
                                            file="plain.jsonl")
    plain.write_text("")
    assert verify_log(plain) == AuditReport(True, 0, GENESIS, files=P)

    keyed = tmp_path / "keyed.jsonl"
    klines = _log(keyed, key=KEY)
    K = ("keyed.jsonl",)
    assert verify_log(keyed, key=KEY) == AuditReport(True, 3, _hash_of(klines[2]), keyed=True, files=K)
    assert verify_log(keyed) == AuditReport(False, 0, GENESIS, "line 1 is keyed (hmac-sha256): verify or continue it "
                                            "with the device key (--key); keyed and plain records never mix in one "
                                            "log", 1, file="keyed.jsonl")
    assert verify_log(_plain_copy(tmp_path), key=KEY) == AuditReport(
        False, 0, GENESIS, "line 1 is not keyed although a key was given: it was written or recomputed without the "
        "device key (keyed and plain records never mix in one log)", 1, False, True, file="plain_copy.jsonl")
    edited = klines[1].replace('"i":1', '"i":9')
    keyed.write_text("\n".join([klines[0], edited, klines[2]]) + "\n")
    assert verify_log(keyed, key=KEY) == AuditReport(False, 1, _hash_of(klines[0]), "line 2 was edited: its content "
                                                     "does not match its hash", 2, False, True, file="keyed.jsonl")
    keyed.write_text("\n".join([klines[0], klines[2]]) + "\n")
    assert verify_log(keyed, key=KEY) == AuditReport(
        False, 1, _hash_of(klines[0]), "line 2 does not follow the record before it: a record was deleted, inserted "
        "or reordered", 2, False, True, file="keyed.jsonl")


def _plain_copy(tmp_path: Path) -> Path:
    path = tmp_path / "plain_copy.jsonl"
    _log(path, 2)
    return path


def test_the_head_file_checks_are_complete_reports(tmp_path: Path) -> None:
    from medinfer.audit import GENESIS, AuditError, AuditReport, verify_log

    log = tmp_path / "a.jsonl"
    lines = _log(log, key=KEY, head=True)
    head = Path(str(log) + ".head")
    A = ("a.jsonl",)
    assert verify_log(log, key=KEY, head=True) == AuditReport(True, 3, _hash_of(lines[2]), keyed=True,
                                                              head_checked=True, files=A)
    assert verify_log(log, key=KEY) == AuditReport(True, 3, _hash_of(lines[2]), keyed=True, files=A)  # no head asked
    good = head.read_text()
    doc = json.loads(good)
    assert doc["records"] == 3 and doc["last_hash"] == _hash_of(lines[2]) and doc["bytes"] == log.stat().st_size
    head.write_text(json.dumps({**doc, "records": 2}))  # edited without the key
    assert verify_log(log, key=KEY, head=True) == AuditReport(  # the head is checked before any record
        False, 0, GENESIS, "a.jsonl.head was not written with this key (or was edited)", None, False, True,
        True)
    head.write_text("[1, 2]")
    assert verify_log(log, key=KEY, head=True).problem == "a.jsonl.head is not a head document"
    head.write_text(good)
    log.write_text("\n".join(lines[:2]) + "\n")
    report = verify_log(log, key=KEY, head=True)
    assert report == AuditReport(False, 2, _hash_of(lines[1]), "the log has 2 records but its head anchors 3: records "
                                 "were deleted from the end", None, False, True, True, A)
    other = tmp_path / "b.jsonl"  # another log with as many records: the head's hash does not match
    olines = _log(other, first=10, key=KEY)
    log.write_text("\n".join(olines) + "\n")
    assert verify_log(log, key=KEY, head=True).problem == ("record 3 does not carry the hash its head anchors: the "
                                                           "log was rewritten")
    head.unlink()
    with pytest.raises(AuditError) as info:
        verify_log(log, head=True, key=KEY)
    assert str(info.value) == (f"{head} does not exist: the log was not written with head=True, or the head was "
                               "removed")
    plain = tmp_path / "c.jsonl"
    plines = _log(plain, head=True)  # an unkeyed head: no mac, still checked
    assert verify_log(plain, head=True) == AuditReport(True, 3, _hash_of(plines[2]), head_checked=True,
                                                        files=("c.jsonl",))


def test_verify_refuses_what_is_not_a_log_in_one_line(tmp_path: Path) -> None:
    from medinfer.audit import AuditError, verify_log

    with pytest.raises(AuditError) as info:
        verify_log(tmp_path / "none.jsonl")
    assert str(info.value) == (f"audit log {tmp_path / 'none.jsonl'} does not exist; give the JSONL file written by "
                               "medinfer (e.g. audit.jsonl)")
    with pytest.raises(AuditError) as info:
        verify_log(tmp_path)
    assert str(info.value) == (f"audit log {tmp_path} is a folder; give the JSONL file written by medinfer (e.g. "
                               "audit.jsonl)")


def test_a_device_key_comes_from_bytes_or_a_file_of_at_least_16_bytes(tmp_path: Path) -> None:
    from medinfer.audit import AuditError, read_key

    assert read_key(b"x" * 16) == b"x" * 16
    keyfile = tmp_path / "audit.key"
    keyfile.write_bytes(b"  " + b"y" * 20 + b"\n")
    assert read_key(keyfile) == b"y" * 20 and read_key(str(keyfile)) == b"y" * 20  # whitespace around it ignored
    with pytest.raises(AuditError) as info:
        read_key(b"x" * 15)
    assert str(info.value) == "an audit key needs at least 16 bytes (e.g. head -c 32 /dev/urandom > audit.key)"
    with pytest.raises(AuditError) as info:
        read_key(tmp_path / "missing.key")
    assert str(info.value) == f"audit key {tmp_path / 'missing.key'} cannot be read (No such file or directory)"


def test_the_input_digest_covers_names_dtypes_shapes_and_values_of_every_input() -> None:
    from medinfer.audit import input_digest

    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], np.int64)

    def by_hand(*parts: tuple[str, np.ndarray]) -> str:
        h = hashlib.sha256()
        for name, arr in parts:
            h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
            if arr.dtype.kind in "OU":
                for item in arr.reshape(-1).tolist():
                    h.update(str(item).encode("utf-8", "surrogatepass") + b"\x00")
            else:
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    assert input_digest({"x": a}) == by_hand(("x", a))
    assert input_digest({"z": b, "a": a}) == by_hand(("a", a), ("z", b))  # several inputs: sorted by name
    assert input_digest({"x": a.T}) == by_hand(("x", a.T))  # not contiguous: its values in C order
    text = np.array(["ok", "caf\u00e9", "\ud800"], dtype=object)  # a lone surrogate is digested, not refused
    assert input_digest({"t": text}) == by_hand(("t", text))
    assert input_digest({"t": np.array(["ok"])}) == by_hand(("t", np.array(["ok"])))
    assert input_digest({"x": [[1.0, 2.0]]}) == by_hand(("x", np.asarray([[1.0, 2.0]])))
    assert input_digest({"x": a}) != input_digest({"x": a.reshape(3, 2)}) != input_digest({"y": a})
