"""A dynamic batch keeps one audit record per request: :func:`medinfer.request_groups.predict_grouped_audited`
writes for each request the record ``Model.predict`` alone would have written (input digest, outcome, output, id),
runs the batch once, and a bad request fails only itself."""

from __future__ import annotations

import json
from pathlib import Path

import medinfer
import numpy as np
from medinfer.audit import AuditLog
from medinfer.request_groups import predict_grouped_audited

KEYS = ("input_sha256", "status", "output", "request_id", "reason", "model", "version", "model_sha256")


def _records(path: Path) -> list[dict]:
    return [{k: r.get(k) for k in KEYS} for r in map(json.loads, path.read_text().splitlines()) if "event" not in r]


def test_each_request_of_a_batch_gets_the_record_it_would_get_alone(tiny_bundle: Path, tmp_path: Path) -> None:
    items = [np.array([[1.0, 2.0, 3.0]], np.float32), np.array([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]], np.float32),
             np.array([[1.0, np.nan, 0.0]], np.float32), np.array([[9.0, -9.0, 1.0]], np.float32)]
    ids = ["a", "b", "c", "\ud800"]
    alone = medinfer.load(tiny_bundle).configure(audit=AuditLog(tmp_path / "alone.jsonl"))
    expected = [alone.try_predict(x, request_id=rid) for x, rid in zip(items, ids)]
    batched_model = medinfer.load(tiny_bundle).configure(audit=AuditLog(tmp_path / "batched.jsonl"))
    got = predict_grouped_audited(batched_model, items, ids)
    assert _records(tmp_path / "batched.jsonl") == _records(tmp_path / "alone.jsonl")
    for want, result in zip(expected, got):
        if isinstance(want, medinfer.NoResult):
            assert isinstance(result, medinfer.MedinferError) and result.code == want.reason
        else:
            np.testing.assert_array_equal(result.scores, want.scores)
    assert [type(r).__name__ for r in got] == ["Prediction", "Prediction", "InputError", "InputError"]


def test_without_a_trail_ids_are_still_checked(tiny_bundle: Path) -> None:
    model = medinfer.load(tiny_bundle)
    got = predict_grouped_audited(model, [np.ones((1, 3), np.float32)] * 2, ["ok", "x" * 10_000])
    assert type(got[0]).__name__ == "Prediction" and isinstance(got[1], medinfer.InputError)
