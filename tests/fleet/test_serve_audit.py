"""``medinfer serve`` with an anchored, rotating audit trail (issue 28): the chain runs on across files while the
server answers, and a hostile line put into the log stops the trail: inference answers 503 AuditError and
readiness is false — never a 500 while ready."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from medinfer.audit import verify_log

from ..helpers.serving import get, http, request, serving

pytest.importorskip("uvicorn")
KEY = b"k" * 32
X = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


def _infer(url: str) -> tuple[int, dict]:
    return http(url, "/v2/models/tiny_logistic/infer", json.dumps(X).encode(), {"Content-Type": "application/json"})


@pytest.mark.hostile("audit trail")
def test_serve_rotates_its_trail_and_stops_on_a_hostile_line(tmp_path: Path, tiny_bundle_ro: Path) -> None:
    log, key = tmp_path / "audit.jsonl", tmp_path / "audit.key"
    key.write_bytes(KEY)
    with serving([tiny_bundle_ro], "--audit", str(log), "--audit-key", str(key), "--audit-head",
                 "--audit-rotate-mb", "0.002", "--audit-retain-days", "183", log=tmp_path / "server.log") as (url, _):
        for _ in range(12):
            assert _infer(url)[0] == 200
        report = verify_log(log, key=KEY, head=True)
        assert report.ok and len(report.files) > 1, report
        with open(log, "ab") as fh:
            fh.write(b'{"hash":null,"seq":3}\n')
        status, body = _infer(url)
        assert status == 503 and "AuditError" in json.dumps(body)
        ready, headers, _ = request(url, "/v2/health/ready")
        assert ready == 400 and "audit" in headers.get("x-medinfer-not-ready", "")
        assert get(url, "/v2/health/live")[0] == 200
        assert _infer(url)[0] == 503  # it stays stopped
