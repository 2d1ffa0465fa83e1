"""The audit trail against its attacker (issue 28): truncation is never laundered by the next append, an older head
put back is caught by the counter, every hostile last line is a typed refusal, the writer never chains onto a line
it did not check, keyed and plain records never mix, an answer whose head could not be written is marked withheld,
and key files are read bounded, regular files only, with one whitespace rule."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import medinfer
import pytest
from medinfer.audit import GENESIS, AuditLog, chain_hash, read_key, verify_log
from medinfer.cli import main

from ..helpers import tiny

pytestmark = pytest.mark.hostile("audit trail")
KEY = b"k" * 32


def _anchored(path: Path, n: int) -> AuditLog:
    log = AuditLog(path, key=KEY, head=True)
    for i in range(n):
        log.event("e", i=i)
    return log


def _cut(path: Path, how: str) -> None:
    """Truncate the log: drop its last record, or cut the last record in half."""
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[:last] if how == "drop_last" else data[:last + (len(data) - last) // 2])


# -- truncation and replay --------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["drop_last", "half_last"])
def test_truncation_stops_the_writer_instead_of_being_laundered(tmp_path: Path, how: str) -> None:
    path = tmp_path / "audit.jsonl"
    log = _anchored(path, 5)
    _cut(path, how)
    with pytest.raises(medinfer.AuditError, match="truncated"):
        log.event("next")  # the ordinary next append: it must not continue from the shortened file
    assert not log.healthy and not log.probe()
    with pytest.raises(medinfer.AuditError, match="stopped"):
        log.event("again")  # and it stays stopped
    log.close()
    with pytest.raises(medinfer.AuditError, match="truncated"):
        AuditLog(path, key=KEY, head=True)  # a new writer (a restart) refuses it too
    assert not verify_log(path, key=KEY, head=True).ok
    assert main(["audit", "verify", str(path), "--key", _keyfile(tmp_path), "--head"]) == 12


def test_an_older_head_put_back_with_its_prefix_is_a_replay(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _anchored(path, 3)
    old_log, old_head = path.read_bytes(), (tmp_path / "audit.jsonl.head").read_bytes()
    for i in range(3):
        log.event("later", i=i)
    log.close()
    path.write_bytes(old_log)  # the log cut back to the old head's prefix, and that genuine head put back
    (tmp_path / "audit.jsonl.head").write_bytes(old_head)
    assert verify_log(path, key=KEY).ok  # chain and head agree with each other ...
    report = verify_log(path, key=KEY, head=True)
    assert not report.ok and "replay" in report.problem  # ... but the counter kept apart remembers 6
    with pytest.raises(medinfer.AuditError, match="replay"):
        AuditLog(path, key=KEY, head=True)


def test_the_counter_can_live_elsewhere_and_must_not_go_missing(tmp_path: Path) -> None:
    path, counter = tmp_path / "audit.jsonl", tmp_path / "secure" / "audit.counter"
    counter.parent.mkdir()
    with AuditLog(path, key=KEY, head=True, counter=counter) as log:
        log.event("e")
    assert counter.stat().st_size > 0 and not (tmp_path / "audit.jsonl.counter").exists()
    assert verify_log(path, key=KEY, head=True, counter=counter).ok
    counter.unlink()
    report = verify_log(path, key=KEY, head=True, counter=counter)
    assert not report.ok and "counter" in report.problem


# -- hostile last lines --------------------------------------------------------------------------------------
HOSTILE = {
    "null hash": b'{"hash":null,"seq":3}',
    "seq 1e400": b'{"hash":"' + b"0" * 64 + b'","prev":"' + b"0" * 64 + b'","seq":1e400}',
    "deep nesting": b"[" * 200_000,
    "huge line": b'{"x":"' + b"a" * (3 << 20) + b'"}',
    "not utf-8": b'{"hash":"\xff\xfe","seq":2}',
    "NUL": b"\x00" * 64,
    "bool seq": b'{"hash":"' + b"0" * 64 + b'","prev":"' + b"0" * 64 + b'","seq":true}',
}


@pytest.mark.parametrize("line", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_last_line_is_a_typed_refusal_everywhere(tmp_path: Path, tiny_bundle_ro: Path,
                                                           line: bytes) -> None:
    path = tmp_path / "audit.jsonl"
    model = medinfer.load(tiny_bundle_ro, audit=AuditLog(path))
    assert isinstance(model.try_predict(tiny.GOLDEN_X), medinfer.Prediction)
    with open(path, "ab") as fh:
        fh.write(line + b"\n")
    out = model.try_predict(tiny.GOLDEN_X)  # documented never to raise
    assert isinstance(out, medinfer.NoResult) and out.reason == "audit"
    with pytest.raises(medinfer.AuditError):
        model.predict(tiny.GOLDEN_X)
    assert not model.audit.healthy
    model.audit.close()
    with pytest.raises(medinfer.AuditError):
        medinfer.load(tiny_bundle_ro, audit=path)  # a new process opening it
    unavailable = medinfer.load(tiny_bundle_ro, audit=path, on_error="no_result")
    assert unavailable.try_predict(tiny.GOLDEN_X).reason == "audit"
    assert not verify_log(path).ok
    assert main(["audit", "verify", str(path)]) == 12
    assert main(["audit", "drift", str(path)]) == 12


# -- the writer chains only onto lines it checked; keyed and plain never mix -------------------------------------
def _forged(prev: str, seq: int) -> bytes:
    body = {"seq": seq, "prev": prev, "event": "forged"}
    return json.dumps({**body, "hash": chain_hash(prev, body)}, separators=(",", ":")).encode()


def test_the_writer_never_chains_onto_a_line_it_did_not_check(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.event("genuine")
    with open(path, "ab") as fh:
        fh.write(_forged("f" * 64, 2) + b"\n")  # a well-formed record whose prev is not the last hash
    with pytest.raises(medinfer.AuditError, match="does not follow"):
        log.event("after")
    log.close()
    with pytest.raises(medinfer.AuditError, match="do not verify"):
        AuditLog(path)  # at open too
    report = verify_log(path)
    assert not report.ok and report.line == 2 and report.records == 1  # every genuine record is still verifiable


def test_records_of_another_process_are_checked_then_continued(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ours, theirs = AuditLog(path), AuditLog(path)  # two writers as two processes would be
    ours.event("a")
    theirs.event("b")
    theirs.event("c")
    ours.event("d")  # follows b and c (checked), then appends
    report = verify_log(path)
    assert report.ok and report.records == 4


@pytest.mark.parametrize(("first", "second"), [(KEY, None), (None, KEY)], ids=["keyed-then-plain", "plain-then-keyed"])
def test_keyed_and_plain_records_never_mix_in_one_file(tmp_path: Path, first: bytes | None,
                                                       second: bytes | None) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, key=first) as log:
        log.event("e")
    with pytest.raises(medinfer.AuditError, match="keyed and plain records never mix"):
        AuditLog(path, key=second)
    assert main(["audit", "rotate", str(path)] + (["--key", _keyfile(tmp_path, second)] if second else [])) == 12
    # one process: the shared writer of a file refuses to be asked for the other mode
    AuditLog.shared(tmp_path / "shared.jsonl", key=first)
    with pytest.raises(medinfer.UsageError, match="other options"):
        AuditLog.shared(tmp_path / "shared.jsonl", key=second if second is not None else b"z" * 32)


# -- an answer never delivered is never an unmarked ok record -------------------------------------------------
def test_a_failed_head_write_marks_the_record_withheld(tmp_path: Path, tiny_bundle_ro: Path) -> None:
    path = tmp_path / "audit.jsonl"
    model = medinfer.load(tiny_bundle_ro, audit=AuditLog(path, key=KEY, head=True))
    assert isinstance(model.try_predict(tiny.GOLDEN_X), medinfer.Prediction)
    blocker = tmp_path / f".audit.jsonl.head.{os.getpid()}.tmp"
    blocker.mkdir()  # the head's temporary file cannot be created: the head write fails (a real OS error)
    out = model.try_predict(tiny.GOLDEN_X)
    assert isinstance(out, medinfer.NoResult) and out.reason == "audit"
    blocker.rmdir()
    records = [json.loads(x) for x in path.read_text().splitlines()]
    withheld = {s for r in records if r.get("event") == "answer_withheld"
                for s in range(r["records"][0], r["records"][1] + 1)}
    head = json.loads((tmp_path / "audit.jsonl.head").read_text())
    delivered_or_marked = [r["seq"] <= head["records"] or r["seq"] in withheld
                           for r in records if r.get("status") == "ok"]
    assert len(delivered_or_marked) == 2 and all(delivered_or_marked)
    report = verify_log(path, key=KEY)
    assert report.ok and report.withheld == 1


# -- key files ------------------------------------------------------------------------------------------------
def _keyfile(tmp_path: Path, data: bytes = KEY) -> str:
    path = tmp_path / "audit.key"
    path.write_bytes(data)
    return str(path)


def _finishes(fn, *args) -> BaseException | object:
    """Run ``fn`` in a thread; what it returned or raised, or an AssertionError if it hangs."""
    box: list = []

    def run() -> None:
        try:
            box.append(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - what it raised is the result
            box.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert box, f"{fn.__name__} hung"
    return box[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_key_is_refused_without_waiting_even_when_it_holds_a_key(tmp_path: Path) -> None:
    fifo = tmp_path / "audit.key"
    os.mkfifo(fifo)
    assert isinstance(_finishes(read_key, fifo), medinfer.AuditError)  # no writer: would block a plain open
    holder = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    os.write(holder, KEY)  # a FIFO that does hold 32 bytes: still not a key file
    try:
        got = _finishes(read_key, fifo)
        assert isinstance(got, medinfer.AuditError) and "regular file" in str(got)
    finally:
        os.close(holder)


@pytest.mark.parametrize("source", ["/dev/zero", "big"])
def test_a_key_file_is_read_bounded(tmp_path: Path, source: str) -> None:
    if source == "big":
        source = _keyfile(tmp_path, os.urandom(16) * 1024)  # 16 KiB: no key file is that large
    elif not Path(source).exists():
        pytest.skip("needs /dev/zero")
    got = _finishes(read_key, source)
    assert isinstance(got, medinfer.AuditError), got


@pytest.mark.parametrize("key", [b"  " + KEY + b"\n", KEY + b"\r\n", b"\t" + KEY])
def test_key_bytes_and_key_files_follow_one_whitespace_rule(tmp_path: Path, key: bytes) -> None:
    written_with_bytes, written_with_file = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    keyfile = _keyfile(tmp_path, key)
    with AuditLog(written_with_bytes, key=key) as log:
        log.event("e")
    with AuditLog(written_with_file, key=keyfile) as log:
        log.event("e")
    for path in (written_with_bytes, written_with_file):
        assert verify_log(path, key=keyfile).ok and verify_log(path, key=key).ok and verify_log(path, key=KEY).ok


def test_the_old_formats_and_a_hand_built_plain_log_still_continue(tmp_path: Path) -> None:
    """A log written before these checks (plain records, no rotation) is continued, not refused."""
    bodies = [{"event": "server_start", "time": "2023-11-14T22:13:20Z"}, {"event": "x", "time": "2023-11-14T22:13:21Z"}]
    prev, lines = GENESIS, []
    for seq, body in enumerate(bodies, 1):
        full = {"seq": seq, "prev": prev, **body}
        prev = chain_hash(prev, full)
        lines.append(json.dumps({**full, "hash": prev}, sort_keys=True, separators=(",", ":")))
    path = tmp_path / "old.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with AuditLog(path) as log:
        log.event("new")
    assert verify_log(path).ok and verify_log(path).records == 3


# -- fork ---------------------------------------------------------------------------------------------------
def _reap(pids: list[int], seconds: float) -> tuple[int, int]:
    """Wait for the children; returns (hung, failed) and kills the hung ones."""
    deadline, left, failed = time.monotonic() + seconds, set(pids), 0
    while left and time.monotonic() < deadline:
        for pid in list(left):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                left.discard(pid)
                failed += os.waitstatus_to_exitcode(status) != 0
        time.sleep(0.01)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return len(left), failed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12 warns of fork() with threads: the point here
def test_fork_while_another_thread_appends_never_deadlocks_the_child(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            log.event("parent")
    thread = threading.Thread(target=hammer)
    thread.start()
    pids = []
    try:
        for i in range(30):
            pid = os.fork()
            if pid == 0:  # the child: one append through the writer it inherited, then out
                code = 1
                try:
                    log.event("child", i=i)
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
    finally:
        stop.set()
        thread.join()
    hung, failed = _reap(pids, 30)
    assert (hung, failed) == (0, 0)
    log.event("parent, after")
    report = verify_log(path)  # children appended through their own descriptions, under the flock: one chain
    assert report.ok, report.problem
    assert sum('"event":"child"' in line for line in path.read_text().splitlines()) == 30


# -- drift verifies before it counts --------------------------------------------------------------------------
def _drifting(path: Path) -> None:
    """Five records, each with 8 of 10 samples out of domain: drift alerts above a 5 % share."""
    with AuditLog(path) as log:
        for _ in range(5):
            log.record(model="m", version="1", model_sha256="0" * 64, feeds=None, status="ok", latency_us=1.0,
                       output={"n": 10, "out_of_domain": 8, "domain_scores": [2.0] * 10})


def test_drift_refuses_a_log_with_an_injected_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _drifting(path)
    assert main(["audit", "drift", str(path), "--max-share", "0.05"]) == 14
    last = json.loads(path.read_text().splitlines()[-1])
    diluting = {**last, "seq": last["seq"] + 1, "prev": last["hash"], "hash": "f" * 64,
                "output": {"n": 100000, "out_of_domain": 0, "domain_scores": [0.1]}}  # plausible, but not chained
    with open(path, "a") as fh:
        fh.write(json.dumps(diluting) + "\n")
    assert main(["audit", "drift", str(path), "--max-share", "0.05"]) == 12  # not 0: the alert is not suppressed


def test_drift_refuses_a_count_that_is_not_one_even_in_a_recomputed_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _drifting(path)
    records = [json.loads(x) for x in path.read_text().splitlines()]
    records[0]["output"]["out_of_domain"] = -1000
    prev, lines = GENESIS, []
    for rec in records:  # the plain chain's documented limit: recomputed, it verifies
        rec.pop("hash")
        rec["prev"] = prev
        prev = chain_hash(prev, rec)
        lines.append(json.dumps({**rec, "hash": prev}))
    path.write_text("\n".join(lines) + "\n")
    assert verify_log(path).ok
    assert main(["audit", "drift", str(path), "--max-share", "0.05"]) == 12


def test_an_anchored_log_is_continued_only_anchored(tmp_path: Path) -> None:
    """A writer without its head would leave the head behind (and its records later look unanchored)."""
    path = tmp_path / "audit.jsonl"
    _anchored(path, 2).close()
    with pytest.raises(medinfer.AuditError, match="anchored"):
        AuditLog(path, key=KEY)
    assert main(["audit", "rotate", str(path), "--key", _keyfile(tmp_path)]) == 0  # the CLI keeps it anchored
    report = verify_log(path, key=KEY, head=True)
    assert report.ok and report.unanchored == 0


def test_records_written_after_the_heads_anchor_are_marked_withheld_at_open(tmp_path: Path) -> None:
    """A writer that died after writing a record but before its head: its answer was never returned."""
    path = tmp_path / "audit.jsonl"
    log = _anchored(path, 2)
    anchors = {p: p.read_bytes() for p in (tmp_path / "audit.jsonl.head", tmp_path / "audit.jsonl.counter")}
    log.record(model="m", version="1", model_sha256="0" * 64, feeds=None, status="ok", latency_us=1.0)
    log.close()
    for p, data in anchors.items():  # as the crash left them: head and counter still at record 2
        p.write_bytes(data)
    with AuditLog(path, key=KEY, head=True) as log:
        log.event("after")
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert records[3]["event"] == "answer_withheld" and records[3]["records"] == [3, 3]
    report = verify_log(path, key=KEY, head=True)
    assert report.ok and report.withheld == 1
