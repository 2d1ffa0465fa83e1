"""The README's applicability-domain table is rendered from benchmarks/results/domain.json, and that file from
the built bundles' manifests (checked whenever the same bundles are in bundles/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import domain

ROOT = Path(__file__).resolve().parents[2]


def test_readme_table_equals_the_results_file() -> None:
    results = json.loads(domain.RESULTS.read_text())
    readme = (ROOT / "README.md").read_text()
    block = readme.split(domain.BEGIN, 1)[1].split(domain.END, 1)[0].strip()
    assert block == domain.render(results), "run: python -m benchmarks.domain --bundles bundles"
    # the five specs at least; make demo also brings three models of its own (docs/bring-your-own-model.md)
    assert results["command"] and set(results["models"]) >= {
        "clinical_notes_tfidf", "drug_activity_rf", "gene_expression_svd", "glucose_lstm", "lung_nodule_cnn"}


def test_results_file_equals_the_bundles_it_came_from() -> None:
    """The complete check, on the machine that built the bundles (make demo); a clone has no bundles/ and checks the
    file by the two tests after this one instead."""
    results = json.loads(domain.RESULTS.read_text())
    bundles = ROOT / "bundles"
    current = domain.collect(bundles) if bundles.is_dir() else {"models": {}}
    same = [n for n, m in results["models"].items()
            if current["models"].get(n, {}).get("model_sha256") == m["model_sha256"]]
    if not same:
        pytest.skip("bundles/ does not hold the bundles domain.json was made from (make demo); the file is checked "
                    "against models.json and the current specs by the next two tests")
    for name in same:
        recorded = {k: v for k, v in results["models"][name].items() if k != "latency"}  # timed, not in the bundle
        assert current["models"][name] == recorded, name


def _results() -> dict:
    lat = {"added": 0.131, "median_us_without_guard": 100.0, "median_us_with_guard": 113.1}
    return {"command": "x", "models": {"m": {
        "acceptance": 0.985, "coverage": 0.99, "acceptance_goal_met": False,
        "latency": {"1": {**lat, "added": 0.05, "median_us_with_guard": 105.0}, "64": lat},
        "shifts": {"a": {"kind": "gross", "auroc": 0.99, "refused": 0.97, "role": "design", "synthetic": True,
                         "family": "fa"},
                   "b": {"kind": "subtle", "auroc": 0.71, "refused": 0.3, "role": "evaluation", "synthetic": False,
                         "family": "fb"}},
        "goals": {"a": {"refused_goal": 0.95, "met": True}, "b": {"refused_goal": 0.6, "auroc_goal": 0.8,
                                                                  "met": False}},
        "design": ["a"], "evaluation": ["b"]}}}


def test_render_writes_one_row_per_shift_and_says_when_a_goal_is_missed(tmp_path: Path) -> None:
    results = _results()
    rows = domain.render(results).splitlines()[2:]
    assert rows == ["| m | 98.5% (goal 99%), **below the goal** | +5.0% (100 → 105 µs) / +13.1% (100 → 113 µs), "
                    "**over the 10% goal** | a (synthetic) | design | gross | 97% | 0.990 | ≥ 95% refused met |",
                    "|  |  |  | b | evaluation | subtle | 30% | 0.710 | ≥ 60% refused, AUROC ≥ 0.8 **not met** |"]
    results["models"]["m"]["acceptance"] = 0.9904  # at the goal: no mark
    assert "98.5%" not in domain.render(results) and "| 99.0% (goal 99%) |" in domain.render(results)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{domain.BEGIN}\nold\n{domain.END}\nrest\n")
    domain.rewrite_readme(readme, "T")
    assert readme.read_text() == f"intro\n{domain.BEGIN}\nT\n{domain.END}\nrest\n"


def test_a_results_file_must_say_role_synthetic_refused_share_and_both_batch_sizes() -> None:
    assert domain.problems(_results()) == []
    for damage, expected in [
        (lambda m: m["shifts"]["a"].pop("synthetic"), "m/a: no synthetic flag or family"),
        (lambda m: m.update(evaluation=[]), "m: no held-out (evaluation) shift family"),
        (lambda m: m["shifts"]["b"].update(refused=None), "m/b: no refused share"),
        (lambda m: m["latency"].pop("64"), "m: no guard latency at batch 64"),
        (lambda m: m["goals"]["a"].pop("refused_goal"), "m/a: no refused goal and verdict"),
    ]:
        results = _results()
        damage(results["models"]["m"])
        assert expected in domain.problems(results)


def test_the_published_results_file_is_complete() -> None:
    """domain.json holds, per model, the refused share of every shifted set at the shipped threshold, its role
    (design or evaluation), its synthetic flag and the guard's latency at batch 1 and 64 (python -m benchmarks.domain
    refuses to write it otherwise)."""
    assert domain.problems(json.loads(domain.RESULTS.read_text())) == []


def test_the_guard_free_graph_keeps_every_other_output_and_nothing_of_the_guard(tmp_path: Path) -> None:
    import medinfer
    import numpy as np
    import onnx
    import onnxruntime as ort

    from ..helpers import tiny

    bundle = tiny.build_domain(tmp_path / "tiny_domain")
    onx = onnx.load(str(bundle / "model.onnx"))
    plain = domain.without_guard(onx)
    assert [o.name for o in plain.graph.output] == [o.name for o in onx.graph.output if o.name != "domain_score"]
    assert len(plain.graph.node) < len(onx.graph.node)
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    got = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    model = medinfer.load(bundle)
    want = model.session.run([o.name for o in plain.graph.output], {"x": x})
    for a, b in zip(got, want):  # default session options vs the bundle's profile: the golden tolerance
        np.testing.assert_allclose(a, b, rtol=0, atol=model.manifest.golden.atol)
