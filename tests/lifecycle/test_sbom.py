"""`medinfer sbom`: CycloneDX 1.6 documents of the installed environment and of bundles (ML-BOM), valid against the
CycloneDX schema, with digests that match the files on disk; the SOUP register derived from them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import medinfer
import onnxruntime
import pytest
from medinfer.cli import main
from medinfer.manifest import DataProvenance, DataSource, load_manifest

from ..helpers import tiny

pytest.importorskip("cyclonedx")


def _validate(doc: dict) -> object:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))


@pytest.fixture(scope="module")
def environment() -> dict:
    from medinfer.lifecycle.sbom import environment_bom

    return environment_bom(["onnxruntime"])


def test_the_environment_sbom_is_valid_and_pins_onnxruntimes_native_libraries(environment: dict) -> None:
    assert _validate(environment) is None and environment["specVersion"] == "1.6"
    ort = next(c for c in environment["components"] if c["name"] == "onnxruntime")
    assert ort["version"] == onnxruntime.__version__ and ort["purl"] == f"pkg:pypi/onnxruntime@{ort['version']}"
    assert ort.get("licenses"), "onnxruntime's licence is missing"
    native = [f for f in ort["components"] if {"name": "medinfer:native", "value": "true"} in f.get("properties", [])]
    assert native, "no native library of onnxruntime is listed"
    root = Path(onnxruntime.__file__).parents[1]
    for f in native[:3]:
        on_disk = hashlib.sha256((root / f["name"]).read_bytes()).hexdigest()
        assert f["hashes"] == [{"alg": "SHA-256", "content": on_disk}]
    assert {"name": "medinfer:record-match", "value": "true"} in native[0]["properties"]
    assert any(d["ref"] == ort["bom-ref"] for d in environment["dependencies"])


def test_a_document_that_breaks_the_schema_is_caught(environment: dict) -> None:
    broken = json.loads(json.dumps(environment))
    broken["components"][0]["hashes"] = [{"alg": "SHA-256", "content": "not hex"}]
    assert _validate(broken) is not None


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = DataProvenance(sources=(DataSource(name="chembl_sulfonamides", package="rdkit", version="2026.9.1",
                                              file="rdkit/Contrib/FreeWilson/data/CHEMBL2321810.smi",
                                              sha256="ab" * 32, licence="CC-BY-SA-3.0", citation="ChEMBL"),),
                          split={"method": "scaffold"}, description="ChEMBL aryl sulfonamides")
    return tiny.build(tmp_path_factory.mktemp("b") / "tiny_logistic", data=data)


def test_a_bundle_is_a_valid_ml_bom_with_its_files_model_card_data_and_producers(bundle: Path) -> None:
    from medinfer.lifecycle.mlbom import bundle_bom

    doc = bundle_bom(bundle)
    assert _validate(doc) is None
    model = doc["metadata"]["component"]
    manifest = load_manifest(bundle)
    assert model["type"] == "machine-learning-model" and model["name"] == manifest.name
    assert model["hashes"][0]["content"] == hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    files = {f["name"]: f["hashes"][0]["content"] for f in model["components"]}
    for name in manifest.files:
        assert files[name] == hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    card = model["modelCard"]
    assert card["modelParameters"]["task"] == manifest.task
    metrics = {m["type"]: m for m in card["quantitativeAnalysis"]["performanceMetrics"]}
    assert float(metrics["accuracy"]["value"]) == manifest.metrics.heldout["accuracy"].value
    assert card["considerations"]["useCases"] == [manifest.card.intended_use]
    data = next(c for c in doc["components"] if c["type"] == "data")
    assert data["purl"] == "pkg:pypi/rdkit@2026.9.1" and data["hashes"][0]["content"] == "ab" * 32
    assert data["data"][0]["type"] == "dataset"
    assert {"ref": data["bom-ref"]} in card["modelParameters"]["datasets"]
    ops = next(p["value"] for p in model["properties"] if p["name"] == "medinfer:operators:ai.onnx")
    assert "MatMul" in ops and "Softmax" in ops


def test_sbom_command_writes_the_documents_and_the_soup_register(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "sbom"
    assert main(["sbom", str(bundle), "--out", str(out), "--dist", "onnxruntime"]) == 0
    for name in ("environment.cdx.json", "tiny_logistic.cdx.json", "soup.json", "soup.md"):
        assert (out / name).is_file(), name
    rows = {r["name"]: r for r in json.loads((out / "soup.json").read_text())["items"]}
    required = medinfer.load_manifest(bundle).requires
    assert required is not None
    ort = rows["onnxruntime"]["requirement"]
    assert ort.startswith(f"onnxruntime >= {required.onnxruntime}: runs tiny_logistic") and "MatMul" in ort
    assert "medinfer [cpu]" in rows["onnxruntime"]["why"] and "| onnxruntime |" in (out / "soup.md").read_text()


def test_sbom_of_a_tampered_bundle_is_refused(bundle: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "tiny_logistic"
    shutil.copytree(bundle, copy)
    (copy / "model_card.md").write_text("edited")
    assert main(["sbom", str(copy), "--out", str(tmp_path / "o"), "--no-environment"]) == 3
