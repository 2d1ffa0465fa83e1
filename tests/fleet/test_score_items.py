"""``medinfer score`` per row (issue 26): a frame with an invalid row and a row outside the domain answers every
valid row, marks each refused one with its reason (``--on-error no_result``) and writes the guard's columns."""

from __future__ import annotations

from pathlib import Path

import medinfer
import numpy as np
import pytest

from ..helpers import tiny

X = np.array([[1.0, 1.0, 1.0], [50.0, 0.0, 0.0], [5.0, 5.0, 5.0], [0.5, -0.5, 0.0]], np.float32)


def test_score_answers_each_valid_row_and_names_each_refused_one(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from medinfer.fleet.score import ScoreOptions, score

    bundle = tiny.build_domain(tmp_path / "tiny_domain", threshold=1.0)
    frame = pd.DataFrame({"id": [10, 11, 12, 13]} | {n: X[:, j] for j, n in enumerate(tiny.FEATURES)})
    frame.to_csv(tmp_path / "in.csv", index=False)
    score(bundle, tmp_path / "in.csv", tmp_path / "out.csv", ScoreOptions(on_error="no_result"))
    out = pd.read_csv(tmp_path / "out.csv").sort_values("id")
    assert out["status"].tolist() == ["ok", "no_result", "ok", "ok"]
    assert out["reason"].iloc[1].startswith("input: ") and "outside the declared range" in out["reason"].iloc[1]
    assert [out["in_domain"].iloc[i] for i in (0, 2, 3)] == [True, False, True] and pd.isna(out["in_domain"].iloc[1])
    np.testing.assert_allclose(out["domain_score"].iloc[[0, 2, 3]], tiny.domain_reference(X[[0, 2, 3]]), rtol=1e-6)
    np.testing.assert_allclose(out["score"].iloc[[0, 2, 3]], tiny.reference(X[[0, 2, 3]])[:, 1], rtol=1e-6)
    with pytest.raises(medinfer.InputError, match="row id=11"):
        score(bundle, tmp_path / "in.csv", tmp_path / "again.csv", ScoreOptions())
