"""Tests written to kill surviving mutants of the device core (``make mutation-score``, promises/mutation.json):
each pins a behaviour that a mutant changed without any other test noticing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import medinfer
import numpy as np
import pytest

from ..helpers import tiny


def test_a_pinned_file_in_a_subfolder_is_part_of_a_valid_bundle(tmp_path: Path) -> None:
    """Real bundles pin ``plots/roc.png``: its folder is needed, not an unpinned extra."""
    bundle = tiny.build(tmp_path / "m", extra_files={"plots/roc.png": (b"\x89PNG fake", "plot"),
                                                     "plots/pr.png": (b"\x89PNG fake 2", "plot")})
    assert medinfer.load(bundle).predict(tiny.GOLDEN_X).labels.tolist() == ["positive", "positive", "negative"]


# -- medinfer.decision ------------------------------------------------------------------------------------------
def test_which_column_scores_the_positive_label_in_every_layout() -> None:
    from medinfer.decision import score_column

    binary = "binary_classification"
    assert score_column(binary, ("neg", "pos"), "pos", ("N",)) is None  # one score per sample, no class axis
    assert score_column(binary, ("neg", "pos"), "pos", ("N", "C")) == 1  # a symbolic class axis: one per label
    assert score_column(binary, ("pos", "neg"), "pos", ("N", "C")) == 0
    assert score_column(binary, ("neg", "pos"), "pos", ("N", 1, 2)) == 1  # the LAST axis holds the classes
    assert score_column(binary, ("neg", "pos"), None, ("N", 2)) == 1  # no positive label: the last label
    assert score_column(binary, ("neg", "pos"), "other", ("N", 2)) == 1  # an unknown one: the last label too
    assert score_column("regression", None, None, ("N", 1)) is None
    assert score_column("multiclass_classification", ("a", "b", "c"), None, ("N", 3)) is None


def test_scores_of_keeps_what_is_already_one_score_per_sample() -> None:
    from medinfer.decision import scores_of

    flat = np.array([0.25, 0.75], np.float32)
    assert scores_of("regression", flat, None) is flat  # (N,) regression values pass unchanged
    column = np.array([[1.5], [2.5]], np.float32)
    np.testing.assert_array_equal(scores_of("regression", column, None), [1.5, 2.5])
    single_class = np.array([[0.4], [0.6]], np.float32)
    assert scores_of("multiclass_classification", single_class, None).shape == (2, 1)  # probabilities stay (N, C)
    np.testing.assert_array_equal(scores_of("binary_classification", column, None), [1.5, 2.5])


def test_decide_defaults_to_label_index_one_for_the_positive_class() -> None:
    from medinfer.decision import decide

    assert decide("binary_classification", np.array([0.9, 0.1, 0.5])).tolist() == [1, 0, 1]
    assert decide("binary_classification", np.array([0.6]), 0.7).tolist() == [0]
    assert decide("binary_classification", np.array([0.7]), 0.7).tolist() == [1]
    values = np.array([3.5, -1.0])
    assert decide("regression", values) is values


# -- medinfer.integrity ---------------------------------------------------------------------------------------------
def _pins(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())["files"]


def test_an_altered_or_truncated_or_missing_file_is_named_with_both_digests_or_sizes(tmp_path: Path) -> None:
    """The refusal says which file, what it is now, what the manifest pins, and what to do (exact messages)."""
    bundle = tiny.build(tmp_path / "m")
    graph = bundle / "model.onnx"
    original = graph.read_bytes()
    graph.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    actual, pinned = hashlib.sha256(graph.read_bytes()).hexdigest(), _pins(bundle)["model.onnx"]["sha256"]
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: file 'model.onnx' has sha256 {actual[:16]}…, the manifest pins "
                               f"{pinned[:16]}…: the file was altered; restore the bundle from its source")
    graph.write_bytes(original[:100])
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: file 'model.onnx' has 100 bytes, the manifest pins {len(original)}: the "
                               "file was altered or truncated; restore the bundle from its source")
    graph.unlink()
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: file 'model.onnx' is pinned by the manifest but missing; restore the "
                               "bundle from its source")


def test_a_special_file_is_refused_by_its_name(tmp_path: Path) -> None:
    """The reader's refusal names the pinned file and what it is now (a pinned file that became a folder)."""
    bundle = tiny.build(tmp_path / "m")
    (bundle / "golden.npz").unlink()
    (bundle / "golden.npz").mkdir()
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: file 'golden.npz' is a folder, not a regular file; restore the bundle "
                               "from its source")


def test_unpinned_entries_are_counted_and_an_unpinned_folder_is_named(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "m", extra_files={"plots/roc.png": (b"png", "plot")})
    for name in ("a.onnx", "b.onnx", "c.onnx"):
        (bundle / name).write_bytes(b"x")
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: 'a.onnx' is not pinned by the manifest (and 2 more); a bundle holds only "
                               "the files its manifest pins: remove it or re-export the bundle")
    (bundle / "c.onnx").unlink()
    with pytest.raises(medinfer.IntegrityError, match=r"'a.onnx' is not pinned by the manifest \(and 1 more\); a"):
        medinfer.load(bundle)
    for name in ("a.onnx", "b.onnx"):
        (bundle / name).unlink()
    (bundle / "empty").mkdir()
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: 'empty/' is not pinned by the manifest; a bundle holds only the files its "
                               "manifest pins: remove it or re-export the bundle")


def test_files_kept_by_verify_are_returned_whole_whatever_their_size(tmp_path: Path) -> None:
    """verify_files hands back the very bytes it hashed: also for a file of several read blocks (3 MiB)."""
    from medinfer.integrity import verify_files
    from medinfer.manifest import decode_manifest, read_manifest_bytes

    big = np.random.default_rng(0).bytes(3 << 20)  # three read blocks
    two = np.random.default_rng(1).bytes(3 << 19)  # two read blocks
    bundle = tiny.build(tmp_path / "m", extra_files={"plots/big.bin": (big, "other"), "plots/two.bin": (two, "other")})
    manifest = decode_manifest(read_manifest_bytes(bundle))
    kept = verify_files(bundle, manifest, keep=("plots/big.bin", "plots/two.bin", "golden.npz"), seal=("model.onnx",))
    try:
        assert kept["plots/big.bin"] == big and kept["plots/two.bin"] == two
        assert kept["golden.npz"] == (bundle / "golden.npz").read_bytes()
        assert kept["model.onnx"].read() == (bundle / "model.onnx").read_bytes()
    finally:
        kept["model.onnx"].close()


