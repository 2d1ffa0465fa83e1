"""The audit trail under normal use and under attack: shared by models and processes, anchored against edits and
truncation, completed after a crash, and never silently skipped (a result that cannot be recorded is not given)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.audit import AuditLog, verify_log
from medinfer.cli import main

from ..helpers import tiny

pytestmark = pytest.mark.hostile("audit trail")
KEY = b"k" * 32


def test_two_models_share_one_chain(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    a = medinfer.load(tiny.build(tmp_path / "a"), audit=log)
    b = medinfer.load(tiny.build_sigmoid(tmp_path / "b"), audit=str(log))
    for _ in range(5):
        a.predict(tiny.GOLDEN_X)
        b.predict(tiny.GOLDEN_X)
    report = verify_log(log)
    assert report.ok and report.records == 10, report.problem
    assert a.audit is b.audit


WRITER = r"""
import os, sys, time, numpy as np, medinfer
bundle, log, n, ready, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
model = medinfer.load(bundle, audit=log)
x = np.array([[1.0, 2.0, 3.0]], np.float32)
model.predict(x)  # warm: the first append (and the session's first run) happen before the barrier
real_write = os.write


def slow_write(fd, data):  # widen the window between reading the file's end and appending to it
    time.sleep(0.0005)
    return real_write(fd, data)


os.write = slow_write
open(ready, "w").close()
while not os.path.exists(go):  # the barrier: every writer starts appending at the same moment
    time.sleep(0.0005)
for i in range(n):
    model.predict(x)
