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
    assert results["command"] and set(results["models"]) == {
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


def test_results_file_is_consistent_and_names_the_published_bundles() -> None:
    """Checkable in a clone: each model's numbers are in range and its goals are what its numbers give (the rule
    of medinfer.train.domain.evaluate), and it names the same model.onnx sha256 as benchmarks/results/models.json,
    the published metrics of the same bundles."""
    results = json.loads(domain.RESULTS.read_text())
    published = {m["model"]: m["model_sha256"] for m in json.loads(
        (domain.RESULTS.parent / "models.json").read_text())["models"]}
    for name, m in results["models"].items():
        assert m["model_sha256"] == published.get(name), f"{name}: domain.json and models.json name other bundles"
        assert 0.0 <= m["acceptance"] <= 1.0 and 0.5 < m["coverage"] < 1.0 and m["n_in_domain"] > 0, name
        assert set(m["goals"]) == set(m["shifts"]) and m["shifts"], name
        for shift, s in m["shifts"].items():
            goal = m["goals"][shift]
            assert s["kind"] in ("gross", "subtle") and s["n"] > 0, (name, shift)
            assert 0.0 <= s["auroc"] <= 1.0 and 0.0 <= s["rejected"] <= 1.0, (name, shift)
            assert goal["goal"] == {"gross": 0.95, "subtle": 0.80}[s["kind"]], (name, shift)
            assert goal["met"] == (s["auroc"] >= goal["goal"]), (name, shift)
        # "added" comes from the unrounded medians; the file rounds them to 0.01 µs and "added" to 1e-4
        a, b = m["latency"]["median_us_with_guard"], m["latency"]["median_us_without_guard"]
        assert m["latency"]["added"] == pytest.approx(a / b - 1, abs=0.005 * (1 / b + a / b**2) + 5e-5), name


@pytest.mark.parametrize("name", ["clinical_notes_tfidf", "drug_activity_rf", "gene_expression_svd", "glucose_lstm",
                                  "lung_nodule_cnn"])
def test_results_file_has_what_the_current_spec_measures(built, name: str) -> None:
    """Every shifted set the current spec measures on its sample-trained bundle is in the committed file with the
    same kind, goal and description (its counts aside), and the coverage goal is the same: a spec that added or
    changed a domain evaluation since domain.json was made fails here. (A sample may measure fewer sets: the
    lung CNN's other-body-region CT needs the full data.)"""
    import re

    _, bundle = built(name)
    fresh = domain.collect(bundle.parent)["models"][name]
    recorded = json.loads(domain.RESULTS.read_text())["models"][name]

    def facts(m: dict, shift: str) -> tuple:
        s = m["shifts"][shift]
        return s["kind"], m["goals"][shift]["goal"], re.sub(r"\d+", "#", s["description"])

    assert fresh["shifts"] and fresh["coverage"] == recorded["coverage"]
    missing = sorted(set(fresh["shifts"]) - set(recorded["shifts"]))
    assert not missing, f"{name}: the spec measures {missing}, which domain.json does not hold (run make demo and " \
                        "python -m benchmarks.domain)"
    for shift in fresh["shifts"]:
        assert facts(fresh, shift) == facts(recorded, shift), (name, shift)
    assert set(fresh) == set(recorded) - {"latency"}


def test_render_writes_one_row_per_shift_and_says_when_a_goal_is_missed(tmp_path: Path) -> None:
    results = {"command": "x", "models": {"m": {
        "acceptance": 0.985, "coverage": 0.99,
        "latency": {"added": 0.131, "median_us_without_guard": 100.0, "median_us_with_guard": 113.1},
        "shifts": {"a": {"kind": "gross", "auroc": 0.99, "rejected": 0.97},
                   "b": {"kind": "subtle", "auroc": 0.71, "rejected": 0.3}},
        "goals": {"a": {"goal": 0.95, "met": True}, "b": {"goal": 0.8, "met": False}}}}}
    rows = domain.render(results).splitlines()[2:]
    assert rows == ["| m | 98.5% (goal 99%), **below the goal** | +13.1% (100 → 113 µs), **over the 10% goal** | a | "
                    "gross | 0.990 | 97% | ≥ 0.95 met |",
                    "|  |  |  | b | subtle | 0.710 | 30% | ≥ 0.8 **not met** |"]
    results["models"]["m"]["acceptance"] = 0.9904  # at the goal: no mark
    assert "98.5%" not in domain.render(results) and "| 99.0% (goal 99%) |" in domain.render(results)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{domain.BEGIN}\nold\n{domain.END}\nrest\n")
    domain.rewrite_readme(readme, "T")
    assert readme.read_text() == f"intro\n{domain.BEGIN}\nT\n{domain.END}\nrest\n"


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
