"""Model-card figures: the reliability table behind every calibration plot, and that each figure is drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from medinfer.train import plots


def test_reliability_table_counts_and_wilson_intervals() -> None:
    outcome = np.array([0, 0, 1, 1, 1, 0, 1, 1, 1, 1])
    prob = np.array([0.05, 0.05, 0.95, 0.95, 0.55, 0.55, 0.55, 0.55, 0.99, 1.0])
    rows = plots.reliability_table(outcome, prob, bins=10)
    assert [(r["lo"], r["n"]) for r in rows] == [(0.0, 2), (0.5, 4), (0.9, 4)]  # empty bins left out; 1.0 in the last
    first, middle, last = rows
    assert (first["observed"], middle["observed"], last["observed"]) == (0.0, 0.75, 1.0)
    assert middle["predicted"] == pytest.approx(0.55)
    # Wilson 95 % interval for 0 of 2: [0, z^2 / (n + z^2)] (textbook closed form); for 3 of 4: [0.3006, 0.9544]
    z2 = 1.959964 ** 2
    assert first["ci_lo"] == pytest.approx(0.0, abs=1e-12) and first["ci_hi"] == pytest.approx(z2 / (2 + z2))
    assert (middle["ci_lo"], middle["ci_hi"]) == pytest.approx((0.3006418, 0.9544127), abs=1e-6)


@pytest.mark.parametrize("kind", ["binary", "top_class"])
def test_calibration_plots_are_drawn(tmp_path: Path, kind: str) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    if kind == "binary":
        p = rng.uniform(0, 1, 300)
        rel = plots.calibration_binary((rng.uniform(0, 1, 300) < p).astype(int), p, tmp_path / "c.png", "active", 0.5)
    else:
        proba = rng.dirichlet(np.ones(4), 300)
        rel = plots.calibration_top_class(rng.integers(0, 4, 300), proba, tmp_path / "c.png")
    assert rel == "plots/c.png" and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_importance_shows_the_largest_first(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rel = plots.importance([f"d{i}" for i in range(40)], np.arange(40.0), np.ones(40), tmp_path / "i.png",
                           title="t", xlabel="x", top=5)
    assert rel == "plots/i.png" and (tmp_path / "i.png").stat().st_size > 1000
