"""lung_nodule_cnn and glucose_lstm beyond the registry-wide e2e tests: data, graph contract, dynamic time axis."""

from __future__ import annotations

import json
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.train import clarke
from medinfer.train.datasets import ct, glucose, lesions, sources, user_images
from medinfer.train.specs.lung_nodule_cnn import WINDOWS, choose_threshold, edge_inputs

pytest.importorskip("pydicom")


# -- Clarke error grid ------------------------------------------------------------------------------------
def test_clarke_zones_of_textbook_points() -> None:
    ref = np.array([100, 60, 100, 150, 250, 50, 300, 60, 100])
    pred = np.array([115, 65, 140, 25, 150, 120, 50, 250, 230])
    assert "".join(clarke.zones(ref, pred)) == "AABCDDEEC"
    pct = clarke.zone_percentages(ref, pred)
    assert sum(pct.values()) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="reference has 2 values but predicted has 1"):
        clarke.zones(np.ones(2), np.ones(1))


# -- lesions on real CT -----------------------------------------------------------------------------------
def test_simulated_nodules_on_real_ct_are_deterministic_and_in_range() -> None:
    slices = ct.load_slices("pydicom")
    assert slices[0].hu.min() == -896.0 and slices[0].hu.max() == 1167.0
    a = lesions.make_patches(slices, 24, np.random.default_rng(3))
    b = lesions.make_patches(slices, 24, np.random.default_rng(3))
    np.testing.assert_array_equal(a.X, b.X)
    assert a.X.shape == (24, 100, 100, 1) and a.X.dtype == np.float32
    assert a.X.min() >= ct.HU_MIN and a.X.max() <= ct.HU_MAX
    assert set(np.unique(a.y)) == {0, 1}
    assert (a.diameter_mm[a.y == 1] >= 5).all() and (a.diameter_mm[a.y == 0] == 0).all()


def test_a_nodule_changes_the_patch_near_its_centre() -> None:
    rng = np.random.default_rng(0)
    background = np.full((100, 100), -850.0, dtype=np.float32)  # lung-like parenchyma
    patch = background.copy()
    lesions.add_nodule(patch, rng, spacing_mm=0.7)
    changed = np.abs(patch - background) > 100
    rows, cols = np.nonzero(changed)
    centre = np.hypot(rows.mean() - 50, cols.mean() - 50)
    assert changed.sum() > 20 and centre <= lesions.CENTRE_RADIUS + 3


def test_threshold_keeps_target_sensitivity_and_avoids_ties() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(50, int), np.zeros(50, int)]
    scores = np.r_[rng.uniform(0.3, 1.0, 50), rng.uniform(0.0, 0.6, 50)]
    t, why = choose_threshold(scores, y, 0.9)
    assert np.mean(scores[y == 1] >= t) >= 0.9
    assert not np.any(scores == t) and "sensitivity" in why
    assert choose_threshold(scores[y == 1], y[y == 1], 0.9)[0] == 0.5  # one class only: documented default


def test_edge_patches_cover_air_bone_and_the_hu_limits() -> None:
    edge = edge_inputs()
    assert edge.shape[1:] == (100, 100, 1)
    per_patch = {(float(e.min()), float(e.max())) for e in edge}
    assert {(-1000.0, -1000.0), (1500.0, 1500.0), (ct.HU_MIN, ct.HU_MIN), (ct.HU_MAX, ct.HU_MAX)} <= per_patch


# -- user-supplied data -----------------------------------------------------------------------------------
def test_user_folder_of_png_and_labels_round_trips(tmp_path: Path) -> None:
    patches = lesions.make_patches(ct.load_slices("pydicom"), 9, np.random.default_rng(0))
    X = np.round(patches.X)
    splits = ["train"] * 5 + ["validation"] * 2 + ["test"] * 2
    user_images.write_example_folder(tmp_path / "mine", X, patches.y, splits)
    ds, val = user_images.load(tmp_path / "mine")
    np.testing.assert_array_equal(ds.X_train, X[:5])
    np.testing.assert_array_equal(ds.y_test, patches.y[7:])
    assert val is not None and len(val[1]) == 2
    assert ds.sources[0].package == "user-supplied" and len(ds.sources[0].sha256) == 64


def test_medmnist_npz_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{part}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{part}_labels"] = np.arange(n).reshape(n, 1) % 3
    np.savez(tmp_path / "nodulemnist.npz", **arrays)
    ds, val = user_images.load(tmp_path / "nodulemnist.npz", positive_class=2)
    assert ds.X_train.shape == (6, 100, 100, 1) and ds.X_test.shape == (3, 100, 100, 1)
    assert ds.y_train.tolist() == [0, 0, 1, 0, 0, 1] and val is not None
    assert ds.X_train.min() >= user_images.LUNG_WINDOW[0] and ds.X_train.max() <= user_images.LUNG_WINDOW[1]
    np.savez(tmp_path / "bad.npz", images=np.zeros((1, 28, 28)))
    with pytest.raises(ValueError, match="not a MedMNIST .npz: missing"):
        user_images.load(tmp_path / "bad.npz")


def test_deb_source_needs_apt_and_says_how_to_do_without(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDINFER_DATA", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg-deb
    src = sources.SOURCES["invesalius_cranium"]
    assert src.kind == "deb" and src.provenance().package == "debian:invesalius-examples"
    with pytest.raises(sources.DataFetchError, match="apt-get and dpkg-deb are not available.*copy"):
        sources.fetch("invesalius_cranium")


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


# -- the built bundles ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cnn_bundle_takes_hu_and_windows_inside_the_graph(built) -> None:
    art, path = built("lung_nodule_cnn")
    m = medinfer.load_manifest(path)
    facts = m.inputs[0].facts
    assert m.inputs[0].shape == ("N", 100, 100, 1) and m.inputs[0].units == "HU"
    assert facts["modality"] == "CT" and set(facts["windows"]) == {"lung", "mediastinal", "bone"}
    import keras

    windows = keras.Model(art.model.input, art.model.get_layer("window_clip").output)
    hu = np.array([-1350.0, -600.0, 40.0, 400.0, 1500.0], dtype=np.float32)
    got = windows.predict(np.broadcast_to(hu[:, None, None, None], (5, 100, 100, 1)), verbose=0)[:, 0, 0, :]
    expected = np.stack([np.clip((hu - (lv - w / 2)) / w, 0, 1) for _, lv, w in WINDOWS], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    card = (path / "model_card.md").read_text().lower()
    assert "simulated lesions on real ct background" in card
    assert "simulated lesions on real ct background" in m.data.description.lower()
    assert {"plots/roc.png", "plots/examples.png"} <= set(m.files)
    assert m.decision.threshold == art.spec.threshold and "validation" in m.decision.rationale
    assert m.parity["sets"]["edge"]["decision_flips"] == 0


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
    assert set(m.parity["sets"]) >= {"heldout", "edge_longest", "edge_shortest"}
    split = m.data.split
    assert not set(split["train_patients"]) & set(split["test_patients"])
    assert {"rmse", "mae", "clarke_A_pct"} <= set(m.metrics.heldout)
    assert m.metrics.baseline is not None and m.metrics.baseline.name.startswith("persistence")
    card = (path / "model_card.md").read_text()
    assert "NOT A DOSING INSTRUCTION" in card
    assert {"plots/clarke.png", "plots/trace.png"} <= set(m.files)
    assert json.loads((path / "manifest.json").read_text())["outputs"][0]["units"] == "mg/dL"
