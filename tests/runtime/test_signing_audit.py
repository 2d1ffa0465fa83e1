"""Signed bundles and the hash-chained audit trail (issue: medical-grade safety)."""

from __future__ import annotations

import json
import os
import shutil
import signal
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

pytest.importorskip("cryptography")


@pytest.fixture
def keys(signing_keys: dict[str, Path]) -> dict[str, Path]:
    return signing_keys


def _signed(folder: Path, keys: dict[str, Path]) -> Path:
    bundle = tiny.build(folder)
    assert main(["sign", str(bundle), "--key", str(keys["priv"])]) == 0
    return bundle


def test_keygen_refuses_to_overwrite_and_protects_the_key(keys) -> None:
    from medinfer.signing import generate_keypair

    assert oct(keys["priv"].stat().st_mode & 0o777) == "0o600"
    with pytest.raises(medinfer.UsageError, match="refusing to overwrite"):
        generate_keypair(keys["priv"])


def test_signed_bundle_loads_under_policy(tmp_path: Path, keys) -> None:
    bundle = _signed(tmp_path / "b", keys)
    model = medinfer.load(bundle, require_signature=True, trusted_keys=[keys["pub"]])
    assert model.signed_by and len(model.signed_by) == 16


def test_unsigned_wrong_key_and_altered_are_refused(tmp_path: Path, keys) -> None:
    unsigned = tiny.build(tmp_path / "unsigned")
    with pytest.raises(medinfer.SignatureError, match="not signed.*requires a signature"):
        medinfer.load(unsigned, require_signature=True, trusted_keys=[keys["pub"]])
    bundle = _signed(tmp_path / "signed", keys)
    with pytest.raises(medinfer.SignatureError, match="not among the trusted keys"):
        medinfer.load(bundle, require_signature=True, trusted_keys=[keys["other_pub"]])
    # re-pin a changed model card in the manifest: digests agree, the signature does not
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["card"]["summary"] = "tampered"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(medinfer.SignatureError, match="does not match manifest.json"):
        medinfer.load(bundle, require_signature=True, trusted_keys=[keys["pub"]])


def test_signature_checked_before_any_session(tmp_path: Path, keys, monkeypatch) -> None:
    bundle = _signed(tmp_path / "b", keys)
    sig = json.loads((bundle / "manifest.sig").read_text())
    sig["signature"] = sig["signature"][::-1]
    (bundle / "manifest.sig").write_text(json.dumps(sig))
    import onnxruntime as ort

    def no_session(*a, **k):
        raise AssertionError("a session was created before the signature was checked")

    monkeypatch.setattr(ort, "InferenceSession", no_session)
    with pytest.raises(medinfer.SignatureError):
        medinfer.load(bundle, require_signature=True, trusted_keys=[keys["pub"]])


def test_cli_verify_with_policy(tmp_path: Path, keys, capsys) -> None:
    bundle = _signed(tmp_path / "b", keys)
    assert main(["verify", str(bundle), "--require-signature", "--trusted-key", str(keys["pub"])]) == 0
    assert "signature by key" in capsys.readouterr().out
    assert main(["verify", str(bundle), "--require-signature", "--trusted-key", str(keys["other_pub"])]) == 3


def test_tamper_any_byte_of_a_signed_bundle(tmp_path: Path, keys) -> None:
    """Flip sampled single bytes of every file (signature included): each is refused at load."""
    pristine = _signed(tmp_path / "pristine", keys)
    rng = np.random.default_rng(0)
    for path in sorted(p for p in pristine.rglob("*") if p.is_file()):
        size = path.stat().st_size
        for offset in sorted({0, size - 1, *rng.integers(0, size, 6).tolist()}):
            work = tmp_path / "work"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(pristine, work)
            target = work / path.relative_to(pristine)
            data = bytearray(target.read_bytes())
            data[offset] ^= 1 << int(rng.integers(0, 8))
            target.write_bytes(bytes(data))
            with pytest.raises(medinfer.MedinferError):
                medinfer.load(work, require_signature=True, trusted_keys=[keys["pub"]])


# -- audit trail ---------------------------------------------------------------------------------------------
def test_audit_records_and_verifies(tiny_bundle_ro: Path, tmp_path: Path, capsys) -> None:
    log_path = tmp_path / "audit.jsonl"
    model = medinfer.load(tiny_bundle_ro, audit=log_path)
    x = np.array([[1, 2, 3]], np.float32)
    model.predict(x, request_id="req-1")
    model.try_predict(np.array([[np.nan, 0, 0]], np.float32))
    with pytest.raises(medinfer.InputError):
        model.predict(np.zeros((1, 5), np.float32))
    model.audit.close()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [r["status"] for r in lines] == ["ok", "no_result", "no_result"]
    assert lines[0]["request_id"] == "req-1" and lines[0]["model"] == "tiny_logistic"
    assert lines[1]["reason"] == "input" and lines[0]["output"]["labels"]
    assert "1.0, 2.0" not in log_path.read_text()  # the input itself is never written, only its digest
    assert all(len(r["input_sha256"]) == 64 for r in lines)
    assert main(["audit", "verify", str(log_path)]) == 0
    assert "3 records, hash chain intact" in capsys.readouterr().out


@pytest.mark.parametrize(("attack", "line", "words"), [
    ("edit", 3, "was edited: its content does not match its hash"),
    ("delete", 4, "does not follow the record before it: a record was deleted, inserted or reordered"),
    ("reorder", 2, "does not follow the record before it"), ("insert", 3, "does not follow the record before it")])
def test_audit_detects_tampering(tiny_bundle_ro: Path, tmp_path: Path, attack: str, line: int, words: str) -> None:
    """Each change is found at the first line it breaks, and named for what it is (an edit, or a record that does
    not follow the one before it: deleted, inserted or reordered)."""
    log_path = tmp_path / "audit.jsonl"
    model = medinfer.load(tiny_bundle_ro, audit=log_path)
    for i in range(6):
        model.predict(np.array([[i, 0, 1]], np.float32))
    model.audit.close()
    lines = log_path.read_text().splitlines()
    if attack == "edit":
        lines[2] = lines[2].replace('"status":"ok"', '"status":"no_result"')
    elif attack == "delete":
        del lines[3]
    elif attack == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    else:
        lines.insert(2, lines[4])
    log_path.write_text("\n".join(lines) + "\n")
    report = verify_log(log_path)
    assert not report.ok and report.line == line and f"line {line} {words}" in report.problem, report


_WRITER = r"""
import sys, numpy as np, medinfer
model = medinfer.load(sys.argv[1], audit=sys.argv[2])
x = np.array([[1, 2, 3]], np.float32)
print("ready", flush=True)
while True:
    model.predict(x)
"""


def test_audit_survives_kill_9(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "audit.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tiny_bundle_ro), str(log_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    report = verify_log(log_path)
    assert report.ok and report.records > 10, report
    # a torn last line (simulated) is reported, the rest still verifies, and the next writer seals it
    with open(log_path, "ab") as fh:
        fh.write(b'{"seq": 99999, "prev": "abc", "tru')
    torn = verify_log(log_path)
    assert torn.ok and torn.torn_tail and torn.records == report.records
    with AuditLog(log_path) as log:
        log.record(model="m", version="1", model_sha256="0" * 64, feeds=None, status="ok", latency_us=1.0)
    sealed = verify_log(log_path)
    assert sealed.ok and not sealed.torn_tail and sealed.records == report.records + 2
