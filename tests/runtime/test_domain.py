"""The applicability-domain guard in the runtime: per-sample scores and flags, the three policies, the audit
record, the CLI column, bundles without a guard, and `medinfer audit drift` on a log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main

from ..helpers import tiny

INSIDE = np.array([[1.0, 1.0, 1.0], [0.5, -0.5, 0.0]], np.float32)
OUTSIDE = np.array([[5.0, 5.0, 5.0]], np.float32)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_domain(tmp_path_factory.mktemp("domain") / "tiny_domain", threshold=1.0)


def test_flag_is_the_default_and_answers_with_flags(bundle: Path) -> None:
    model = medinfer.load(bundle)
    x = np.concatenate([INSIDE, OUTSIDE])
    pred = model.predict(x)
    np.testing.assert_allclose(pred.domain_scores, tiny.domain_reference(x), rtol=1e-6)
    assert pred.in_domain.tolist() == [True, True, False]
    assert len(pred.labels) == 3  # flagged, still answered
    assert pred.to_dict()["in_domain"] == [True, True, False]


@pytest.mark.parametrize("policy", ["no_result", "raise"])
def test_refusing_policies_give_no_answer_for_a_call_with_an_outsider(bundle: Path, policy: str) -> None:
    model = medinfer.load(bundle, out_of_domain=policy)
    assert model.predict(INSIDE).in_domain.all()
    with pytest.raises(medinfer.OutOfDomainError, match=r"1 sample\(s\) lie outside .*items \[2\]"):
        model.predict(np.concatenate([INSIDE, OUTSIDE]))
    out = model.try_predict(OUTSIDE)
    assert isinstance(out, medinfer.NoResult) and out.reason == "out_of_domain"


def test_an_unknown_policy_is_refused(bundle: Path) -> None:
    with pytest.raises(medinfer.UnknownNameError, match="out_of_domain policy 'drop'"):
        medinfer.load(bundle, out_of_domain="drop")


def test_a_bundle_without_a_guard_still_loads_and_says_so(tiny_bundle_ro: Path, capsys) -> None:
    model = medinfer.load(tiny_bundle_ro, out_of_domain="no_result")
    pred = model.predict(tiny.GOLDEN_X)
    assert pred.domain_scores is None and pred.in_domain is None
    assert main(["info", str(tiny_bundle_ro)]) == 0
    assert "domain guard: none" in capsys.readouterr().out


def test_the_audit_record_carries_scores_and_the_count(bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    model = medinfer.load(bundle, audit=log)
    model.predict(np.concatenate([INSIDE, OUTSIDE]))
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["output"]["out_of_domain"] == 1 and len(record["output"]["domain_scores"]) == 3


def test_cli_shows_the_column_and_warns(bundle: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.concatenate([INSIDE, OUTSIDE]))
    assert main(["predict", str(bundle), str(path)]) == 0
    captured = capsys.readouterr()
    assert "in domain" in captured.out and "NO (2.5)" in captured.out and "outside the model's" in captured.err
    assert main(["predict", str(bundle), str(path), "--out-of-domain", "no_result"]) == 5
    assert "OutOfDomainError" in capsys.readouterr().err


def _log(path: Path, windows: list[tuple[int, int]], start: float = 1_800_000_000) -> None:
    """A synthetic audit log: per hour, (records, out-of-domain samples among 10 per record)."""
    from medinfer.audit import AuditLog

    with AuditLog(path) as log:
        for hour, (records, ood) in enumerate(windows):
            for r in range(records):
                t = start + hour * 3600 + r
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000000Z"
                log._append_locked(log._generic({  # a crafted time: a synthetic log
                    "time": stamp, "model": "m", "status": "ok",
                    "output": {"n": 10, "out_of_domain": ood if r == 0 else 0, "domain_scores": [0.5] * 9 + [2.0]}}))


@pytest.mark.hostile("audit trail")
def test_drift_summarises_windows_and_alerts(tmp_path: Path, capsys) -> None:
    log = tmp_path / "audit.jsonl"
    _log(log, [(10, 0), (10, 1), (10, 8)])
    assert main(["audit", "drift", str(log), "--window", "1h", "--json"]) == 0
    windows = json.loads(capsys.readouterr().out)["windows"]
    assert [w["samples"] for w in windows] == [100, 100, 100]
    assert [w["share"] for w in windows] == [0.0, 0.01, 0.08]
    assert main(["audit", "drift", str(log), "--max-share", "0.05"]) == 14
    assert "exceeded 0.05 in 1 window(s)" in capsys.readouterr().err
    assert main(["audit", "drift", str(log), "--max-share", "0.1"]) == 0
    pytest.importorskip("matplotlib")
    assert main(["audit", "drift", str(log), "--plot", str(tmp_path / "drift.png")]) == 0
    assert (tmp_path / "drift.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["audit", "drift", str(log), "--window", "soon"]) == 2
