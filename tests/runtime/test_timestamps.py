"""One timestamp format (ISO 8601 UTC with Z), build times that honour SOURCE_DATE_EPOCH, and audit logs written
in the old formats still verify and are still read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.timestamps import UtcClock, build_time, parse_utc, utc_text

ONE_FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?Z$")


def test_one_format_with_a_stated_fraction() -> None:
    assert utc_text(0) == "1970-01-01T00:00:00Z"
    assert utc_text(1_765_000_000.25, digits=3) == "2025-12-06T05:46:40.250Z"
    assert utc_text(1_765_000_000.5, digits=6) == "2025-12-06T05:46:40.500000Z"
    assert ONE_FORMAT.match(UtcClock().now()) and ONE_FORMAT.match(utc_text())


def test_build_time_honours_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert build_time() == "2023-11-14T22:13:20Z"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert ONE_FORMAT.match(build_time())


@pytest.mark.parametrize("text", ["2023-11-14T22:13:20Z", "2023-11-14T22:13:20+00:00", "2023-11-14T22:13:20",
                                  "2023-11-14T22:13:20.000000Z"])
def test_this_format_and_the_old_ones_are_read_back(text: str) -> None:
    assert parse_utc(text) == 1_700_000_000.0
    with pytest.raises(ValueError, match="not an ISO 8601 UTC time"):
        parse_utc("14/11/2023 22:13")


def test_audit_records_and_events_share_the_format(tmp_path: Path, tiny_bundle_ro: Path) -> None:
    log = medinfer.AuditLog(tmp_path / "audit.jsonl")
    model = medinfer.load(tiny_bundle_ro, audit=log)
    model.predict(np.zeros((1, 3), np.float32))
    log.event("server_start", port=1)
    log.close()
    times = [json.loads(line)["time"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert len(times) == 2 and all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", t) for t in times)


def test_a_log_written_in_the_old_formats_still_verifies_and_is_read(tmp_path: Path) -> None:
    """Before one format, events carried whole seconds (``...:20Z``) and records microseconds: the chain covers
    the text as written, so an old log verifies unchanged and drift reads both."""
    from medinfer.audit import GENESIS, canonical, chain_hash
    from medinfer.tools.drift import drift

    bodies = [{"event": "server_start", "time": "2023-11-14T22:13:20Z"},
              {"time": "2023-11-14T22:13:21.123456Z", "request_id": "r1", "model": "m", "version": "1",
               "model_sha256": "0" * 64, "status": "ok", "input_sha256": "1" * 64, "latency_us": 5.0,
               "output": {"n": 1, "domain_scores": [0.1], "out_of_domain": 0, "scores": [0.5]}}]
    prev, lines = GENESIS, []
    for seq, body in enumerate(bodies, 1):
        full = {"seq": seq, "prev": prev, **body}
        prev = chain_hash(prev, full)
        lines.append(canonical({**full, "hash": prev}))
    path = tmp_path / "old.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert medinfer.verify_log(path).ok
    (window,) = drift(path, 3600)
    assert window.records == 1 and window.start == 1_699_999_200.0
