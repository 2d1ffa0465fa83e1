"""examples/: every command of examples/README.md runs against a bundle of its model and gives answers of the
expected shape; the committed sample bundle verifies, answers and is what the repository's training code makes;
the Python example and the Triton client example run as written."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main

from .test_readme_commands import shell_lines

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SAMPLE = EXAMPLES / "sample-bundle" / "gene_expression_svd"
README = (EXAMPLES / "README.md").read_text()
# How many answers each sample input holds (the files' own counts, checked below against the files).
ANSWERS = {"gene_expression_svd.csv": 5, "drug_activity_rf.csv": 4, "clinical_notes_tfidf.json": 4,
           "glucose_lstm.json": 2}
# Raw inputs (the device computes the features): answers per file.
RAW_ANSWERS = {"drug_activity_rf.smi": 4, "glucose_lstm_cgm.csv": 1}
MODELS = ("gene_expression_svd", "drug_activity_rf", "clinical_notes_tfidf", "glucose_lstm", "lung_nodule_cnn")


def _lines_for(bundle_arg: str) -> list[str]:
    return [line for _, line in shell_lines(README) if bundle_arg in line.split() or "get_ct_slice" in line
            and bundle_arg.endswith("lung_nodule_cnn")]


def _run_line(line: str, bundle: Path, where: Path, capsys) -> dict | None:
    """One README line with the bundle and the examples folder substituted; predict lines with --json."""
    args = [f"{ROOT}/{a}" if a.startswith("examples/") else a for a in shlex.split(line)]
    if args[0] == "python":
        proc = subprocess.run([sys.executable, *args[1:]], cwd=where, capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        return None
    assert args[0] == "medinfer"
    args = [str(bundle) if a.startswith("bundles/") else a for a in args[1:]]
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_every_model_has_a_sample_input_and_a_command() -> None:
    from medinfer.train import registry

    assert set(registry.names()) == set(MODELS)
    for name in MODELS:
        assert _lines_for(f"bundles/{name}"), name
    assert len(np.load(EXAMPLES / "gene_expression_svd.npy")) == ANSWERS["gene_expression_svd.csv"]
    assert len((EXAMPLES / "drug_activity_rf.smi").read_text().splitlines()) == RAW_ANSWERS["drug_activity_rf.smi"]
    for source, n in ANSWERS.items():  # the counts are the files' own
        if source.endswith(".csv"):
            assert len((EXAMPLES / source).read_text().splitlines()) == n + 1
        else:
            assert len(json.loads((EXAMPLES / source).read_text())) == n
    assert np.asarray(json.loads((EXAMPLES / "glucose_lstm.json").read_text())).shape == (2, 24, 10)


@pytest.mark.parametrize("name", MODELS)
def test_each_example_command_answers_on_a_bundle_of_its_model(built, name: str, tmp_path: Path, capsys,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, bundle = built(name)
    monkeypatch.chdir(tmp_path)
    predicted = 0
    for line in _lines_for(f"bundles/{name}"):
        answer = _run_line(line, bundle, tmp_path, capsys)
        if answer is None:
            continue
        predicted += 1
        source = Path(shlex.split(line)[3]).name
        if name == "lung_nodule_cnn":
            assert len(answer["windows"]) > 1 and 0.0 <= answer["max"]["score"] <= 1.0
            assert (tmp_path / "heat.png").read_bytes().startswith(b"\x89PNG")
            continue
        scores = np.asarray(answer["scores"], dtype=float)
        expected = {**ANSWERS, **RAW_ANSWERS}.get(source, len(scores))
        assert len(scores) == expected and len(scores) >= 1 and np.isfinite(scores).all()
        if source == "drug_activity_rf.smi":  # the names of the .smi file are the row ids
            assert answer["ids"] == [row.split()[1] for row in (EXAMPLES / source).read_text().splitlines()]
            assert answer["in_domain"][answer["ids"].index("celecoxib")] is False
        if "--id-column" in line:  # the ids come back with the answers
            ids = [row.split(",", 1)[0] for row in (EXAMPLES / source).read_text().splitlines()[1:]]
            assert answer["ids"] == ids
        if source == "drug_activity_rf.csv":  # celecoxib lies outside the series: flagged
            assert answer["in_domain"][answer["ids"].index("celecoxib")] is False
        if name == "glucose_lstm":  # a forecast in mg/dL
            assert ((scores > 10) & (scores < 600)).all(), scores
    assert predicted >= 1


# -- the committed sample bundle: device-level (numpy + onnxruntime) ------------------------------------------------
def test_the_sample_bundle_verifies_and_answers_with_ids(capsys) -> None:
    assert main(["verify", str(SAMPLE)]) == 0
    assert "self-test" in capsys.readouterr().out
    answer = _run_line("medinfer predict examples/sample-bundle/gene_expression_svd examples/gene_expression_svd.csv "
                       "--id-column cell", SAMPLE, ROOT, capsys)
    assert answer is not None and len(answer["ids"]) == 5 and len(answer["labels"]) == 5
    provenance = json.loads((EXAMPLES / "sample-bundle.json").read_text())
    assert provenance["bundle"] == "examples/sample-bundle/gene_expression_svd"
    assert len(provenance["commit"]) == 40 and provenance["command"].endswith("scripts/make_examples.py")
    manifest = medinfer.load_manifest(SAMPLE)
    assert [s.name for s in manifest.data.sources] == ["pbmc68k_reduced"] and not manifest.data.synthetic


def test_the_python_example_runs_as_written() -> None:
    proc = subprocess.run([sys.executable, "examples/predict.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    expected = medinfer.load(SAMPLE).predict(np.load(EXAMPLES / "gene_expression_svd.npy"))
    assert [line.split("  ")[0].strip() for line in proc.stdout.splitlines()[:5]] == [str(v) for v in expected.labels]


def test_the_sample_bundle_is_what_the_training_code_makes(built) -> None:
    """The tests' recipe (the ``built`` fixture) rebuilds the committed sample bundle: on the held-out example cells
    it gives the same labels and scores within the spec's parity tolerance, on any CPU (files differ in recorded
    floats and times, so they are not compared byte by byte)."""
    _, rebuilt = built("gene_expression_svd")
    x = np.load(EXAMPLES / "gene_expression_svd.npy")
    committed, fresh = medinfer.load(SAMPLE).predict(x), medinfer.load(rebuilt).predict(x)
    assert list(committed.labels) == list(fresh.labels)
    np.testing.assert_allclose(committed.scores, fresh.scores, atol=1e-3)
    assert medinfer.load_manifest(SAMPLE).inputs == medinfer.load_manifest(rebuilt).inputs


def test_the_triton_client_example(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    pytest.importorskip("tritonclient.http")
    from ..helpers.serving import serving

    lines = [line for _, line in shell_lines(README) if "triton_client.py" in line]
    assert len(lines) == 1
    args = [f"{ROOT}/{a}" if a.startswith("examples/") else a for a in shlex.split(lines[0])]
    with serving([SAMPLE], log=tmp_path / "log") as (url, _):
        args = [url if a == "localhost:8000" else a for a in args]
        proc = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    expected = medinfer.load(SAMPLE).predict(np.load(EXAMPLES / "gene_expression_svd.npy"))
    got = [line.rsplit(" ", 1) for line in proc.stdout.splitlines()]
    assert [g[0].strip() for g in got] == [str(v) for v in expected.labels]
    np.testing.assert_allclose([float(g[1]) for g in got], expected.scores.max(axis=1), atol=0.006)
