"""Explanations where results go: ``medinfer predict --explain`` (table and JSON), a FHIR note, and a CT slice (the
heat map with an occlusion refinement around each finding: printed, overlaid with a colour bar, in the DICOM SR)."""

from __future__ import annotations

import json
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main
from medinfer.tools.fhir import to_fhir

from ..helpers import tiny_explain

X = np.array([[1.0, 2.0, 3.0], [-2.0, 0.5, -1.0]], np.float32)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_explain.linear(tmp_path_factory.mktemp("explain_out") / "tiny_logistic")


def test_cli_explain_prints_the_top_attributions_with_their_signs(bundle: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.npy"
    np.save(path, X)
    assert main(["predict", str(bundle), str(path), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "why (linear, log-odds of 'positive' in log-odds; exact)" in out
    # sample 0: gamma 3 x 4 = +12, alpha 1 x -2 = -2, beta 2 x -1 = -2 (the tiny model's weights)
    assert "gamma +12, alpha -2, beta -2" in out
    assert main(["predict", str(bundle), str(path), "--explain", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["explanation"]["samples"][1]["top"] == [["alpha", 4.0], ["gamma", -4.0], ["beta", -0.5]]
    assert main(["predict", str(bundle), str(path)]) == 0
    assert "why" not in capsys.readouterr().out


def test_fhir_resources_carry_the_explanation_as_a_note(bundle: Path) -> None:
    pytest.importorskip("fhir.resources")
    model = medinfer.load(bundle)
    doc = to_fhir(model.predict(X, explain=True), "Patient/1", generic=True)
    notes = [[n["text"] for n in e["resource"].get("note", [])] for e in doc["entry"]
             if e["resource"]["resourceType"] == "Observation"]
    assert len(notes) == 2 and all(any(t.startswith("Why (computed on the device") for t in n) for n in notes)
    assert "gamma +12" in next(t for t in notes[0] if t.startswith("Why"))
    plain = to_fhir(model.predict(X), "Patient/1", generic=True)
    assert not any("Why" in n["text"] for e in plain["entry"] for n in e["resource"].get("note", []))


def test_a_ct_slice_is_explained_around_each_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hd = pytest.importorskip("highdicom")
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm")
    bundle = tiny_explain.occlusion(tmp_path / "tiny_ct")
    overlay = tmp_path / "heat.png"
    code = main(["predict", str(bundle), ct, "--explain", "--overlay", str(overlay), "--dicom-out",
                 str(tmp_path / "out"), "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    findings = doc["explanation"]["findings"]
    assert findings and all(f["score"] >= 0.5 and f["top"] for f in findings)
    assert doc["explanation_overlay"] == str(tmp_path / "heat.explain.png")
    png = (tmp_path / "heat.explain.png").read_bytes()
    assert png.startswith(b"\x89PNG") and png != overlay.read_bytes()
    sr = hd.sr.srread(tmp_path / "out" / "CT_small.sr.dcm")
    texts = [str(e.value) for e in sr.iterall() if e.keyword == "TextValue"]
    assert sum(t.startswith("Why (computed on the device") for t in texts) == len(findings)
    # the finding's regions are in slice coordinates, inside the finding's window
    f = findings[0]
    rows = [int(v) for v in f["top"][0][0].split(", ")[0].split(" ")[1].split("-")]
    assert f["row"] - 50 <= rows[0] <= rows[1] < f["row"] + 50


def test_verify_checks_the_explanation_graph_too(bundle: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(bundle)]) == 0
    assert "explanation (linear) checked" in capsys.readouterr().out
    wrong = tiny_explain.linear(tmp_path / "wrong", graph=tiny_explain.linear_graph(weights=tiny_explain.LOGIT_W * 2))
    assert main(["verify", str(wrong)]) == 7  # the self-test exit code
    assert "explanation graph" in capsys.readouterr().err
