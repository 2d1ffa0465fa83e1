"""A model's clinical codings are declared by its spec, written into the manifest and read from there by the FHIR
and DICOM outputs — no table keyed by model name in tools/; bundles written before the field keep their output."""

from __future__ import annotations

import ast
from pathlib import Path

import medinfer
import pytest
from medinfer.codings import WRITTEN_BEFORE, Coding, Codings, FhirResult, codings_of
from medinfer.tools.fhir import to_fhir

from ..helpers import tiny
from ..helpers.fields import MakeBundle

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = set(WRITTEN_BEFORE)
DECLARED = Codings(fhir=FhirResult("RiskAssessment", Coding("urn:example:results", "finding-x", "Finding X risk"),
                                   outcome=Coding("http://snomed.info/sct", "12345", "Finding X")),
                   dicom_finding=Coding("99EXAMPLE", "FX", "Finding X"))


def test_a_declared_coding_is_read_from_the_manifest(make_bundle: MakeBundle) -> None:
    pytest.importorskip("fhir.resources")
    # a bundle named like a shipped model, declaring other codes: its manifest wins over any table
    path = make_bundle("b", name="clinical_notes_tfidf", codings=DECLARED)
    model = medinfer.load(path)
    assert model.manifest.codings == DECLARED and codings_of(model.manifest) == DECLARED
    doc = to_fhir(model.predict(tiny.GOLDEN_X[:1]), "Patient/p1")
    (risk,) = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "RiskAssessment"]
    assert risk["code"]["coding"] == [{"system": "urn:example:results", "code": "finding-x",
                                       "display": "Finding X risk"}]
    assert risk["prediction"][0]["outcome"]["coding"][0]["code"] == "12345"


def test_a_model_declaring_none_is_refused_and_an_old_bundle_keeps_its_codes(make_bundle: MakeBundle) -> None:
    new = medinfer.load(make_bundle("new", name="clinical_notes_tfidf", codings=Codings()))
    with pytest.raises(medinfer.UsageError, match="declares no FHIR coding"):
        to_fhir(new.predict(tiny.GOLDEN_X[:1]), "Patient/p1")
    old = medinfer.load(make_bundle("old", name="clinical_notes_tfidf"))  # written before the field
    assert old.manifest.codings is None and codings_of(old.manifest) == WRITTEN_BEFORE["clinical_notes_tfidf"]


def test_the_dicom_finding_comes_from_the_manifest(tmp_path: Path) -> None:
    pytest.importorskip("highdicom")
    from medinfer.tools import dicom
    from medinfer.tools.dicom_out import build_sr
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    ct = Path(get_testdata_file("CT_small.dcm"))
    model = medinfer.load(tiny.build_ct(tmp_path / "ct", name="any_ct_model", threshold=0.0, codings=DECLARED))
    sr = build_sr(model, dicom.predict_file(model, ct), dcmread(ct), "medinfer")
    codes = {(item.CodeValue, item.CodingSchemeDesignator) for item in _walk(sr) if hasattr(item, "CodeValue")}
    assert ("FX", "99EXAMPLE") in codes


def _walk(ds: object) -> list:
    out = []
    for elem in ds:  # type: ignore[attr-defined]
        if elem.VR == "SQ":
            for item in elem.value:
                out += [item, *_walk(item)]
    return out


def test_the_shipped_specs_declare_what_their_old_bundles_were_given() -> None:
    """Exporting a shipped model again does not change its FHIR or DICOM output."""
    pytest.importorskip("sklearn")
    from medinfer.train import registry

    for name in SHIPPED:
        assert registry.get(name).codings == WRITTEN_BEFORE[name], name


def _name_keyed_tables(path: Path) -> list[str]:
    """Dict literals, or ``.get(x.name)`` lookups, keyed by a shipped model's name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value in SHIPPED for k in node.keys):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_output_tool_keeps_a_table_of_models() -> None:
    found = [hit for layer in ("tools", "cli", "fleet") for p in sorted((ROOT / "runtime" / layer).rglob("*.py"))
             for hit in _name_keyed_tables(p)]
    assert not found, f"declare the coding in the spec (ModelSpec.codings), not in a table: {found}"


def test_the_table_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "dicom_out.py"
    sample.write_text('FINDINGS = {"lung_nodule_cnn": ("786838002", "SCT", "Pulmonary nodule")}\n')
    assert _name_keyed_tables(sample) == ["dicom_out.py:1"]
