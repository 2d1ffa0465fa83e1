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
    for name in ("a.onnx", "b.onnx", "c.onnx"):
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

    big = np.random.default_rng(0).bytes(3 << 20)
    bundle = tiny.build(tmp_path / "m", extra_files={"plots/big.bin": (big, "other")})
    manifest = decode_manifest(read_manifest_bytes(bundle))
    kept = verify_files(bundle, manifest, keep=("plots/big.bin", "golden.npz"), seal=("model.onnx",))
    try:
        assert kept["plots/big.bin"] == big
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
    with AuditLog(tmp_path / "a.jsonl", fsync=True, group_ms=300, group_records=1000) as log:
        log.event("first")
        assert _wait(lambda: log.unsynced == 0)  # the flusher synced the idle group
        time.sleep(0.4)  # longer than the window since the first record
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


def test_records_appended_while_the_flusher_syncs_get_their_own_window(tmp_path: Path, monkeypatch) -> None:
    from medinfer.audit import AuditLog

    spy = _Fsync()
    monkeypatch.setattr(os, "fsync", spy)
    with AuditLog(tmp_path / "a.jsonl", fsync=True, group_ms=50, group_records=1000) as log:
        spy.delay = 0.2
        log.event("first")
        assert _wait(lambda: spy.calls == 1)  # the flusher is in its (slow) fsync, the lock released
        log.event("during")
        spy.delay = 0.0
        assert _wait(lambda: log.unsynced == 0)  # the record written meanwhile was synced by a later round


def test_a_group_commit_log_never_keeps_the_process_alive(tmp_path: Path) -> None:
    """The flusher is a daemon thread: a process that never closes its log still exits (its last group is
    fsynced at exit)."""
    code = ("import sys; from medinfer.audit import AuditLog\n"
            "log = AuditLog(sys.argv[1], fsync=True, group_ms=60000, group_records=1000)\n"
            "log.event('one')\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.jsonl")], timeout=60, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    from medinfer.audit import verify_log

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
