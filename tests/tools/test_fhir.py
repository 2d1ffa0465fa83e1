"""FHIR R4 out (``medinfer.tools.fhir.to_fhir``, ``medinfer predict --fhir-out``): every resource is rebuilt from its
JSON by fhir.resources (an independent reader), values come from numpy references of the tiny models, codes are
the looked-up ones (SNOMED CT 786838002, UCUM mg/dL) or plainly local, and the research model is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main
from medinfer.tools.fhir import to_fhir

from ..helpers import tiny

GLUCOSE_FACTS = {"horizon_minutes": 30, "step_minutes": 5}
AT = datetime(2026, 1, 31, 8, 0, tzinfo=timezone.utc)


def _resources(bundle: dict) -> dict[str, list[dict]]:
    """Each entry rebuilt by fhir.resources from its JSON text (a round trip), grouped by resource type."""
    r4 = pytest.importorskip("fhir.resources.R4B")
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    r4.get_fhir_model_class("Bundle").model_validate_json(json.dumps(bundle))
    out: dict[str, list[dict]] = {}
    for entry in bundle["entry"]:
        doc = entry["resource"]
        again = r4.get_fhir_model_class(doc["resourceType"]).model_validate_json(json.dumps(doc))
        assert json.loads(again.model_dump_json(exclude_none=True)) == doc  # nothing lost or changed
        assert entry["fullUrl"].startswith("urn:uuid:") and entry["request"]["url"] == doc["resourceType"]
        out.setdefault(doc["resourceType"], []).append({**doc, "_fullUrl": entry["fullUrl"]})
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, lung_ct_bundle: Path, tiny_bundle_ro: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fhir")
    return {
        "lung_nodule_cnn": lung_ct_bundle,
        "clinical_notes_tfidf": tiny.build(root / "notes", name="clinical_notes_tfidf"),
        "glucose_lstm": tiny.build_sequence(root / "glucose", name="glucose_lstm", units="mg/dL", facts=GLUCOSE_FACTS),
        "gene_expression_svd": tiny.build_multiclass(root / "genes", name="gene_expression_svd"),
        "drug_activity_rf": tiny.build(root / "drug", name="drug_activity_rf"),
        "tiny_logistic": tiny_bundle_ro,
    }


def test_device_names_the_bundle_by_digest(bundles: dict[str, Path]) -> None:
    pytest.importorskip("fhir.resources")
    model = medinfer.load(bundles["clinical_notes_tfidf"])
    bundle = to_fhir(model.predict(tiny.GOLDEN_X), "Patient/p1")
    (device,) = _resources(bundle)["Device"]
    ids = {i["system"].rsplit(":", 1)[-1]: i["value"] for i in device["identifier"]}
    assert ids == {"manifest-sha256": model.manifest_sha256, "model-sha256": model.model_sha256}
    assert device["deviceName"] == [{"name": "clinical_notes_tfidf", "type": "model-name"}]
    assert {"type": {"text": "model version"}, "value": "0.0.1"} in device["version"]
    assert device["manufacturer"] == "medinfer"
    assert bundle["entry"][0]["request"]["ifNoneExist"].endswith("|" + model.manifest_sha256)


def test_risk_assessment_for_the_nodule_model(bundles: dict[str, Path]) -> None:
    pytest.importorskip("fhir.resources")
    x = np.stack([np.full((100, 100, 1), v, np.float32) for v in (-800.0, -250.0, 60.0)])
    pred = medinfer.load(bundles["lung_nodule_cnn"]).predict(x)
    found = _resources(to_fhir(pred, "Patient/p1", basis=["ImagingStudy/s1"]))
    risks = found["RiskAssessment"]
    expected = tiny.ct_reference(x)[:, 0]
    assert len(risks) == 3
    for risk, p in zip(risks, expected):
        assert risk["status"] == "preliminary" and risk["subject"] == {"reference": "Patient/p1"}
        assert risk["performer"] == {"reference": found["Device"][0]["_fullUrl"]}
        assert risk["basis"] == [{"reference": "ImagingStudy/s1"}]
        (prediction,) = risk["prediction"]
        assert prediction["outcome"]["coding"] == [{"system": "http://snomed.info/sct", "code": "786838002",
                                                    "display": "Pulmonary nodule"}]
        assert prediction["probabilityDecimal"] == pytest.approx(float(p), abs=1e-6)
        notes = " ".join(n["text"] for n in risk["note"])
        assert "Intended use" in notes and "Out of scope: Any clinical use." in notes and "SIMULATED" in notes
    assert "'no_nodule'" in risks[0]["prediction"][0]["rationale"]
    assert "'nodule' at the operating threshold 0.5" in risks[2]["prediction"][0]["rationale"]


def test_note_abnormality_uses_a_local_outcome_code(bundles: dict[str, Path]) -> None:
    pytest.importorskip("fhir.resources")
    pred = medinfer.load(bundles["clinical_notes_tfidf"]).predict(tiny.GOLDEN_X)
    risks = _resources(to_fhir(pred, "Patient/p1", basis=["DocumentReference/r7"]))["RiskAssessment"]
    for risk, p in zip(risks, tiny.reference(tiny.GOLDEN_X)[:, 1]):
        coding = risk["prediction"][0]["outcome"]["coding"][0]
        assert coding["system"].startswith("urn:medinfer:") and coding["code"] == "abnormal-chest-xray-report"
        assert risk["prediction"][0]["probabilityDecimal"] == pytest.approx(float(p), abs=1e-6)


def test_glucose_forecast_is_an_observation_30_minutes_ahead_in_ucum(bundles: dict[str, Path]) -> None:
    pytest.importorskip("fhir.resources")
    x = np.array([[[9.0, 1.0]] * 4, [[8.0, 0.0]] * 3 + [[6.0, 0.0]]], dtype=np.float32)
    pred = medinfer.load(bundles["glucose_lstm"]).predict(x)
    found = _resources(to_fhir(pred, "Patient/p1", basis=["Observation/cgm-1"], at=AT))
    observations = found["Observation"]
    for obs, value in zip(observations, x.mean(axis=(1, 2))):
        assert obs["valueQuantity"] == {"value": round(float(value), 1), "unit": "mg/dL",
                                        "system": "http://unitsofmeasure.org", "code": "mg/dL"}
        assert datetime.fromisoformat(obs["effectiveDateTime"].replace("Z", "+00:00")) == AT + timedelta(minutes=30)
        assert obs["derivedFrom"] == [{"reference": "Observation/cgm-1"}]
        assert obs["device"] == {"reference": found["Device"][0]["_fullUrl"]}
        # a forecast is not a measurement: no LOINC code, and it says so
        assert [c["system"] for c in obs["code"]["coding"]] == ["urn:medinfer:fhir:CodeSystem:result"]
        assert "FORECAST" in obs["code"]["text"] and "not a measured glucose value" in json.dumps(obs["note"])


def test_forecast_needs_mg_dl_and_a_horizon(tmp_path: Path) -> None:
    pytest.importorskip("fhir.resources")
    x = np.ones((1, 4, 2), np.float32)
    no_units = medinfer.load(tiny.build_sequence(tmp_path / "a", name="glucose_lstm", facts=GLUCOSE_FACTS))
    with pytest.raises(medinfer.UsageError, match="declares units None; the FHIR glucose forecast needs mg/dL"):
        to_fhir(no_units.predict(x), "Patient/p1")
    no_horizon = medinfer.load(tiny.build_sequence(tmp_path / "b", name="glucose_lstm", units="mg/dL"))
    with pytest.raises(medinfer.UsageError, match="no forecast horizon"):
        to_fhir(no_horizon.predict(x), "Patient/p1")


def test_cell_type_observation_carries_the_label_and_its_probability(bundles: dict[str, Path]) -> None:
    pytest.importorskip("fhir.resources")
    x = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0]], np.float32)
    pred = medinfer.load(bundles["gene_expression_svd"]).predict(x)
    observations = _resources(to_fhir(pred, "Patient/p1"))["Observation"]
    probabilities = tiny.multiclass_reference(x)
    for obs, row in zip(observations, probabilities):
        label = tiny.MULTI_LABELS[int(np.argmax(row))]
        assert obs["valueCodeableConcept"]["coding"][0]["code"] == label
        (component,) = obs["component"]
        assert component["valueQuantity"]["value"] == pytest.approx(float(row.max()), abs=1e-6)
        assert component["valueQuantity"]["code"] == "1" and label in component["code"]["text"]


def test_binary_label_probability_is_that_of_the_decided_label(bundles: dict[str, Path]) -> None:
    pytest.importorskip("fhir.resources")
    pred = medinfer.load(bundles["drug_activity_rf"]).predict(tiny.GOLDEN_X)
    observations = _resources(to_fhir(pred, "Patient/p1", generic=True))["Observation"]
    for obs, row in zip(observations, tiny.reference(tiny.GOLDEN_X)):
        label = ("negative", "positive")[int(np.argmax(row))]
        assert obs["valueCodeableConcept"]["text"] == label
        assert obs["component"][0]["valueQuantity"]["value"] == pytest.approx(float(row.max()), abs=1e-6)
        assert "research use" in obs["code"]["text"] and "not to be used for patient care" in json.dumps(obs["note"])


@pytest.mark.parametrize(("name", "match"), [
    ("drug_activity_rf", r"FHIR output of drug_activity_rf is refused: it is a research tool.*generic=True"),
    ("tiny_logistic", r"tiny_logistic has no patient-facing FHIR mapping.*generic=True"),
])
def test_research_and_unmapped_models_are_refused_unless_generic(bundles: dict[str, Path], name: str,
                                                                 match: str) -> None:
    pytest.importorskip("fhir.resources")
    pred = medinfer.load(bundles[name]).predict(tiny.GOLDEN_X)
    with pytest.raises(medinfer.UsageError, match=match):
        to_fhir(pred, "Patient/p1")
    assert len(_resources(to_fhir(pred, "Patient/p1", generic=True))["Observation"]) == 3


@pytest.mark.parametrize("subject", ["123", "", "Patient/", "patient/1", "Patient/1 2"])
def test_subject_must_be_a_reference(bundles: dict[str, Path], subject: str) -> None:
    pytest.importorskip("fhir.resources")
    pred = medinfer.load(bundles["clinical_notes_tfidf"]).predict(tiny.GOLDEN_X)
    with pytest.raises(medinfer.UsageError, match="must be a reference such as 'Patient/123'"):
        to_fhir(pred, subject)


def test_time_without_a_zone_is_refused(bundles: dict[str, Path]) -> None:
    pytest.importorskip("fhir.resources")
    pred = medinfer.load(bundles["glucose_lstm"]).predict(np.ones((1, 3, 2), np.float32))
    with pytest.raises(medinfer.UsageError, match="has no time zone"):
        to_fhir(pred, "Patient/p1", at=datetime(2026, 1, 31, 8, 0))


def test_missing_extra_is_named(bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    pred = medinfer.load(bundles["clinical_notes_tfidf"]).predict(tiny.GOLDEN_X)
    monkeypatch.setitem(sys.modules, "fhir.resources.R4B", None)  # import fails as if not installed
    with pytest.raises(medinfer.MissingExtraError, match=r"pip install 'medinfer\[fhir\]'"):
        to_fhir(pred, "Patient/p1")


def test_the_core_does_not_load_the_encoder_until_asked(bundles: dict[str, Path]) -> None:
    code = ("import sys, medinfer, numpy as np\n"
            f"pred = medinfer.load({str(bundles['clinical_notes_tfidf'])!r}).predict(np.zeros((1, 3), np.float32))\n"
            "loaded = sorted(m for m in sys.modules if m.startswith(('medinfer.tools', 'fhir', 'pydantic')))\n"
            "print(loaded)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_writes_the_bundle_and_refuses_without_a_subject(bundles: dict[str, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("fhir.resources")
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 4, 2), np.float32) * 7)
    out = tmp_path / "glucose.fhir.json"
    args = ["predict", str(bundles["glucose_lstm"]), str(x), "--fhir-out", str(out)]
    assert main(args) == 2 and "needs --fhir-subject" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--fhir-subject", "Patient/p1", "--fhir-time", "2026-01-31T08:00:00Z",
                 "--fhir-basis", "Observation/cgm-9"]) == 0
    assert "FHIR R4 transaction Bundle written to" in capsys.readouterr().out
    (obs1, obs2) = _resources(json.loads(out.read_text()))["Observation"]
    assert obs1["effectiveDateTime"] == "2026-01-31T08:30:00Z" and obs1["valueQuantity"]["value"] == 7.0
    assert main([*args, "--fhir-subject", "Patient/p1", "--fhir-time", "08:00 yesterday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_cli_refuses_the_research_model(bundles: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("fhir.resources")
    x = tmp_path / "x.npy"
    np.save(x, tiny.GOLDEN_X)
    out = tmp_path / "drug.json"
    base = ["predict", str(bundles["drug_activity_rf"]), str(x), "--fhir-out", str(out), "--fhir-subject", "Patient/1"]
    assert main(base) == 2 and "research tool" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--fhir-generic", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fhir_out"] == str(out)
    assert len(_resources(json.loads(out.read_text()))["Observation"]) == 3