_CONTRACT_KEYS = ("name", "version", "task", "inputs", "outputs", "labels", "decision")


def test_the_contract_digest_is_sha256_of_the_canonical_contract_fields() -> None:
    """The format bundles in the field carry in their graph's metadata (computed here independently): sha256 of
    the sorted, compact JSON of exactly these seven fields; anything else in the manifest is left out."""
    from medinfer.integrity import contract_digest

    doc = {"labels": ["b", "a"], "files": {"x": 1}, "version": "1.2", "name": "n", "task": "regression",
           "decision": {"threshold": 0.25}, "inputs": [{"name": "x"}], "outputs": [{"name": "y", "é": "ü"}],
           "metrics": {"auc": 0.9}}
    part = {k: doc[k] for k in _CONTRACT_KEYS}
    want = hashlib.sha256(json.dumps(part, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert contract_digest(doc) == want
    assert contract_digest({**doc, "files": {}, "metrics": {}}) == want
    partial = {"name": "n"}
    assert contract_digest(partial) == hashlib.sha256(json.dumps(
        {k: partial.get(k) for k in _CONTRACT_KEYS}, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_the_variant_contract_digest_covers_inputs_outputs_windows_of_and_max_elements() -> None:
    from medinfer.integrity import variant_contract_digest
    from medinfer.manifest import TensorSpec, Variant
    from medinfer.schema import to_json

    v = Variant(file="model.slice.onnx", inputs=(TensorSpec("hu", "float32", (1, "H", "W", 1)),),
                outputs=(TensorSpec("probability", "float32", ("K", 1)),), windows_of="default", max_elements=4096)
    part = {k: to_json(getattr(v, k)) for k in ("inputs", "outputs", "windows_of", "max_elements")}
    want = hashlib.sha256(json.dumps(part, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert variant_contract_digest(v) == want
    import dataclasses

    for change in ({"max_elements": 4097}, {"windows_of": "int8"}, {"outputs": ()}, {"inputs": ()}):
        assert variant_contract_digest(dataclasses.replace(v, **change)) != want, change
    assert variant_contract_digest(dataclasses.replace(v, file="other.onnx", precision="int8")) == want


def test_the_outputs_digest_is_sha256_of_name_dtype_shape_and_bytes_in_order() -> None:
    from medinfer.integrity import outputs_digest

    outs = {"scores": np.array([[0.25], [1.5]], np.float32), "labels": np.array(["no", "yes"], dtype=object)}

    def by_hand(order: tuple[str, ...]) -> str:
        h = hashlib.sha256()
        for name in order:
            arr = outs[name]
            h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
            h.update("\x00".join(map(str, arr.ravel().tolist())).encode() if arr.dtype.kind in "OU" else arr.tobytes())
        return h.hexdigest()

    assert outputs_digest(outs) == by_hand(("labels", "scores"))  # sorted by name when no order is given
    assert outputs_digest(outs, ("scores", "labels")) == by_hand(("scores", "labels"))
    text = {"labels": np.array(["no", "yes"])}  # a numpy str array digests like the object one
    assert outputs_digest(text) == hashlib.sha256(b"labels|<U3|(2,)|no\x00yes").hexdigest()


@pytest.mark.parametrize("field,edit", [
    ("version", lambda d: d.update(version="9.9.9")),
    ("task", lambda d: d.update(task="multiclass_classification")),
    ("inputs", lambda d: d["inputs"][0].update(units="mmol/L")),
    ("outputs", lambda d: d["outputs"][1].update(description="edited")),
    ("labels", lambda d: d.update(labels=["positive", "negative"])),
    ("decision", lambda d: d["decision"].update(threshold=0.75)),
])
def test_a_contract_field_edited_after_export_is_refused(tmp_path: Path, field: str, edit) -> None:
    """Every field of the contract is covered by the digest the graph carries: editing one in manifest.json (the
    files still match their pins) is refused before a session runs."""
    bundle = tiny.build(tmp_path / "m")
    path = bundle / "manifest.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(medinfer.IntegrityError, match="contract_sha256|medinfer.version"):
        medinfer.load(bundle)


# -- medinfer.failsafe ---------------------------------------------------------------------------------------------
def test_no_result_as_a_document() -> None:
    out = medinfer.NoResult("timeout", "no result within 5 ms", "m", "1.0", "req-1", "DeadlineExceeded")
    assert out.to_dict() == {"outcome": "NO_RESULT", "reason": "timeout", "error": "DeadlineExceeded",
                             "message": "no result within 5 ms", "model": "m", "version": "1.0", "request_id": "req-1"}
    assert not out.ok and out.labels is None and out.scores is None


def test_an_unavailable_model_answers_no_result_naming_the_bundle_and_the_error(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "tiny_logistic")
    (bundle / "golden.npz").write_bytes(b"changed")
    model = medinfer.load(str(bundle) + "/", on_error="no_result")
    assert isinstance(model, medinfer.UnavailableModel) and not model.ok
    assert model.path == str(bundle) + "/" and model.name == "tiny_logistic" and model.version is None
    assert model.reason == "integrity" and isinstance(model.error, medinfer.IntegrityError)
    out = model.try_predict(tiny.GOLDEN_X)
    assert (out.reason, out.model, out.version, out.request_id, out.error) == \
        ("integrity", "tiny_logistic", None, None, "IntegrityError")
    assert out.message == f"model unavailable: {model.error}"
    with pytest.raises(medinfer.IntegrityError):
        model.predict(tiny.GOLDEN_X)
    from medinfer.failsafe import UnavailableModel

    plain = UnavailableModel("a/b/c", ValueError("boom"))
    assert plain.reason == "error" and plain.name == "c" and repr(plain) == "UnavailableModel('a/b/c', reason='error')"
    assert UnavailableModel("alone", ValueError()).name == "alone"  # no folder in the path
    assert UnavailableModel("models/CT_X//", ValueError()).name == "CT_X"  # only slashes are stripped


def test_a_new_watchdog_has_not_woken() -> None:
    from medinfer.failsafe import Watchdog

    assert Watchdog().wakeups == 0


# -- medinfer.audit_commit -----------------------------------------------------------------------------------------
class _Fsync:
    """os.fsync that can be made to fail or to take time; counts calls."""

    def __init__(self) -> None:
        self.real, self.fail, self.delay, self.calls = os.fsync, False, 0.0, 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise OSError(5, "Input/output error")
        self.real(fd)


def _wait(cond, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        time.sleep(0.005)
    return cond()


def test_after_an_idle_sync_a_new_record_waits_for_its_own_window(tmp_path: Path, monkeypatch) -> None:
    """The window of a group starts at its FIRST record: after the flusher synced an idle group, the next record is
    not synced at once (a stale start would make every later append sync itself), nor left beyond its window."""
    from medinfer.audit import AuditLog

    spy = _Fsync()
    monkeypatch.setattr(os, "fsync", spy)
    with AuditLog(tmp_path / "a.jsonl", fsync=True, group_ms=1000, group_records=1000) as log:
        log.event("first")
        assert _wait(lambda: log.unsynced == 0)  # the flusher synced the idle group
        time.sleep(1.1)  # longer than the window since the first record
        log.event("second")
        assert log.unsynced == 1  # its own window has just begun
        assert _wait(lambda: log.unsynced == 0)
        log.event("third")
        time.sleep(0.05)
        assert log.unsynced == 1  # the flusher waits for the window, it does not sync at once


def test_the_flusher_keeps_syncing_idle_groups_and_retries_a_failed_fsync(tmp_path: Path, monkeypatch) -> None:
    from medinfer.audit import AuditError, AuditLog

    spy = _Fsync()
    monkeypatch.setattr(os, "fsync", spy)
    with AuditLog(tmp_path / "a.jsonl", fsync=True, group_ms=100, group_records=1000) as log:
        for burst in range(3):  # one idle group after another, each synced by the flusher
            log.event("tick", burst=burst)
            assert _wait(lambda: log.unsynced == 0), burst
        spy.fail = True
        calls = spy.calls
        log.event("lost?")
        assert _wait(lambda: log.failed is not None)  # the flusher's fsync failed: the trail says so
        assert log.failed == "fsync: Input/output error" and not log.healthy
        with pytest.raises(AuditError, match="not durable"):
            log.event("refused")
        time.sleep(0.35)
        assert 2 <= spy.calls - calls <= 6  # it retries once per window, not in a busy loop
        spy.fail = False
        assert _wait(lambda: log.unsynced == 0)  # a retry succeeded: the written records are durable
        assert log.probe() and log.healthy


def test_records_left_unsynced_by_a_failed_append_are_synced_by_the_flusher(tmp_path: Path, monkeypatch) -> None:
    """The flusher's fsync is slow; meanwhile an append finds its group too old, fsyncs itself and that fails (the
    caller gets AuditError). When the flusher's fsync returns, the record written meanwhile is still unsynced: the
    flusher gives it its own window and syncs it once the disk works."""
    from medinfer.audit import AuditError, AuditLog

    real, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            time.sleep(0.3)  # the flusher's, slow
        elif len(calls) == 2:
            raise OSError(5, "Input/output error")  # the append's, failing
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with AuditLog(tmp_path / "a.jsonl", fsync=True, group_ms=50, group_records=1000) as log:
        log.event("first")
        assert _wait(lambda: len(calls) == 1)  # the flusher is in its fsync, the lock released
        with pytest.raises(AuditError, match="cannot be made durable"):
            log.event("during")
        assert _wait(lambda: log.unsynced == 0)  # synced by a later round of the flusher
        assert len(calls) >= 3


def test_a_group_commit_log_never_keeps_the_process_alive(tmp_path: Path) -> None:
    """The flusher is a daemon thread: a process that never closes its log still exits (its last group is
    fsynced at exit)."""
    from medinfer.audit import AuditLog, verify_log

    with AuditLog(tmp_path / "b.jsonl", fsync=True, group_ms=60_000, group_records=1000) as log:
        log.event("one")
        assert log._flusher is not None and log._flusher.daemon
    code = ("import sys; from medinfer.audit import AuditLog\n"
            "log = AuditLog(sys.argv[1], fsync=True, group_ms=60000, group_records=1000)\n"
            "log.event('one')\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.jsonl")], timeout=60, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert verify_log(tmp_path / "a.jsonl").records == 1



def test_a_failed_fsync_on_append_is_named(tmp_path: Path, monkeypatch) -> None:
    from medinfer.audit import AuditError, AuditLog

    spy = _Fsync()
    spy.fail = True
    monkeypatch.setattr(os, "fsync", spy)
    log = AuditLog(tmp_path / "a.jsonl", fsync=True, group_ms=60_000, group_records=1)
    with pytest.raises(AuditError) as info:
        log.event("one")
    assert log.failed == "fsync: Input/output error"
    assert str(info.value) == f"audit trail {tmp_path / 'a.jsonl'} cannot be made durable (fsync: Input/output error)"
    spy.fail = False
    log.close()


# -- medinfer.audit_chain --------------------------------------------------------------------------------------------
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
    from medinfer.audit_chain import GENESIS, AuditReport, verify_log

    plain = tmp_path / "plain.jsonl"
    lines = _log(plain)
    assert verify_log(plain) == AuditReport(True, 3, _hash_of(lines[2]))
    plain.write_text("\n".join(lines) + "\n" + '{"seq":4,"pr')  # a torn tail after three complete records
    assert verify_log(plain) == AuditReport(True, 3, _hash_of(lines[2]), torn_tail=True)
    plain.write_text("\n".join([lines[0], "not json", lines[2]]) + "\n")
    assert verify_log(plain) == AuditReport(False, 1, _hash_of(lines[0]), "line 2 is not a JSON audit record", 2)
    record = json.loads(lines[1])
    record["seq"] = 7
    from medinfer.audit_chain import _chain_hash

    record.pop("hash")
    record["hash"] = _chain_hash(_hash_of(lines[0]), record)
    plain.write_text("\n".join([lines[0], json.dumps(record), lines[2]]) + "\n")
    assert verify_log(plain) == AuditReport(False, 1, _hash_of(lines[0]), "line 2 has seq 7, expected 2", 2)
    plain.write_text("")
    assert verify_log(plain) == AuditReport(True, 0, GENESIS)

    keyed = tmp_path / "keyed.jsonl"
    klines = _log(keyed, key=KEY)
    assert verify_log(keyed, key=KEY) == AuditReport(True, 3, _hash_of(klines[2]), keyed=True)
    assert verify_log(keyed) == AuditReport(False, 0, GENESIS, "line 1 is keyed (hmac-sha256): verify it with the "
                                            "device key (--key)", 1)
    assert verify_log(plain.with_name("plain2.jsonl") if False else _plain_copy(tmp_path), key=KEY) == AuditReport(
        False, 0, GENESIS, "line 1 is not keyed although a key was given: it was written or recomputed without the "
        "device key", 1, False, True)
    edited = klines[1].replace('"i":1', '"i":9')
    keyed.write_text("\n".join([klines[0], edited, klines[2]]) + "\n")
    assert verify_log(keyed, key=KEY) == AuditReport(False, 1, _hash_of(klines[0]), "line 2 was edited: its content "
                                                     "does not match its hash", 2, False, True)
    keyed.write_text("\n".join([klines[0], klines[2]]) + "\n")
    assert verify_log(keyed, key=KEY) == AuditReport(
        False, 1, _hash_of(klines[0]), "line 2 does not follow the record before it: a record was deleted, inserted "
        "or reordered", 2, False, True)


def _plain_copy(tmp_path: Path) -> Path:
    path = tmp_path / "plain_copy.jsonl"
    _log(path, 2)
    return path


def test_the_head_file_checks_are_complete_reports(tmp_path: Path) -> None:
    from medinfer.audit import AuditError
    from medinfer.audit_chain import AuditReport, verify_log

    log = tmp_path / "a.jsonl"
    lines = _log(log, key=KEY, head=True)
    head = Path(str(log) + ".head")
    assert verify_log(log, key=KEY, head=True) == AuditReport(True, 3, _hash_of(lines[2]), keyed=True,
                                                              head_checked=True)
    assert verify_log(log, key=KEY) == AuditReport(True, 3, _hash_of(lines[2]), keyed=True)  # head not asked for
    good = head.read_text()
    doc = json.loads(good)
    assert doc["records"] == 3 and doc["last_hash"] == _hash_of(lines[2]) and doc["bytes"] == log.stat().st_size
    head.write_text(json.dumps({**doc, "records": 2}))  # edited without the key
    assert verify_log(log, key=KEY, head=True) == AuditReport(
        False, 3, _hash_of(lines[2]), "a.jsonl.head was not written with this key (or was edited)", None, False, True,
        True)
    head.write_text("[1, 2]")
    assert verify_log(log, key=KEY, head=True).problem == "a.jsonl.head is not a head document"
    head.write_text(good)
    log.write_text("\n".join(lines[:2]) + "\n")
    report = verify_log(log, key=KEY, head=True)
    assert report == AuditReport(False, 2, _hash_of(lines[1]), "the log has 2 records but its head anchors 3: records "
                                 "were deleted from the end", None, False, True, True)
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
    assert verify_log(plain, head=True) == AuditReport(True, 3, _hash_of(plines[2]), head_checked=True)


def test_verify_refuses_what_is_not_a_log_in_one_line(tmp_path: Path) -> None:
    from medinfer.audit import AuditError
    from medinfer.audit_chain import verify_log

    with pytest.raises(AuditError) as info:
        verify_log(tmp_path / "none.jsonl")
    assert str(info.value) == (f"audit log {tmp_path / 'none.jsonl'} does not exist; give the JSONL file written by "
                               "medinfer (e.g. audit.jsonl)")
    with pytest.raises(AuditError) as info:
        verify_log(tmp_path)
    assert str(info.value) == (f"audit log {tmp_path} is a folder; give the JSONL file written by medinfer (e.g. "
                               "audit.jsonl)")


def test_a_device_key_comes_from_bytes_or_a_file_of_at_least_16_bytes(tmp_path: Path) -> None:
    from medinfer.audit import AuditError
    from medinfer.audit_chain import read_key

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
    from medinfer.audit_chain import input_digest

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


# -- medinfer.signing ---------------------------------------------------------------------------------------------
def _ec_pem(tmp_path: Path) -> tuple[Path, Path]:
    """A P-256 key pair (PEM): a valid key of the wrong algorithm."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = tmp_path / "ec.pem", tmp_path / "ec.pub.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def test_keygen_names_the_public_key_after_the_private_one(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from medinfer.signing import generate_keypair

    priv, pub, kid = generate_keypair(tmp_path / "device.pem")
    assert (priv, pub) == (tmp_path / "device.pem", tmp_path / "device.pub.pem") and pub.is_file() and len(kid) == 16
    _, other, _ = generate_keypair(tmp_path / "b.pem", tmp_path / "keys.pub")
    assert other == tmp_path / "keys.pub" and other.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_signing_and_trust_refusals_say_what_is_wrong_with_the_key(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from medinfer.signing import generate_keypair, sign_bundle

    bundle = tiny.build(tmp_path / "m")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(medinfer.UsageError) as info:
        sign_bundle(bundle, tmp_path / "junk.pem")
    assert str(info.value).startswith(f"{tmp_path / 'junk.pem'} is not a readable unencrypted PEM private key (")
    ec_priv, ec_pub = _ec_pem(tmp_path)
    with pytest.raises(medinfer.SignatureError) as info:
        sign_bundle(bundle, ec_priv)
    assert str(info.value) == f"{ec_priv} is not an Ed25519 private key (create one with 'medinfer keygen')"
    priv, pub, kid = generate_keypair(tmp_path / "k.pem")
    sign_bundle(bundle, priv)
    assert medinfer.load(bundle, trusted_keys=[pub.read_bytes()]).signed_by == kid  # a key given as PEM bytes
    missing = tmp_path / "none.pub.pem"
    with pytest.raises(medinfer.UsageError) as info:
        medinfer.load(bundle, trusted_keys=[missing])
    assert str(info.value) == (f"trusted key file {missing!r} cannot be read (No such file or directory); give "
                               "the PEM public key written by 'medinfer keygen'")
    with pytest.raises(medinfer.SignatureError) as info:
        medinfer.load(bundle, trusted_keys=[tmp_path / "junk.pem"])
    assert str(info.value).startswith(f"trusted key {tmp_path / 'junk.pem'!r} is not a PEM public key: ")
    with pytest.raises(medinfer.SignatureError) as info:
        medinfer.load(bundle, trusted_keys=[ec_pub])
    assert str(info.value) == f"trusted key {ec_pub!r} is not an Ed25519 public key"


def test_a_signature_document_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    bundle = tiny.build(tmp_path / "m")
    sig = bundle / "manifest.sig"
    sig.write_text("[1, 2]")
    with pytest.raises(medinfer.SignatureError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{sig} is malformed (TypeError: not a JSON object): a present signature that cannot "
                               "be read is refused as tampering; re-sign the bundle")
    sig.unlink()
    sig.mkdir()
    with pytest.raises(medinfer.SignatureError) as info:
        medinfer.load(bundle)
    assert str(info.value).startswith(f"{sig} is a folder, not a regular file")


# -- medinfer.loader ---------------------------------------------------------------------------------------------
def test_load_refuses_unknown_policies_and_names_before_reading(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "m")
    with pytest.raises(medinfer.UnknownNameError) as info:
        medinfer.load(bundle, out_of_domain="ignore")
    assert str(info.value) == "unknown out_of_domain policy 'ignore' (3 known: flag, no_result, raise)"
    with pytest.raises(ValueError, match=r"on_error must be one of \('raise', 'no_result'\), got 'skip'"):
        medinfer.load(bundle, on_error="skip")
    with pytest.raises(medinfer.UnknownNameError) as info:
        medinfer.load(bundle, variant="int4")
    assert str(info.value) == "unknown variant 'int4' of tiny_logistic (1 known: default)"


def test_a_path_that_is_not_a_bundle_folder(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "m")
    assert medinfer.load(bundle / "manifest.json").name == "tiny_logistic"  # the manifest's own path is accepted
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle / "model.onnx")
    assert str(info.value) == \
        f"{bundle / 'model.onnx'} is not a bundle folder (expected a folder holding manifest.json)"
    with pytest.raises(medinfer.IntegrityError):
        medinfer.load(tmp_path / "nothing")


def test_whatever_a_broken_bundle_provokes_becomes_one_typed_refusal(tmp_path: Path, monkeypatch) -> None:
    """The last line of defence: an exception nobody anticipated (here: the Model constructor failing) is a
    BundleError naming the bundle and the original error, and NO_RESULT under on_error="no_result"."""
    import medinfer.loader as loader

    bundle = tiny.build(tmp_path / "m")

    def broken(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(loader, "Model", broken)
    with pytest.raises(medinfer.BundleError) as info:
        medinfer.load(bundle)
    assert str(info.value) == f"{bundle}: the bundle cannot be loaded (KeyError: 'surprise')"
    assert isinstance(info.value.__cause__, KeyError)
    unavailable = medinfer.load(bundle, on_error="no_result")
    assert isinstance(unavailable, medinfer.UnavailableModel) and unavailable.reason == "bundle"


def test_the_load_options_reach_the_model(tmp_path: Path) -> None:
    from medinfer.audit import AuditLog

    bundle = tiny.build(tmp_path / "m", profile={"intra_op_num_threads": 1, "inter_op_num_threads": 1,
                                                 "large_batch_from": 64, "large_batch": {"intra_op_num_threads": 2}})
    log = AuditLog(tmp_path / "a.jsonl")
    model = medinfer.load(bundle, audit=log, deadline_ms=250.0, out_of_domain="raise", cast="same_kind")
    assert model.audit is log and model.deadline_ms == 250.0 and model.out_of_domain == "raise"
    assert model.predict(np.array([[1.0, 2.0, 3.0]])).labels.tolist() == ["positive"]  # float64 cast (same_kind)
    assert model.large_session is not None and model.variant == "default"
    assert model.signature is not None and model.signature.state == "unsigned" and model.signed_by is None
    assert model.model_sha256 == _pins(bundle)["model.onnx"]["sha256"]
    assert model.manifest_sha256 == hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    log.close()


def test_self_test_false_skips_the_golden_run(tmp_path: Path) -> None:
    """self_test=False loads a bundle whose golden output does not match (the caller runs model.self_test())."""
    bundle = tiny.build(tmp_path / "m", golden_out=np.full((3, 2), 0.5, np.float32))
    with pytest.raises(medinfer.SelfTestError):
        medinfer.load(bundle)
    model = medinfer.load(bundle, self_test=False)
    with pytest.raises(medinfer.SelfTestError):
        model.self_test()


def test_the_graph_metadata_refusal_names_the_key_and_both_values(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "m", metadata={"medinfer.name": "tiny_logistic", "medinfer.version": "0.0.1",
                                                  "medinfer.contract_sha256": "0" * 64})
    from medinfer.integrity import contract_digest

    want = contract_digest(json.loads((bundle / "manifest.json").read_text()))
    with pytest.raises(medinfer.IntegrityError) as info:
        medinfer.load(bundle)
    assert str(info.value) == (f"{bundle}: 'model.onnx' carries medinfer.contract_sha256={'0' * 64!r} but the "
                               f"manifest says {want!r}: the graph belongs to another model or contract; re-export "
                               "the bundle")


def test_a_session_onnxruntime_cannot_open_from_the_sealed_path_is_built_from_its_bytes(tmp_path: Path, monkeypatch,
                                                                                       caplog) -> None:
    """Where /proc is restricted onnxruntime cannot open the sealed copy by path: the same sealed bytes are used."""
    import medinfer.loader as loader

    bundle = tiny.build(tmp_path / "m")
    real = loader.create_session
    seen = []

    def path_refused(source, *args, **kwargs):
        seen.append(type(source).__name__)
        if isinstance(source, str):
            raise medinfer.BundleError("cannot open the path")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(loader, "create_session", path_refused)
    with caplog.at_level("WARNING", logger="medinfer.loader"):
        model = medinfer.load(bundle)
    assert model.predict(tiny.GOLDEN_X).labels.tolist() == ["positive", "positive", "negative"]
    assert "str" in seen and seen[-1] == "bytes"
    assert any("could not read the sealed copy" in r.getMessage() for r in caplog.records)


# -- medinfer.validation -------------------------------------------------------------------------------------------
def _check(shape=("N", 3), dtype="float32", max_elements=None, casting="safe", **spec):
    from medinfer.manifest import TensorSpec
    from medinfer.validation import InputCheck

    return InputCheck(TensorSpec("x", dtype, shape, **spec), "m", casting, max_elements)


F32 = np.float32
RANGED = {"range": (-10.0, 10.0), "units": "a.u.", "names": ("a", "b", "c")}
WHO = "input 'x' of m"


@pytest.mark.parametrize("case", [
    ("text", {}, "text", medinfer.InputTypeError, f"{WHO} expects numbers of dtype float32, got a str"),
    ("mapping", {}, {"q": 1}, medinfer.InputTypeError,
     f"{WHO} expects an array of shape (N, 3), got a mapping with keys ['q']; named columns are accepted by "
     "Model.predict for models whose manifest lists feature names"),
    ("objects", {}, [[1.0, None, 2.0]], medinfer.InputTypeError,
     f"{WHO} expects a rectangular array of numbers; got ragged or mixed-type data (every row must have the same "
     "length and hold only numbers)"),
    ("float64", {}, np.zeros((1, 3)), medinfer.InputTypeError,
     f"{WHO} has dtype float64, but m expects float32; converting float64 to float32 can lose precision, so it is "
     "not done silently. Pass x.astype(np.float32) if that is what you want, or load(..., cast='same_kind')"),
    ("bool", {}, np.zeros((1, 3), bool), medinfer.InputTypeError,
     f"{WHO} has dtype bool, but m expects float32; convert it with x.astype(np.float32) if the values are meant "
     "as float32"),
    ("rank", {}, np.zeros((2, 3, 1), F32), medinfer.InputError,
     f"{WHO} has shape (2, 3, 1) (rank 3), but m expects rank 2 (N, 3) or one sample of rank 1; reshape the input"),
    ("features", {}, np.zeros((2, 4), F32), medinfer.InputError,
     "X has 4 features, but m is expecting 3 features as input (input 'x', shape (N, 3))"),
    ("empty", {}, np.zeros((0, 3), F32), medinfer.InputError,
     f"{WHO} got an empty batch (shape (0, 3)); pass at least one sample"),
    ("too big", {"max_elements": 5}, np.zeros((2, 3), F32), medinfer.InputError,
     f"{WHO} has shape (2, 3) (6 values), but m takes at most 5 per call (the bundle bounds the memory one call may "
     "use): cut the input into parts"),
    ("nan", RANGED, np.array([[0, np.nan, np.inf]], F32), medinfer.InputError,
     f"{WHO} contains 1 NaN and 1 infinite values (first at index (0, 1)); m needs finite values: impute or drop "
     "missing measurements before predicting"),
    ("nan, no range", {}, np.array([[0, 1, -np.inf]], F32), medinfer.InputError,
     f"{WHO} contains 0 NaN and 1 infinite values (first at index (0, 2)); m needs finite values: impute or drop "
     "missing measurements before predicting"),
    ("range", RANGED, np.array([[1, 11, -3]], F32), medinfer.InputError,
     f"{WHO} has 1 values outside the declared range [-10, 10] a.u. (first: {F32(11)!r} at index (0, 1), observed "
     f"min {F32(-3)!r}, max {F32(11)!r}); check the units and preprocessing of the input"),
    ("below range", {"range": (0.0, 5.0)}, np.array([[1, 2, -1]], F32), medinfer.InputError,
     f"{WHO} has 1 values outside the declared range [0, 5] (first: {F32(-1)!r} at index (0, 2), observed "
     f"min {F32(-1)!r}, max {F32(2)!r}); check the units and preprocessing of the input"),
    ("feature", {"names": ("a", "b", "c"), "feature_ranges": ((0, 1), (0, 1), (0, 100)),
                 "facts": {"features": [{"name": "c", "unit": "mg/dL"}]}}, np.array([[0.5, 0.5, 150]], F32),
     medinfer.InputError,
     f"{WHO}: feature 'c' has 1 value(s) outside its range [0, 100] mg/dL (first: {F32(150)!r} at index (0, 2)); "
     "check the sensor, its units and the feature's preprocessing"),
    ("feature, unnamed", {"feature_ranges": ((0, 1), (-1, 1), (0, 1))}, np.array([[0.5, -2, 0.5]], F32),
     medinfer.InputError,
     f"{WHO}: feature '#1' has 1 value(s) outside its range [-1, 1] (first: {F32(-2)!r} at index (0, 1)); check "
     "the sensor, its units and the feature's preprocessing"),
], ids=lambda c: c[0])
def test_every_numeric_refusal_says_what_was_received_and_expected(case) -> None:
    _, options, value, error, message = case
    check = _check(**options)  # the case's own dict is never changed: the test runs again under mutmut
    with pytest.raises(error) as info:
        check(value)
    assert type(info.value) is error and str(info.value) == message


def test_accepted_numeric_inputs_come_back_ready_for_onnxruntime() -> None:
    check = _check(**RANGED)
    arr, single = check(np.array([1, 2, 3], np.int16))  # one sample, a safe cast
    assert arr.dtype == np.float32 and arr.shape == (1, 3) and single
    near = np.array([[9.99, -9.99, 9.99]], F32)  # inside the range, beyond the fast path's bound
    assert check(near)[0] is near
    wide = _check()  # no range: finite values whose sum overflows float32 are still accepted
    big = np.array([[3e38, 3e38, 0]], F32)
    with np.errstate(over="ignore"):
        assert wide(big)[0] is big
    strided = np.zeros((3, 6), F32)[:, ::2]
    out, _ = check(strided)
    assert out.flags.c_contiguous and out.shape == (3, 3)
    relaxed = _check(casting="same_kind", **RANGED)
    assert relaxed(np.zeros((1, 3)))[0].dtype == np.float32
    with pytest.raises(ValueError) as info:
        _check(casting="unsafe")
    assert str(info.value) == "cast must be one of ('safe', 'same_kind'), got 'unsafe'"
    ints = _check(dtype="int64", range=(0.0, 5.0))
    with pytest.raises(medinfer.InputError, match=r"outside the declared range \[0, 5\]"):
        ints(np.array([[1, 9, 2]], np.int64))


def test_sequence_inputs_name_their_features_per_step_and_empty_axes() -> None:
    seq = _check(shape=("N", "T", 2), names=("g", "i"))
    with pytest.raises(medinfer.InputError) as info:
        seq(np.zeros((1, 4, 3), F32))
    assert str(info.value) == ("X has 3 features per time step, but m is expecting 2 features per step (g, i) "
                               "(input 'x', shape (N, T, 2); the time axis 'T' may have any length)")
    unnamed = _check(shape=("N", "T", 2))
    with pytest.raises(medinfer.InputError) as info:
        unnamed(np.zeros((1, 4, 3), F32))
    assert str(info.value).startswith("X has 3 features per time step, but m is expecting 2 features per step (input")
    with pytest.raises(medinfer.InputError) as info:
        seq(np.zeros((1, 0, 2), F32))
    assert str(info.value) == (f"{WHO} has shape (1, 0, 2): axis 1 ('T') is empty, but m needs at least one element "
                               "there (e.g. at least one time step)")
    image = _check(shape=("N", 4, 4, 1))
    with pytest.raises(medinfer.InputError) as info:
        image(np.zeros((1, 4, 5, 1), F32))
    assert str(info.value) == f"{WHO} has shape (1, 4, 5, 1), but m expects (N, 4, 4, 1): axis 2 must be 4, got 5"
    fixed = _check(shape=(2, 3))
    with pytest.raises(medinfer.InputError) as info:
        fixed(np.zeros((3,), F32))
    assert str(info.value) == f"{WHO} has shape (3,) (rank 1), but m expects rank 2 (2, 3); reshape the input"


@pytest.mark.parametrize("value,error,message", [
    (5, medinfer.InputTypeError, f"{WHO} expects text: a string or a list/array of strings, got int"),
    (np.array([1.5]), medinfer.InputTypeError, f"{WHO} expects strings, got an array of dtype float64"),
    ([b"\xff"], medinfer.InputError, f"{WHO} item 0 is not valid UTF-8 (invalid start byte at byte 0); decode the "
                                     "text with its real encoding before predicting"),
    (["ok", 3], medinfer.InputTypeError, f"{WHO} item 1 is a int, expected a string"),
    ([], medinfer.InputError, f"{WHO} got no text; pass at least one string"),
    (["ok", "a\x00b"], medinfer.InputError, f"{WHO} item 1 contains a NUL character; clean the text before "
                                           "predicting"),
    (["ok", "caf\u00e9", "\ud800"], medinfer.InputError, f"{WHO} item 2 is not valid Unicode text (surrogates not "
                                                         "allowed at 0); decode the source bytes with their real "
                                                         "encoding"),
    ([["a", "b"]], medinfer.InputError, f"{WHO} has shape (1, 2), but m expects one text per row (N, 1); pass a "
                                        "1-D list of strings"),
])
def test_every_text_refusal_names_the_item(value, error, message) -> None:
    check = _check(shape=("N", 1), dtype="string")
    with pytest.raises(error) as info:
        check(value)
    assert type(info.value) is error and str(info.value) == message


def test_accepted_texts_come_back_one_per_row() -> None:
    check = _check(shape=("N", 1), dtype="string")
    arr, single = check("one report")
    assert arr.shape == (1, 1) and arr[0, 0] == "one report" and single
    arr, single = check([b"caf\xc3\xa9", "ok"])
    assert arr.reshape(-1).tolist() == ["caf\u00e9", "ok"] and not single
    flat = _check(shape=("N",), dtype="string")
    assert flat(np.array(["a", "b"]))[0].shape == (2,)


def test_several_inputs_and_named_columns() -> None:
    from medinfer.manifest import Manifest
    from medinfer.validation import Validator

    def validator(*specs):
        fake = Manifest.__new__(Manifest)
        object.__setattr__(fake, "name", "m")
        object.__setattr__(fake, "inputs", specs)
        return Validator(fake)

    from medinfer.manifest import TensorSpec

    two = validator(TensorSpec("a", "float32", ("N", 2)), TensorSpec("b", "float32", ("N", 1)))
    with pytest.raises(medinfer.InputTypeError) as info:
        two(np.zeros((1, 2), F32))
    assert str(info.value) == "m has 2 inputs ['a', 'b']; pass a dict name -> array"
    with pytest.raises(medinfer.InputError) as info:
        two({"a": np.zeros((1, 2), F32), "c": 1})
    assert str(info.value) == "m expects inputs ['a', 'b']; missing ['b'], unexpected ['c']"
    with pytest.raises(medinfer.InputError) as info:
        two({"a": np.zeros(2, F32), "b": np.zeros((3, 1), F32)})
    assert str(info.value) == "m: mix of single-sample and batched inputs; batch all of them"
    feeds, single = two({"b": np.zeros(1, F32), "a": np.zeros(2, F32)})
    assert list(feeds) == ["a", "b"] and single and feeds["a"].shape == (1, 2)

    named = validator(TensorSpec("x", "float32", ("N", 3), names=("p", "q", "r")))
    feeds, _ = named({"r": np.array([3.0], F32), "p": np.array([1.0], F32), "q": np.array([2.0], F32)})
    np.testing.assert_array_equal(feeds["x"], [[1.0, 2.0, 3.0]])
    assert named({"x": np.zeros((2, 3), F32)})[0]["x"].shape == (2, 3)  # the input by its own name
    with pytest.raises(medinfer.InputError) as info:
        named({"p": [1.0], "q": [2.0], "s": [0.0], "t": [0.0]})
    assert str(info.value) == ("columns for input 'x' of m do not match its 3 features: 1 missing ('r'); 2 not in "
                               "the model ('s', 't'). The manifest lists the expected names in order (medinfer info "
                               "BUNDLE --json)")
    with pytest.raises(medinfer.InputError) as info:
        named({"p": [1.0, 2.0], "q": [2.0], "r": [3.0]})
    assert str(info.value).startswith("columns for input 'x' of m differ in length: ")
    check = named.checks[0]
    named.check_order(check, ["p", "q", "r"])
    with pytest.raises(medinfer.InputError) as info:
        named.check_order(check, ["p", "p", "r"])
    assert str(info.value) == "columns for input 'x' of m repeat 'p'; each feature once"
    with pytest.raises(medinfer.InputError) as info:
        named.check_order(check, ["p", "r", "q"])
    assert str(info.value) == ("columns for input 'x' of m are in a different order: column 1 is 'r', expected 'q'; "
                               "reorder the columns to the manifest's order")
    with pytest.raises(medinfer.InputError, match=r"1 missing \('r'\); 1 not in the model \('z'\)"):
        named.check_order(check, ["p", "q", "z"])
    many = validator(TensorSpec("x", "float32", ("N", 1), names=("only",)))
    with pytest.raises(medinfer.InputError) as info:
        many({f"c{i}": [0.0] for i in range(7)})
    assert "7 not in the model ('c0', 'c1', 'c2', 'c3', 'c4', … 2 more)" in str(info.value)


# -- medinfer.audit ---------------------------------------------------------------------------------------------------
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
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["time"])
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

    from medinfer.audit import AuditLog
    from medinfer.audit_chain import _canonical

    path = tmp_path / "a.jsonl"
    with AuditLog(path, key=KEY, head=True) as log:
        log.event("one")
        log.record(model="m", version="1", model_sha256="c" * 64, feeds=None, status="ok", latency_us=1.0)
        log.bind("m", "1", "c" * 64).record({"x": np.zeros((1, 3), np.float32)}, "ok", 1.0)
    records = _records(path)
    assert all(r["chain"] == "hmac-sha256" for r in records)
    head = json.loads(Path(str(path) + ".head").read_text())
    mac = head.pop("mac")
    assert head == {"records": 3, "last_hash": records[-1]["hash"], "bytes": path.stat().st_size}
    assert mac == hmac.new(KEY, _canonical(head), "sha256").hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "a.jsonl.head"]  # no temporary file left
    plain = tmp_path / "b.jsonl"
    with AuditLog(plain, head=True) as log:
        log.event("one")
    assert set(json.loads(Path(str(plain) + ".head").read_text())) == {"records", "last_hash", "bytes"}


def test_writer_refusals_are_named(tmp_path: Path) -> None:
    from medinfer.audit import AuditError, AuditLog

    log = AuditLog(tmp_path / "a.jsonl", head=True)
    Path(str(tmp_path / "a.jsonl") + ".head").mkdir()  # the head cannot be replaced by a file
    with pytest.raises(AuditError) as info:
        log.event("one")
    assert str(info.value).startswith(f"audit head {tmp_path / 'a.jsonl'}.head cannot be written (")
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
    assert str(info.value) == (f"{tmp_path / 'd.jsonl'}: the last complete record is not valid ('hash'); run "
                               "'medinfer audit verify' and start a new log")
    with pytest.raises(AuditError) as info:
        AuditLog(tmp_path / "d.jsonl" / "below.jsonl")
    assert str(info.value).startswith(f"audit trail {tmp_path / 'd.jsonl' / 'below.jsonl'} cannot be opened for "
                                      "appending (")


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
    assert [r.get("event") for r in records] == ["one", "audit_recovered"] and records[1]["after"] == failure


def _signed_bundle(tmp_path: Path) -> tuple[Path, Path, str]:
    from medinfer.signing import generate_keypair, sign_bundle

    bundle = tiny.build(tmp_path / "m")
    priv, pub, kid = generate_keypair(tmp_path / "k.pem")
    sign_bundle(bundle, priv)
    return bundle, pub, kid


def test_without_cryptography_the_signature_check_says_which_extra_is_missing(tmp_path: Path, monkeypatch,
                                                                              caplog) -> None:
    """cryptography made unimportable in this process (not stubbed): the refusal names the feature, the extra and
    the module; a policy with trusted keys alone (no require_signature) also fails closed."""
    pytest.importorskip("cryptography")
    from medinfer.signing import SignatureCheck, verify_signature

    bundle, pub, kid = _signed_bundle(tmp_path)
    raw = (bundle / "manifest.json").read_bytes()
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)
    with pytest.raises(medinfer.MissingExtraError) as info:
        verify_signature(bundle, raw, [pub], False)
    assert str(info.value) == ("bundle signatures needs the [sign] extra (cryptography.hazmat.primitives is not "
                               "importable): pip install 'medinfer[sign]'")
    with caplog.at_level("WARNING", logger="medinfer.signing"):
        check = verify_signature(bundle, raw, [], False)
    message = (f"{bundle} carries a signature (key {kid}) that was NOT checked: the [sign] extra is not installed "
               "(pip install 'medinfer[sign]')")
    assert check == SignatureCheck("unchecked", kid, message) and message in caplog.text


def test_signature_outcomes_are_complete(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from medinfer.signing import SignatureCheck, verify_signature

    unsigned = tiny.build(tmp_path / "u")
    raw = (unsigned / "manifest.json").read_bytes()
    assert verify_signature(unsigned, raw, [], False) == SignatureCheck("unsigned", None, "not signed")
    with pytest.raises(medinfer.SignatureError) as info:
        verify_signature(unsigned, raw, [], True)
    assert str(info.value) == (f"{unsigned} is not signed (manifest.sig is missing) but the trust policy requires a "
                               "signature; sign it with 'medinfer sign BUNDLE --key KEY'")


@pytest.mark.parametrize("change,words", [
    ({"signature": "c2lnbmF0dXJl!!"}, "is malformed (Error: "),  # not base64: refused, not skipped over
    ({"public_key": "a2V5!!"}, "is malformed (Error: "),
    ({"key_id": 5}, "is malformed (TypeError: alg and key_id must be strings)"),
    ({"alg": 5}, "is malformed (TypeError: alg and key_id must be strings)"),
    ({"alg": "RSA"}, "uses algorithm 'RSA'; this runtime accepts only Ed25519"),
])
def test_a_signature_document_with_a_bad_field_is_refused_by_name(tmp_path: Path, change: dict, words: str) -> None:
    pytest.importorskip("cryptography")
    bundle, _, _ = _signed_bundle(tmp_path)
    sig = bundle / "manifest.sig"
    doc = json.loads(sig.read_text())
    doc.update(change)
    sig.write_text(json.dumps(doc))
    with pytest.raises(medinfer.SignatureError) as info:
        medinfer.load(bundle)
    assert str(info.value).startswith(f"{sig} {words}"), str(info.value)