"""
WRITERS, APPENDS = 6, 60


def test_two_processes_share_one_chain(tmp_path: Path) -> None:
    """Six processes append 60 records each to one log, released together by a barrier, each write delayed by
    0.5 ms inside the writer (os.write wrapped in the child): the window between reading the file's real end and
    appending is then wide, and without the per-append flock another writer appends inside it, on any machine,
    even a one-core one (the chain then breaks in the first appends after the barrier)."""
    bundle, log, go = tiny.build(tmp_path / "m"), tmp_path / "audit.jsonl", tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(WRITERS)]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(bundle), str(log), str(APPENDS), str(r), str(go)])
             for r in ready]
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a writer did not start"
            time.sleep(0.01)
        go.touch()
        assert all(p.wait(timeout=120) == 0 for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    report = verify_log(log)
    assert report.ok and report.records == WRITERS * (APPENDS + 1), report.problem
    spans: dict[str, list[str]] = {}
    for line in log.read_text().splitlines()[WRITERS:]:
        rec = json.loads(line)
        spans.setdefault(rec["request_id"][:16], []).append(rec["time"])
    assert len(spans) == WRITERS
    latest_start, earliest_end = max(t[0] for t in spans.values()), min(t[-1] for t in spans.values())
    assert latest_start < earliest_end, "the writers did not append at the same time"


def test_a_complete_last_record_without_its_newline_is_continued(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with AuditLog(log) as writer:
        writer.event("first")
        writer.event("second")
    log.write_bytes(log.read_bytes().rstrip(b"\n"))  # e.g. a copy tool that dropped the final newline
    with AuditLog(log) as writer:
        writer.event("third")
    report = verify_log(log)
    assert report.ok and report.records == 3 and not report.torn_tail


def test_a_torn_tail_is_still_sealed(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with AuditLog(log) as writer:
        writer.event("first")
    with open(log, "ab") as fh:
        fh.write(b'{"seq":2,"prev":"abc')  # a crash mid-write
    with AuditLog(log) as writer:
        writer.event("after")
    lines = [json.loads(x) for x in log.read_text().splitlines()[2:]]
    assert lines[0]["event"] == "recovered_torn_tail" and verify_log(log).ok


def _edit_and_recompute(log: Path, key: bytes | None) -> None:
    """An attacker edits record 2 and recomputes every later hash with plain sha256 (no key)."""
    from medinfer.audit import GENESIS
    from medinfer.audit import chain_hash as _chain_hash

    records = [json.loads(x) for x in log.read_text().splitlines()]
    records[1]["status"] = "forged"
    prev = GENESIS
    out = []
    for rec in records:
        rec.pop("hash")
        rec.pop("chain", None)
        rec["prev"] = prev
        prev = _chain_hash(prev, rec, key)
        out.append(json.dumps({**rec, "hash": prev}, sort_keys=True, separators=(",", ":")))
    log.write_text("\n".join(out) + "\n")


def test_a_recomputed_chain_passes_plain_verification_but_not_the_keyed_one(tmp_path: Path) -> None:
    plain, keyed = tmp_path / "plain.jsonl", tmp_path / "keyed.jsonl"
    for path, key in ((plain, None), (keyed, KEY)):
        with AuditLog(path, key=key) as writer:
            for i in range(4):
                writer.event("e", i=i)
        _edit_and_recompute(path, None)
    assert verify_log(plain).ok  # documented limit of the plain chain (SECURITY.md)
    report = verify_log(keyed, key=KEY)
    assert not report.ok and "not keyed" in report.problem


def test_keyed_chain_verifies_only_with_its_key(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with AuditLog(log, key=KEY) as writer:
        writer.event("e")
    assert verify_log(log, key=KEY).ok
    assert not verify_log(log).ok and "keyed" in verify_log(log).problem
    assert not verify_log(log, key=b"x" * 32).ok


def test_the_head_file_detects_records_deleted_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with AuditLog(log, key=KEY, head=True) as writer:
        for i in range(5):
            writer.event("e", i=i)
    assert verify_log(log, key=KEY, head=True).ok
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n")
    assert verify_log(log, key=KEY).ok  # the chain alone cannot see it
    report = verify_log(log, key=KEY, head=True)
    assert not report.ok and "deleted from the end" in report.problem
    assert main(["audit", "verify", str(log), "--head", "--key", _keyfile(tmp_path)]) == 12


def _keyfile(tmp_path: Path) -> str:
    path = tmp_path / "audit.key"
    path.write_bytes(KEY)
    return str(path)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_an_unwritable_trail_gives_no_result_never_an_unrecorded_answer(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro, audit=AuditLog("/dev/full"))
    with pytest.raises(medinfer.AuditError, match="cannot be written"):
        model.predict(tiny.GOLDEN_X)
    out = model.try_predict(tiny.GOLDEN_X)
    assert isinstance(out, medinfer.NoResult) and out.reason == "audit"
    assert not model.audit.healthy


def test_a_closed_trail_is_a_typed_refusal(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    model = medinfer.load(tiny_bundle_ro, audit=log)
    log.close()
    assert model.try_predict(tiny.GOLDEN_X).reason == "audit"


@pytest.mark.parametrize("rid", ["\ud800", "a\x00b", "x" * 300, 42])
def test_a_request_id_that_cannot_be_recorded_is_refused_and_still_audited(tiny_bundle_ro: Path, tmp_path: Path,
                                                                         rid: object) -> None:
    log = tmp_path / "audit.jsonl"
    model = medinfer.load(tiny_bundle_ro, audit=log)
    with pytest.raises(medinfer.InputError, match="request_id"):
        model.predict(tiny.GOLDEN_X, request_id=rid)
    assert model.try_predict(tiny.GOLDEN_X, request_id=rid).reason == "input"
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert records[-1]["status"] == "no_result" and records[-1]["request_id"].startswith("refused-id:")
    assert verify_log(log).ok


@pytest.mark.parametrize("target", ["missing.jsonl", "."])
def test_verify_of_a_missing_file_or_a_folder_is_one_line(tmp_path: Path, target: str, capsys) -> None:
    assert main(["audit", "verify", str(tmp_path / target)]) == 12
    err = capsys.readouterr().err
    assert "AuditError" in err and ("does not exist" in err or "is a folder" in err)


def test_a_folder_as_trail_is_refused(tmp_path: Path) -> None:
    with pytest.raises(medinfer.AuditError, match="is a folder"):
        AuditLog(tmp_path)
    assert os.listdir(tmp_path) == []
    assert np.isfinite(0)  # nothing was created in the folder


def test_a_record_holds_the_inputs_digest_never_the_input(tmp_path: Path) -> None:
    """Privacy: an answered and a refused input leave their digest in the trail, never their values; the digest is
    sha256 over name, dtype, shape and bytes (computed here independently)."""
    import hashlib

    log = tmp_path / "audit.jsonl"
    model = medinfer.load(tiny.build(tmp_path / "m"), audit=log)
    x = np.array([[1.2345678, -2.7182817, 3.1415927]], np.float32)
    model.predict(x)
    assert model.try_predict(np.array([[9.8765432, 0.5, 7.654321e5]], np.float32)).reason == "input"
    text = log.read_text()
    for shown in ("1.23456", "2.71828", "3.14159", "9.87654", "765432", "7.65432"):
        assert shown not in text, f"{shown} (an input value) is in the audit trail"
    first = json.loads(text.splitlines()[0])
    assert first["input_sha256"] == hashlib.sha256(b"x|<f4|(1, 3)|" + x.tobytes()).hexdigest()
    assert verify_log(log).ok

