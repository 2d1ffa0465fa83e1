"""The audit writer in detail: each record kind field by field, keyed records and the head, named refusals, long logs
and torn tails, shared and forked writers, fsync, probe. These tests pin behaviours that mutation testing (``make
mutation-score``, promises/mutation.toml) found unpinned: each fails when the code it names is changed in the way the
mutant changed it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from .test_group_commit import _Fsync

KEY = b"k" * 32

TIME_US = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_every_record_kind_holds_exactly_its_fields(tmp_path: Path) -> None:
    import re

    from medinfer.audit import GENESIS, AuditLog, input_digest

    path = tmp_path / "a.jsonl"
    feeds = {"x": np.array([[1.0, 2.0, 3.0]], np.float32)}
    with AuditLog(path) as log:
        log.event("started", pid=7)
        bound = log.bind("m", "1.0", "ab" * 32)
        assert log.bind("m", "1.0", "ab" * 32) is bound  # one binding per model
        rid = bound.record(feeds, "ok", 12.345, {"n": 1, "labels": ["pos"], "scores": [0.75]})
        rid2 = bound.record(feeds, "no_result", 3.0, None, "my-id", "input")
        rid3 = log.record(model="m", version="1.0", model_sha256="ab" * 32, feeds=None, status="no_result",
                          latency_us=1.26, reason="audit", extra=5)
        rid4 = log.record(model="m", version="1.0", model_sha256="ab" * 32, feeds=feeds, status="ok", latency_us=2.0,
                          output={"n": 1, "labels": ["neg"], "scores": [0.25]})
    first, second, third, fourth, fifth = _records(path)
    assert set(first) == {"seq", "prev", "event", "time", "pid", "hash"} and first["event"] == "started"
    assert first["seq"] == 1 and first["prev"] == GENESIS and first["pid"] == 7
    assert re.fullmatch(TIME_US, first["time"])
    assert second == {"seq": 2, "prev": first["hash"], "time": second["time"], "request_id": rid, "model": "m",
                      "version": "1.0", "model_sha256": "ab" * 32, "status": "ok", "input_sha256": input_digest(feeds),
                      "latency_us": 12.3, "output": {"n": 1, "labels": ["pos"], "scores": [0.75]},
                      "hash": second["hash"]}
    assert re.fullmatch(TIME_US, second["time"])
    assert re.fullmatch(r"[0-9a-f]{32}", rid) and rid[16:] == f"{1:016x}"
    assert third["request_id"] == rid2 == "my-id" and third["reason"] == "input" and "output" not in third
    assert third["status"] == "no_result" and third["latency_us"] == 3.0
    assert third["seq"] == 3 and third["prev"] == second["hash"]
    assert fourth == {"seq": 4, "prev": third["hash"], "time": fourth["time"], "request_id": rid3, "model": "m",
                      "version": "1.0", "model_sha256": "ab" * 32, "status": "no_result", "input_sha256": None,
                      "latency_us": 1.3, "extra": 5, "reason": "audit", "hash": fourth["hash"]}
    assert rid3[:16] == rid[:16] and rid3[16:] == f"{2:016x}"  # one counter per writer, one prefix per process
    assert fifth["output"] == {"n": 1, "labels": ["neg"], "scores": [0.25]} and fifth["request_id"] == rid4
    assert rid4[16:] == f"{3:016x}"


def test_a_keyed_log_marks_every_record_and_a_head_anchors_it(tmp_path: Path) -> None:
    import hmac

    from medinfer.audit import AuditLog, canonical

    path = tmp_path / "a.jsonl"
    with AuditLog(path, key=KEY, head=True) as log:
        log.event("one")
        log.record(model="m", version="1", model_sha256="c" * 64, feeds=None, status="ok", latency_us=1.0)
        log.bind("m", "1", "c" * 64).record({"x": np.zeros((1, 3), np.float32)}, "ok", 1.0)
    records = _records(path)
    assert all(r["chain"] == "hmac-sha256" for r in records)
    head = json.loads(Path(str(path) + ".head").read_text())
    mac = head.pop("mac")
    assert head == {"records": 3, "last_hash": records[-1]["hash"], "bytes": path.stat().st_size, "counter": True}
    assert mac == hmac.new(KEY, canonical(head), "sha256").hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "a.jsonl.counter", "a.jsonl.head"]  # no temp file
    plain = tmp_path / "b.jsonl"
    with AuditLog(plain, head=True) as log:
        log.event("one")
    assert set(json.loads(Path(str(plain) + ".head").read_text())) == {"records", "last_hash", "bytes", "counter"}


def test_writer_refusals_are_named(tmp_path: Path) -> None:
    from medinfer.audit import AuditError, AuditLog

    log = AuditLog(tmp_path / "a.jsonl", head=True)
    Path(str(tmp_path / "a.jsonl") + ".head").mkdir()  # the head cannot be replaced by a file
    with pytest.raises(AuditError) as info:
        log.event("one")
    assert str(info.value) == (f"audit trail {tmp_path / 'a.jsonl'}: the head file cannot be written (Is a directory); "
                              "the record was marked withheld and its result is not returned")
    assert log.failed.startswith("head file: ") and not log.healthy
    log.close()
    assert not log.healthy and log.probe() is False
    with pytest.raises(AuditError) as info:
        log.event("two")
    assert str(info.value) == f"audit trail {tmp_path / 'a.jsonl'} is closed: nothing more can be recorded"
    log.close()  # twice is fine
    good = AuditLog(tmp_path / "b.jsonl")
    with pytest.raises(AuditError) as info:
        good.event("set", value={1, 2})
    message = str(info.value)
    assert message.startswith("an audit record cannot be encoded (") and message.endswith("; nothing was written")
    assert (tmp_path / "b.jsonl").read_text() == ""
    good.close()
    with pytest.raises(ValueError) as info:
        AuditLog(tmp_path / "c.jsonl", group_ms=5)
    assert str(info.value) == ("group commit needs fsync=True, group_ms > 0 and group_records >= 1 (got fsync=False, "
                               "group_ms=5, group_records=64)")
    (tmp_path / "d.jsonl").write_text('{"seq": 1}\n')
    with pytest.raises(AuditError) as info:
        AuditLog(tmp_path / "d.jsonl")
    assert str(info.value) == (f"audit trail {tmp_path / 'd.jsonl'}: the last complete line is not a record (10 bytes, "
                               "not a JSON object with an integer seq >= 1 and 64-character prev and hash). The writer "
                               "stopped: no more records, and no result that would need one, until the log is checked "
                               "('medinfer audit verify') and a new log is started")
    with pytest.raises(AuditError) as info:
        AuditLog(tmp_path / "d.jsonl" / "below.jsonl")
    assert str(info.value) == (f"audit trail {tmp_path / 'd.jsonl' / 'below.jsonl'}: the folder {tmp_path / 'd.jsonl'} "
                               "is not a folder; create it first (audit trails are never written to folders made on "
                               "the fly)")


def test_a_writer_continues_a_long_log_and_seals_a_torn_tail_with_its_digest(tmp_path: Path) -> None:
    from medinfer.audit import AuditLog, verify_log

    path = tmp_path / "a.jsonl"
    with AuditLog(path) as log:
        for i in range(6000):  # well over the 1 MiB tail the next writer reads
            log.event("e", i=i, pad="x" * 150)
    assert path.stat().st_size > 1 << 20
    torn = b'{"seq":6001,"prev":"00'
    with open(path, "ab") as fh:
        fh.write(torn)
    with AuditLog(path) as log:
        log.event("after")
    lines = path.read_bytes().split(b"\n")
    recovery = json.loads(lines[-3])
    assert recovery["event"] == "recovered_torn_tail" and recovery["torn_bytes"] == len(torn)
    assert recovery["torn_sha256"] == hashlib.sha256(torn).hexdigest() and recovery["seq"] == 6001
    assert json.loads(lines[-2])["event"] == "after" and json.loads(lines[-2])["seq"] == 6002
    report = verify_log(path)
    assert report.ok and report.records == 6002


def test_the_shared_writer_is_one_per_real_file_and_renewed_after_close(tmp_path: Path) -> None:
    from medinfer.audit import AuditLog

    (tmp_path / "sub").mkdir()
    a = AuditLog.shared(tmp_path / "a.jsonl")
    assert AuditLog.shared(str(tmp_path / "sub" / ".." / "a.jsonl")) is a
    a.close()
    b = AuditLog.shared(tmp_path / "a.jsonl")
    assert b is not a and b.healthy
    b.close()


def test_a_forked_child_draws_its_own_request_ids(tmp_path: Path) -> None:
    from medinfer.audit import AuditLog

    log = AuditLog(tmp_path / "a.jsonl")
    parent = log.bind("m", "1", "c" * 64).record({"x": np.zeros((1, 1), np.float32)}, "ok", 1.0)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one record, its id to the parent
        try:
            rid = log.bind("m", "1", "c" * 64).record({"x": np.zeros((1, 1), np.float32)}, "ok", 1.0)
            os.write(write, rid.encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    log.close()
    assert child[:16] != parent[:16] and child[16:] == f"{1:016x}"  # a new prefix, its own counter


def test_fsync_per_record_and_at_close(tmp_path: Path, monkeypatch) -> None:
    from medinfer.audit import AuditLog

    spy = _Fsync()
    monkeypatch.setattr(os, "fsync", spy)
    with AuditLog(tmp_path / "a.jsonl", fsync=True) as log:
        log.event("one")
        log.event("two")
        assert spy.calls == 2 and log.unsynced == 0
    spy.calls = 0
    with AuditLog(tmp_path / "b.jsonl", fsync=True, group_ms=60_000, group_records=100) as log:
        log.event("one")
        assert spy.calls == 0 and log.unsynced == 1
    assert spy.calls == 1  # close() synced the group
    spy.calls = 0
    with AuditLog(tmp_path / "c.jsonl") as log:
        log.event("one")
    assert spy.calls == 0  # fsync=False: the operating system decides


def test_probe_records_the_recovery_and_what_failed(tmp_path: Path) -> None:
    from medinfer.audit import AuditError, AuditLog

    path = tmp_path / "a.jsonl"
    log = AuditLog(path, head=True)
    head = Path(str(path) + ".head")
    head.mkdir()
    with pytest.raises(AuditError):
        log.event("one")
    failure = log.failed
    head.rmdir()
    assert log.probe() and log.healthy and log.failed is None
    assert log.probe()  # healthy: nothing written
    log.close()
    records = _records(path)
    assert [r.get("event") for r in records] == ["one", "answer_withheld", "audit_recovered"]
    assert records[1]["records"] == [1, 1] and records[2]["after"] == failure
