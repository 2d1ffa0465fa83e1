"""glucose_lstm beyond the registry-wide tests: features and their units, windows, the patient split, the
Clarke grid, and the built bundle's dynamic time axis."""

from __future__ import annotations

import json

import medinfer
import numpy as np
import pytest
from medinfer.train import clarke
from medinfer.train.datasets import glucose


# -- Clarke error grid ------------------------------------------------------------------------------------
def test_clarke_zones_of_textbook_points() -> None:
    ref = np.array([100, 60, 100, 150, 250, 50, 300, 60, 100])
    pred = np.array([115, 65, 140, 25, 150, 120, 50, 250, 230])
    assert "".join(clarke.zones(ref, pred)) == "AABCDDEEC"
    pct = clarke.zone_percentages(ref, pred)
    assert sum(pct.values()) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="reference has 2 values but predicted has 1"):
        clarke.zones(np.ones(2), np.ones(1))


# -- glucose features ------------------------------------------------------------------------------------
def _toy_run(steps: int = 80) -> dict[str, np.ndarray]:
    minutes = np.arange(steps) * 5.0
    cho = np.zeros(steps)
    cho[10] = 6.0  # g/min during one 5-min step: a 30 g meal
    insulin = np.full(steps, 0.02)
    insulin[10] += 0.6  # U/min during one step: a 3 U bolus
    cgm = 120.0 + np.arange(steps)
    return {"minutes": minutes, "cgm": cgm, "bg": cgm + 5.0, "cho": cho, "insulin": insulin}


def test_glucose_features_have_the_documented_units() -> None:
    f = glucose.features(_toy_run())
    col = {n: i for i, n in enumerate(glucose.FEATURE_NAMES)}
    assert f.shape == (80, 10) and len(glucose.FEATURES) == 10
    assert f[10, col["carbohydrates"]] == pytest.approx(30.0) and f[10, col["bolus_insulin"]] == pytest.approx(3.0)
    assert f[0, col["basal_insulin"]] == pytest.approx(1.2)  # 0.02 U/min = 1.2 U/h
    assert f[5, col["cgm_rate"]] == pytest.approx(0.2) and f[20, col["cgm_delta_30min"]] == pytest.approx(6.0)
    cob = f[:, col["carbs_on_board"]]
    assert cob[10] == pytest.approx(30.0) and cob[10 + 18] == pytest.approx(15.0) and cob[10 + 36] == 0.0  # 90, 180 min
    assert f[0, col["time_of_day_cos"]] == pytest.approx(1.0)


def test_windows_target_glucose_30_minutes_after_the_last_step() -> None:
    run = _toy_run()
    X, y, persistence, minutes = glucose.windows(run, seq_len=12, stride=1)
    last = 11
    assert X.shape == (80 - 12 - 5, 12, 10)
    assert y[0] == run["bg"][last + 6] and persistence[0] == run["cgm"][last] and minutes[0] == 55.0


def test_patients_are_split_without_overlap() -> None:
    train, test = glucose.split_patients(list(glucose.PATIENTS))
    assert not set(train) & set(test) and len(test) == 9 and len(train) == 21
    train, test = glucose.split_patients(list(glucose.PATIENTS[:3]))
    assert train == ["adolescent#001", "adult#001"] and test == ["child#001"]


@pytest.mark.slow
def test_lstm_bundle_keeps_a_dynamic_time_axis(built) -> None:
    art, path = built("glucose_lstm")
    model = medinfer.load(path)
    m = model.manifest
    assert m.inputs[0].shape == ("N", "T", 10) and m.inputs[0].names == glucose.FEATURE_NAMES
    assert [f["unit"] for f in m.inputs[0].facts["features"]] == [u for _, u, _ in glucose.FEATURES]
    edge = np.asarray(art.dataset.edge)
    for T in (1, 7, edge.shape[1]):
        x = np.ascontiguousarray(edge[:, -T:, :])
        native = art.spec.scores(art.spec.native_outputs(art.model, x))
        np.testing.assert_allclose(model.predict(x).scores, native, atol=art.spec.parity.atol, rtol=1e-5)
    with pytest.raises(medinfer.InputError, match="X has 9 features per time step, but glucose_lstm is expecting 10"):
        model.predict(np.zeros((2, 5, 9), np.float32))
    assert set(m.parity.sets) >= {"heldout", "edge_longest", "edge_shortest"}
    split = m.data.split
    assert not set(split["train_patients"]) & set(split["test_patients"])
    assert {"rmse", "mae", "clarke_A_pct"} <= set(m.metrics.heldout)
    assert m.metrics.baseline is not None and m.metrics.baseline.name.startswith("persistence")
    card = (path / "model_card.md").read_text()
    assert "NOT A DOSING INSTRUCTION" in card
    assert {"plots/clarke.png", "plots/trace.png"} <= set(m.files)
    assert json.loads((path / "manifest.json").read_text())["outputs"][0]["units"] == "mg/dL"


@pytest.mark.hostile("values outside a feature's physical range")
@pytest.mark.parametrize(("feature", "value"), [("cgm", -100.0), ("cgm", 0.0), ("cgm", 5000.0),
                                                ("time_of_day_sin", 1000.0), ("bolus_insulin", -3.0)])
def test_physically_impossible_values_are_refused_with_the_feature_named(built, feature: str, value: float) -> None:
    art, path = built("glucose_lstm")
    model = medinfer.load(path)
    x = np.array(art.dataset.X_test[:2], copy=True)
    assert model.predict(x).scores.shape == (2,)
    x[1, -1, glucose.FEATURE_NAMES.index(feature)] = value
    with pytest.raises(medinfer.InputError, match=f"feature '{feature}' has 1 value"):
        model.predict(x)


def test_a_simulated_run_stops_where_blood_glucose_leaves_the_simulators_range() -> None:
    """simglucose lets a virtual patient fall to ~0 mg/dL and stay there; the run stops at the first step outside
    10..600 mg/dL (simglucose's own end of an episode), so no window's target lies outside it."""
    steps = 200
    bg = np.concatenate([np.linspace(150, 40, 100), np.linspace(38, 11, 40), np.linspace(9, 0.0, 60)])
    run = {"minutes": np.arange(steps) * 5.0, "cgm": np.maximum(bg, 39.0), "bg": bg, "cho": np.zeros(steps),
           "insulin": np.full(steps, 0.02)}
    kept, dropped = glucose.stop_outside_model_range(run)
    assert (len(kept["bg"]), dropped) == (140, 60)  # severe lows of 11..38 mg/dL stay; the fall below 10 goes
    assert all(len(v) == 140 for v in kept.values())
    _, y, _, _ = glucose.windows(kept, 12, 1)
    assert y.min() >= 10.0 and len(y) == 140 - 12 + 1 - glucose.HORIZON_STEPS
    high = dict(run, bg=np.concatenate([np.full(50, 300.0), np.full(150, 650.0)]))
    assert glucose.stop_outside_model_range(high)[1] == 150
    whole, none = glucose.stop_outside_model_range(dict(run, bg=np.full(steps, 120.0)))
    assert none == 0 and len(whole["bg"]) == steps
