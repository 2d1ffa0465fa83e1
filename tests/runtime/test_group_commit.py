"""Group commit of the audit trail in detail: windows, the flusher's retries and daemon thread, records left by a failed
append. These tests pin behaviours that mutation testing (``make mutation-score``, promises/mutation.toml) found
unpinned: each fails when the code it names is changed in the way the mutant changed it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


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
