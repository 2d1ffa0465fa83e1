"""Peers that cannot run say why; the peer worker's protocol; accelerator parity on a deterministic sample, never
the CPU against itself; interleaved concurrency; the per-operator int8 table. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import medinfer
import numpy as np

from benchmarks import accelerator, int8_ops, peers
from benchmarks.concurrency import concurrency, markdown

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_peer_venv_is_recorded_with_its_reason(tiny_bundle_ro: Path, monkeypatch) -> None:
    monkeypatch.setitem(peers.VENVS, "openvino", ROOT / "build" / "no-such-venv")
    with peers.Pool(["openvino"], progress=lambda _: None) as pool:
        cands, why = pool.contenders(tiny_bundle_ro, 1, None, {"fetch": ["probabilities"], "threads": 2})
    assert cands == [] and why["OpenVINO EP [default]"] == {"reason": "venv_missing"}  # a code: the report words it


def test_the_peer_worker_answers_errors_instead_of_dying() -> None:
    requests = [{"op": "time", "key": "nothing loaded", "seconds": 0.01}, {"op": "nope"}, {"op": "quit"}]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peer_worker.py")], check=True, timeout=60,
                          input="".join(json.dumps(r) + "\n" for r in requests), capture_output=True, text=True)
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["ok"] for a in answers] == [False, False] and "unknown op" in answers[1]["error"]


def test_parity_sample_is_deterministic_and_valid(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    model.parity_sample = lambda: None  # a bundle written before parity.npz existed
    a, source = accelerator.parity_sample(model, n=64)
    b, _ = accelerator.parity_sample(model, n=64)
    np.testing.assert_array_equal(a, b)
    assert source["source"] == "regenerated from the golden inputs" and source["n"] == 64
    assert len(model.predict(a).scores) == 64  # inside the contract: predict accepts every sample


def test_the_bundles_own_parity_sample_is_used_when_it_has_one(built) -> None:
    _, bundle = built("drug_activity_rf")
    model = medinfer.load(bundle)
    shipped = model.parity_sample()
    assert shipped is not None  # every new bundle ships its held-out parity sample (parity.npz)
    held = next(iter(shipped[0].values()))
    got, source = accelerator.parity_sample(model)
    np.testing.assert_array_equal(got, held)
    assert source == {"source": "bundle held-out parity sample", "n": len(held)}


def test_accelerator_table_never_compares_the_cpu_with_itself(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    doc = {"seconds": 0.1, "env": {}, "results": [accelerator.check_bundle(tiny_bundle_ro, [], [1, 4], 0.05,
                                                                           tmp_path)],
           "diagnosis": [{"provider": "CUDAExecutionProvider", "usable": False, "why": "not in this build"}]}
    assert "parity_vs_cpu" not in doc["results"][0]["providers"]["cpu"]
    lines = accelerator.markdown(doc)
    assert "No accelerator ran on this machine (CUDAExecutionProvider: not in this build)" in lines[-1]


def test_concurrency_interleaves_both_modes(tiny_bundle_ro: Path) -> None:
    row = concurrency(tiny_bundle_ro, threads=2, seconds=0.4, rounds=2)
    assert len(row["direct"]["round_requests_per_s"]) == len(row["micro_batched"]["round_requests_per_s"]) == 2
    text = "\n".join(markdown({"interleaved": True, "rows": [row]}))
    assert "alternate in shuffled rounds" in text and "| tiny_logistic | 2 |" in text


def test_int8_table_renders_each_cpu() -> None:
    run = {"env": {"cpu": {"model": "X", "usable_cores": 2, "flags": ["avx2"]}, "onnxruntime": "1"}, "threads": 1,
           "runs": 10, "variants": {"default": {"total_us": 1000.0, "ops_us": {"Conv": 600.0, "Gemm": 400.0}},
                                    "int8": {"total_us": 400.0, "ops_us": {"QLinearConv": 300.0, "QGemm": 100.0}}}}
    text = "\n".join(int8_ops.render({"command": "c", "runs": [run]}))
    assert "1000 µs fp32, 400 µs int8 (0.40×)" in text and "| QLinearConv | – | 300.0 | 75% |" in text


def test_int8_table_renders_every_int8_variant() -> None:
    run = {"env": {"cpu": {"model": "X", "usable_cores": 2, "flags": ["amx_int8"]}, "onnxruntime": "1"}, "threads": 1,
           "runs": 10, "variants": {"default": {"total_us": 1000.0, "ops_us": {"Conv": 1000.0}},
                                    "int8": {"total_us": 400.0, "ops_us": {"QLinearConv": 400.0}},
                                    "int8_nhwc": {"total_us": 300.0, "ops_us": {"MatMulNBits": 100.0}}}}
    text = "\n".join(int8_ops.render({"command": "c", "runs": [run]}))
    assert "400 µs int8 (0.40×)" in text and "300 µs int8_nhwc (0.30×)" in text
    assert "| MatMulNBits | – | 100.0 | 33% |" in text


def test_the_accelerator_document_is_raw_data_with_its_provenance(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    import shutil

    from benchmarks import results

    bundles = tmp_path / "bundles"
    shutil.copytree(tiny_bundle_ro, bundles / "tiny_logistic")
    out = tmp_path / "out" / "accelerator.json"
    code = accelerator.main(["--bundles", str(bundles), "--providers", "cuda", "--batch", "1", "--seconds", "0.01",
                             "--out", str(out)])
    doc = json.loads(out.read_text())
    assert code == 0 and results.problems(doc, "accelerator") == []
    assert doc["provenance"]["started"] == doc["time"] and "tiny_logistic" in doc["bundles"]
    cuda = doc["results"][0]["providers"]["cuda"]
    diagnosis = next(d for d in doc["diagnosis"] if d["provider"] == "CUDAExecutionProvider")
    if cuda["status"] == "failed":  # no GPU here: the reasons are kept as captured errors, their words rendered
        assert cuda["error"]["exception"] == "ProviderError" and "why" not in diagnosis
        assert diagnosis["error"]["message"] in "\n".join(accelerator.markdown(doc))
