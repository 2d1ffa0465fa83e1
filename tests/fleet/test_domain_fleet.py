"""The applicability-domain guard through the fleet: ``serve`` returns ``in_domain`` as an output and the count as
a parameter (422 under ``--out-of-domain no_result``), ``score`` writes ``domain_score`` / ``in_domain`` columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ..helpers import tiny
from ..helpers.serving import http, serving

INSIDE = np.array([[1.0, 1.0, 1.0], [0.5, -0.5, 0.0]], np.float32)
OUTSIDE = np.array([[5.0, 5.0, 5.0]], np.float32)  # guard: mean(x^2) / 10 = 2.5 > threshold 1.0


def _body(x: np.ndarray) -> bytes:
    return json.dumps({"id": "r1", "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                                               "data": x.reshape(-1).tolist()}]}).encode()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_domain(tmp_path_factory.mktemp("fleet_domain") / "tiny_domain", threshold=1.0)


def test_serve_returns_the_flag_and_refuses_under_no_result(bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    x = np.concatenate([INSIDE, OUTSIDE])
    with serving([bundle], log=tmp_path / "flag.log") as (url, _):
        status, body = http(url, "/v2/models/tiny_domain/infer", _body(x))
        assert status == 200, body
        outputs = {o["name"]: o["data"] for o in body["outputs"]}
        assert outputs["in_domain"] == [True, True, False]
        np.testing.assert_allclose(outputs["domain_score"], tiny.domain_reference(x), rtol=1e-6)
        assert body["parameters"]["out_of_domain"] == 1 and body["parameters"]["domain_threshold"] == 1.0
        status, meta = http(url, "/v2/models/tiny_domain", None)
        assert "in_domain" in [o["name"] for o in meta["outputs"]]
    with serving([bundle], "--out-of-domain", "no_result", log=tmp_path / "refuse.log") as (url, _):
        assert http(url, "/v2/models/tiny_domain/infer", _body(INSIDE))[0] == 200
        status, body = http(url, "/v2/models/tiny_domain/infer", _body(x))
        assert status == 422 and "OutOfDomainError" in body["error"] and "items [2]" in body["error"]


def test_score_writes_the_domain_columns(bundle: Path, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from medinfer.fleet.score import ScoreOptions, score

    x = np.concatenate([INSIDE, OUTSIDE, INSIDE])
    frame = pd.DataFrame({"id": np.arange(len(x))} | {n: x[:, j] for j, n in enumerate(tiny.FEATURES)})
    frame.to_csv(tmp_path / "in.csv", index=False)
    score(bundle, tmp_path / "in.csv", tmp_path / "out.csv", ScoreOptions())
    out = pd.read_csv(tmp_path / "out.csv").sort_values("id")
    assert out["in_domain"].tolist() == [True, True, False, True, True]
    np.testing.assert_allclose(out["domain_score"], tiny.domain_reference(x), rtol=1e-6)
