"""FHIR Provenance for every result (HL7 AI Transparency on FHIR): target = the result, agent = the Device of the
bundle, entity = the input (the digest its audit record holds) and the basis resources, reason and security label
AIAST on every AI-made resource."""

from __future__ import annotations

import json
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.audit import input_digest
from medinfer.cli import main
from medinfer.tools.fhir import to_fhir

from ..helpers import tiny
from .test_fhir import _resources

pytest.importorskip("fhir.resources")
AIAST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST",
         "display": "Artificial Intelligence asserted"}


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build(tmp_path_factory.mktemp("fhirp") / "notes", name="clinical_notes_tfidf")


def test_every_result_has_a_provenance_naming_device_input_and_basis(notes: Path) -> None:
    model = medinfer.load(notes)
    feeds, _ = model.prepare(tiny.GOLDEN_X)
    digest = input_digest(feeds)
    doc = to_fhir(model.predict(tiny.GOLDEN_X), "Patient/p1", basis=["DocumentReference/report-7"],
                                               input_sha256=digest)
    res = _resources(doc)
    (device,) = res["Device"]
    risks, provenances = res["RiskAssessment"], res["Provenance"]
    assert len(provenances) == len(risks) == len(tiny.GOLDEN_X)
    assert sorted(p["target"][0]["reference"] for p in provenances) == sorted(r["_fullUrl"] for r in risks)
    for prov in provenances:
        assert prov["reason"][0]["coding"] == [AIAST]
        (agent,) = prov["agent"]
        assert agent["who"]["reference"] == device["_fullUrl"] and agent["type"]["coding"][0]["code"] == "author"
        assert model.manifest_sha256 in agent["who"]["display"]
        entities = {json.dumps(e["what"], sort_keys=True) for e in prov["entity"]}
        assert any(json.loads(e).get("identifier", {}).get("value") == digest for e in entities)
        assert json.dumps({"reference": "DocumentReference/report-7"}, sort_keys=True) in entities
    for risk in risks:
        assert AIAST in risk["meta"]["security"]


def test_the_cli_provenance_names_the_input_its_audit_record_holds(notes: Path, tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, tiny.GOLDEN_X)
    log = tmp_path / "audit.jsonl"
    medinfer.load(notes, audit=log).predict(np.load(x))
    audited = json.loads(log.read_text().splitlines()[-1])["input_sha256"]
    out = tmp_path / "fhir.json"
    assert main(["predict", str(notes), str(x), "--fhir-out", str(out), "--fhir-subject", "Patient/p1"]) == 0
    provenances = _resources(json.loads(out.read_text()))["Provenance"]
    values = {e["what"]["identifier"]["value"] for p in provenances for e in p["entity"] if "identifier" in e["what"]}
    assert values == {audited}


def test_a_malformed_input_digest_is_refused(notes: Path) -> None:
    pred = medinfer.load(notes).predict(tiny.GOLDEN_X)
    with pytest.raises(medinfer.UsageError, match="64 lowercase hex"):
        to_fhir(pred, "Patient/p1", input_sha256="not-a-digest")
