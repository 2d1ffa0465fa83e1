"""The audit trail's fast path and group commit: the bytes written are exactly the verifier's canonical JSON, and
group commit never leaves more unsynced records, or older ones, than its bounds (the loss bound on power failure)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import medinfer
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medinfer.audit import AuditError, AuditLog, verify_log
from medinfer.audit import canonical as _canonical

from ..helpers import tiny

KEY = b"k" * 32
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # any Unicode but lone surrogates
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


def _lines_are_canonical(path: Path) -> list[dict]:
    """Every line equals the canonical JSON of its record (without "hash") with the hash appended last."""
    records = []
    for line in path.read_bytes().splitlines():
        rec = json.loads(line)
        digest = rec.pop("hash")
        assert line == _canonical(rec)[:-1] + b',"hash":"' + digest.encode() + b'"}', line
        records.append(rec)
    return records


@settings(max_examples=60, deadline=None)
@given(model=text, version=text, status=st.sampled_from(["ok", "no_result", "é\"\\\n"]), reason=st.none() | text,
       request_id=st.none() | text.filter(bool), latency=floats, label=text, score=floats,
       batch=st.lists(floats, min_size=2, max_size=3), keyed=st.booleans())
def test_fast_records_are_the_canonical_json_the_verifier_derives(tmp_path_factory, model, version, status, reason,
                                                                  request_id, latency, label, score, batch,
                                                                  keyed) -> None:
    path = tmp_path_factory.mktemp("log") / "audit.jsonl"
    feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    outputs = [{"n": 1, "labels": [label], "scores": [score]}, {"n": len(batch), "scores": batch}, None]
    with AuditLog(path, key=KEY if keyed else None) as log:
        for output in outputs:
            log.record(model=model, version=version, model_sha256="0" * 64, feeds=feeds, status=status,
                       latency_us=latency, output=output, request_id=request_id, reason=reason)
        log.record(model=model, version=version, model_sha256="0" * 64, feeds=None, status=status, latency_us=1.0)
    records = _lines_are_canonical(path)
    assert [r.get("output") for r in records[:3]] == [
        json.loads(json.dumps(o)) if o is not None else None for o in outputs]
    assert records[0]["model"] == model and records[0]["version"] == version and records[0]["status"] == status
    assert verify_log(path, key=KEY if keyed else None).ok


def test_a_model_writes_canonical_records_and_unique_request_ids(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    bundle = tiny.build(tmp_path / "m")
    model = medinfer.load(bundle, audit=log)
    for i in range(50):
        model.predict(tiny.GOLDEN_X[i % 3:i % 3 + 1])
    model.predict(tiny.GOLDEN_X)
    model.try_predict(np.full((1, 3), np.nan, np.float32))
    model.audit.close()
    records = _lines_are_canonical(log)
    ids = [r["request_id"] for r in records]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    assert records[0]["output"]["labels"] == [str(medinfer.load(bundle).predict(tiny.GOLDEN_X[:1]).label)]
    assert records[-1]["status"] == "no_result" and records[-1]["reason"] == "input"


class FsyncSpy:
    """Wraps the real os.fsync and notes how many bytes of the log each call made durable."""

    def __init__(self, path: Path, fail: bool = False) -> None:
        self.path, self.fail, self.durable = path, fail, [0]
        self.real = os.fsync

    def __call__(self, fd: int) -> None:
        if self.fail:
            raise OSError(5, "Input/output error")
        size = os.fstat(fd).st_size
        self.real(fd)
        self.durable.append(size)


def _power_failure(path: Path, durable: int, tmp: Path) -> Path:
    """What a power failure leaves: the log as far as the last completed fsync."""
    copy = tmp / "after_power_failure.jsonl"
    shutil.copyfile(path, copy)
    os.truncate(copy, durable)
    return copy


def test_group_commit_never_leaves_more_than_its_record_bound_unsynced(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "audit.jsonl"
    spy = FsyncSpy(path)
    monkeypatch.setattr(os, "fsync", spy)
    bound = 5
    with AuditLog(path, fsync=True, group_ms=60_000, group_records=bound) as log:  # the window never expires here
        for i in range(23):
            log.event("tick", i=i)
            assert log.unsynced < bound
            lost = _power_failure(path, spy.durable[-1], tmp_path)
            report = verify_log(lost)
            assert report.ok and not report.torn_tail and i + 1 - report.records < bound
        assert len(spy.durable) - 1 == 23 // bound  # several records per fsync, not one each
    assert verify_log(_power_failure(path, spy.durable[-1], tmp_path)).records == 23  # close() syncs the rest


def test_group_commit_syncs_within_its_window(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "audit.jsonl"
    spy = FsyncSpy(path)
    monkeypatch.setattr(os, "fsync", spy)
    with AuditLog(path, fsync=True, group_ms=50, group_records=1000) as log:
        for i in range(3):
            log.event("tick", i=i)
        assert log.unsynced == 3 and spy.durable == [0]
        deadline = time.monotonic() + 5
        while log.unsynced and time.monotonic() < deadline:  # no further append: the flusher thread syncs
            time.sleep(0.01)
        assert log.unsynced == 0 and spy.durable[-1] == path.stat().st_size


def test_an_append_finding_the_oldest_unsynced_record_too_old_syncs_itself(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "audit.jsonl"
    spy = FsyncSpy(path)
    monkeypatch.setattr(os, "fsync", spy)
    with AuditLog(path, fsync=True, group_ms=60_000, group_records=1000) as log:
        log.event("old")
        log._oldest -= 61.0  # as if written 61 s ago (the flusher sleeps until its 60 s are up)
        log.event("new")
        assert log.unsynced == 0 and verify_log(_power_failure(path, spy.durable[-1], tmp_path)).records == 2


def test_a_failed_group_fsync_stops_the_trail_until_it_works_again(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "audit.jsonl"
    spy = FsyncSpy(path, fail=True)
    monkeypatch.setattr(os, "fsync", spy)
    log = AuditLog(path, fsync=True, group_ms=60_000, group_records=2)
    log.event("one")
    with pytest.raises(AuditError, match="durable"):
        log.event("two")  # written, but the fsync of its group failed: the caller must not return a result
    assert not log.healthy
    with pytest.raises(AuditError, match="not durable"):
        log.event("three")
    assert not log.probe()
    spy.fail = False
    assert log.probe() and log.healthy
    log.event("four")
    log.close()
    report = verify_log(path)  # one, two, two's answer withheld, audit_recovered, four
    assert report.ok and report.records == 5 and report.withheld == 1
    marker = json.loads(path.read_text().splitlines()[2])
    assert marker["event"] == "answer_withheld" and marker["records"] == [2, 2]


def test_group_commit_needs_fsync_and_positive_bounds(tmp_path: Path) -> None:
    for kwargs in ({"group_ms": 10}, {"fsync": True, "group_ms": 0}, {"fsync": True, "group_ms": 5,
                                                                      "group_records": 0}):
        with pytest.raises(ValueError, match="group commit"):
            AuditLog(tmp_path / "a.jsonl", **kwargs)


@pytest.mark.parametrize("key", [None, KEY])
@pytest.mark.parametrize("end", [None, 0, 123456])
def test_head_and_counter_documents_are_the_canonical_json_the_verifier_derives(key, end) -> None:
    from medinfer.audit.anchor import anchor_bytes
    from medinfer.audit.record import head_mac

    for raw in (anchor_bytes(key, 42, "a" * 64, end, True), anchor_bytes(key, 42, "a" * 64, end, False),
                anchor_bytes(key, 42, "a" * 64)):
        doc = json.loads(raw)
        mac = doc.pop("mac", None)
        assert _canonical({**doc, **({"mac": mac} if key else {})}) == raw
        assert mac == (head_mac(key, doc) if key else None)
