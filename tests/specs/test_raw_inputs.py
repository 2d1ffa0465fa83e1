"""Raw data in: a CGM/pump export for glucose_lstm (medinfer.tools.cgm) and SMILES for drug_activity_rf
(medinfer.tools.smiles, the [chem] extra). The device computes the features with the very functions training
computes them with, so the features are equal bit for bit; units, gaps and a different RDKit are handled as the
manifest declares."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from medinfer.cli import main
from medinfer.errors import InputError
from medinfer.tools import cgm

ROOT = Path(__file__).resolve().parents[2]


def _run(n: int = 90, seed: int = 0) -> dict[str, np.ndarray]:
    """A simulator-like run: 5-minute steps from 22:00, CGM, carbohydrate (g/min) and insulin (U/min) rates."""
    rng = np.random.default_rng(seed)
    minutes = 22 * 60 + 5.0 * np.arange(n)
    basal = 0.0189  # U/min
    insulin = np.full(n, basal)
    cho = np.zeros(n)
    cho[30], insulin[30] = 12.0, basal + 1.5  # a meal and its bolus, per minute over one step
    cgm_values = 140 + 30 * np.sin(np.arange(n) / 9) + rng.normal(0, 2, n)
    return {"minutes": minutes, "cgm": cgm_values, "cho": cho, "insulin": insulin, "bg": cgm_values}


def _export(run: dict[str, np.ndarray], *, mmol: bool = False, drop: tuple[int, ...] = (),
            glucose_cells: dict[int, str] | None = None, basal: bool = True) -> bytes:
    from medinfer.timestamps import parse_utc, utc_text
    from medinfer.train.datasets import glucose as data

    start = parse_utc("2026-03-01T00:00:00Z")
    base = float(np.median(run["insulin"]))
    bolus = np.clip(run["insulin"] - base, 0.0, None) * data.STEP_MIN
    carbs = run["cho"] * data.STEP_MIN
    head = "Timestamp (YYYY-MM-DDThh:mm:ss),Glucose Value (mmol/L)" if mmol else "timestamp,glucose_mg_dl"
    lines = [head + ",basal_u_h,bolus_u,carbs_g"]
    for i in range(len(run["cgm"])):
        if i in drop:
            continue
        value = run["cgm"][i] / cgm.MGDL_PER_MMOLL if mmol else run["cgm"][i]
        cell = (glucose_cells or {}).get(i, repr(float(value)))
        when = utc_text(start + 60 * float(run["minutes"][i]))[:-1]  # the export's local wall-clock time
        lines.append(",".join([when, cell, repr(base * 60) if basal and i == 0 else "",
                               repr(float(bolus[i])) if bolus[i] else "", repr(float(carbs[i])) if carbs[i] else ""]))
    return ("\n".join(lines) + "\n").encode()


def test_a_cgm_export_gives_the_training_features_bit_for_bit() -> None:
    from medinfer.train.datasets import glucose as data

    run = _run()
    series = cgm.read_cgm(_export(run), Path("export.csv"))
    np.testing.assert_array_equal(series.features(), data.features(run))
    assert cgm.FEATURE_NAMES == data.FEATURE_NAMES
    mmol = cgm.read_cgm(_export(run, mmol=True), Path("clarity.csv"))  # Dexcom Clarity's names, mmol/L
    np.testing.assert_allclose(mmol.features(), data.features(run), atol=1e-3)
    assert mmol.units == "mmol/L"


def test_gaps_low_and_high_readings_and_a_missing_basal_rate() -> None:
    run = _run()
    short = cgm.read_cgm(_export(run, drop=(40, 41)), Path("gap.csv"))  # 15 minutes without a reading: filled
    assert short.imputed == 2 and abs(short.cgm[40] - (run["cgm"][39] + (run["cgm"][42] - run["cgm"][39]) / 3)) < 1e-9
    with pytest.raises(InputError, match=r"no glucose reading for 20 minutes \(after 2026-03-02T01:15, until "
                                         r"2026-03-02T01:35\)"):
        cgm.read_cgm(_export(run, drop=(40, 41, 42)), Path("gap.csv"))
    low = cgm.read_cgm(_export(run, glucose_cells={5: "Low"}), Path("low.csv"))
    assert low.cgm[5] == cgm.LOW_MGDL
    with pytest.raises(InputError, match="line 7: the sensor read 'High'"):
        cgm.read_cgm(_export(run, glucose_cells={5: "High"}), Path("high.csv"))
    with pytest.raises(InputError, match="no basal rate"):
        cgm.read_cgm(_export(run, basal=False), Path("nobasal.csv"))
    with pytest.raises(InputError, match="line 4: 'abc' is not a number"):
        cgm.read_cgm(_export(run, glucose_cells={2: "abc"}), Path("bad.csv"))


def test_the_glucose_bundle_answers_a_cgm_export(built, tmp_path: Path, capsys) -> None:
    import medinfer

    _, bundle = built("glucose_lstm")
    model = medinfer.load(bundle)
    raw = model.manifest.inputs[0].facts["raw_input"]
    assert raw["format"] == "cgm_csv" and raw["max_gap_minutes"] == cgm.MAX_GAP_MINUTES
    assert main(["predict", str(bundle), str(ROOT / "examples/glucose_lstm_cgm.csv"), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["scores"]) == 1 and 10 < answer["scores"][0] < 600
    run = _run()
    (tmp_path / "e.csv").write_bytes(_export(run))
    ids, x = cgm.window_for(model, (tmp_path / "e.csv").read_bytes(), tmp_path / "e.csv")
    from medinfer.train.datasets import glucose as data

    np.testing.assert_array_equal(x[0], data.features(run)[-raw["window_steps"]:])
    (tmp_path / "gap.csv").write_bytes(_export(run, drop=tuple(range(50, 60))))
    assert main(["predict", str(bundle), str(tmp_path / "gap.csv")]) == 5  # refused, the gap named
    assert "no glucose reading for" in capsys.readouterr().err


def test_smiles_give_the_training_descriptors_and_another_rdkit_is_refused(built, monkeypatch, capsys) -> None:
    import medinfer
    import rdkit
    from medinfer.tools.smiles import descriptors_for

    art, bundle = built("drug_activity_rf")
    model = medinfer.load(bundle)
    assert model.manifest.inputs[0].facts["rdkit_version"] == rdkit.__version__
    from medinfer.train.datasets import chembl

    smiles, ids, _ = chembl.load_activity(sample=art.report["sample"], seed=art.report["seed"])
    test_ids = art.dataset.facts["test_ids"]
    X = descriptors_for(model, [smiles[ids.index(i)] for i in test_ids])
    np.testing.assert_array_equal(X, np.asarray(art.dataset.X_test)[: len(test_ids)])
    smi = ROOT / "examples/drug_activity_rf.smi"
    assert main(["predict", str(bundle), str(smi), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["ids"] == [line.split()[1] for line in smi.read_text().splitlines()]
    with pytest.raises(InputError, match="cannot parse SMILES #1"):
        descriptors_for(model, ["not a molecule"])
    monkeypatch.setattr(rdkit, "__version__", "2020.03.1")
    assert main(["predict", str(bundle), str(smi)]) == 5
    err = capsys.readouterr().err
    assert f"computed with RDKit {model.manifest.inputs[0].facts['rdkit_version']}" in err and "2020.03.1" in err
