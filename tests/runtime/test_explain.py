"""On-device explanations (medinfer.explain) on tiny bundles built with onnx.helper: exactness against independent
references, the plain path untouched, refusals (no explanation, altered or foreign explanation graph, wrong golden),
occlusion and masking against hand-computed effects, the fidelity curves, and the audit opt-in."""

from __future__ import annotations

import json
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.errors import IntegrityError, ManifestError, SelfTestError, UnknownNameError, UsageError
from medinfer.explain import Explainer
from medinfer.fidelity import measure, sample_curves

from ..helpers import tiny, tiny_explain


@pytest.fixture(scope="module")
def linear_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_explain.linear(tmp_path_factory.mktemp("explain") / "tiny_logistic")


def rows(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3, 3, (n, 3)).astype(np.float32)


def test_linear_contributions_add_up_to_the_log_odds(linear_bundle: Path) -> None:
    model = medinfer.load(linear_bundle)
    x = rows()
    e = model.explain(x)
    assert (e.method, e.exact, e.features) == ("linear", True, tiny.FEATURES)
    reference = tiny_explain.log_odds(x)  # from the model's probabilities, not from the explanation graph
    np.testing.assert_allclose(e.output, reference, atol=1e-5)
    np.testing.assert_allclose(e.bias + e.values.astype(np.float64).sum(axis=1), reference, atol=1e-5)
    np.testing.assert_allclose(e.values, x * np.array([-2.0, -1.0, 4.0], np.float32), atol=1e-6)
    top = e.top(0, 2)
    assert len(top) == 2 and abs(top[0][1]) >= abs(top[1][1]) and top[0][0] in tiny.FEATURES


def test_predict_explain_returns_the_same_prediction_with_its_explanation(linear_bundle: Path) -> None:
    model = medinfer.load(linear_bundle)
    x = rows(4)
    plain = model.predict(x)
    assert plain.explanation is None and not hasattr(model, "_explainer")  # the plain path builds nothing
    explained = model.predict(x, explain=True)
    np.testing.assert_array_equal(explained.scores, plain.scores)
    assert list(explained.labels) == list(plain.labels)
    doc = explained.to_dict()
    assert doc["explanation"]["method"] == "linear" and len(doc["explanation"]["samples"]) == 4
    assert json.loads(json.dumps(doc))["explanation"]["samples"][0]["top"]


def test_a_bundle_without_explanation_says_so(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    with pytest.raises(UsageError, match="has no explanation.*re-export"):
        model.explain(rows(1))
    with pytest.raises(UsageError, match="has no explanation"):
        model.predict(rows(1), explain=True)
    assert model.try_predict(rows(1), ).ok


def test_bad_input_and_target_are_refused(linear_bundle: Path) -> None:
    model = medinfer.load(linear_bundle)
    with pytest.raises(medinfer.InputError, match="3 features"):
        model.explain(np.zeros((1, 4), np.float32))
    with pytest.raises(UsageError, match="cannot be chosen"):
        model.explain(rows(1), target="negative")


def test_an_explanation_graph_altered_after_load_is_refused(tmp_path: Path) -> None:
    model = medinfer.load(tiny_explain.linear(tmp_path / "b"))
    graph = tmp_path / "b" / "explain.onnx"
    graph.write_bytes(graph.read_bytes().replace(b"attributions", b"attributionz"))
    with pytest.raises(IntegrityError, match="explain.onnx.*no longer matches"):
        model.explain(rows(1))


def test_an_explanation_graph_that_misses_its_golden_output_is_refused(tmp_path: Path) -> None:
    wrong = tiny_explain.linear_graph(weights=tiny_explain.LOGIT_W * 2)
    model = medinfer.load(tiny_explain.linear(tmp_path / "b", graph=wrong))
    with pytest.raises(SelfTestError, match="explanation graph.*golden"):
        model.explain(rows(1))


def test_an_explanation_graph_of_another_model_is_refused(tmp_path: Path) -> None:
    foreign = tiny_explain.linear_graph(name="someone_else")
    model = medinfer.load(tiny_explain.linear(tmp_path / "b", graph=foreign))
    with pytest.raises(IntegrityError, match="explains another model"):
        model.explain(rows(1))


def test_the_manifest_refuses_a_graph_method_without_its_graph(linear_bundle: Path) -> None:
    from medinfer.manifest import parse_manifest

    doc = json.loads((linear_bundle / "manifest.json").read_text())
    doc["explanation"]["file"] = None
    with pytest.raises(ManifestError, match="explanation.file"):
        parse_manifest(doc)
    doc["explanation"]["file"] = "missing.onnx"
    with pytest.raises(ManifestError, match="explanation.file.*does not pin"):
        parse_manifest(doc)


def test_the_audit_record_carries_top_attributions_only_when_asked(tmp_path: Path, linear_bundle: Path) -> None:
    for top, path in ((2, tmp_path / "on.jsonl"), (0, tmp_path / "off.jsonl")):
        log = medinfer.AuditLog(path)
        model = medinfer.load(linear_bundle).configure(audit=log, audit_explanations=top)
        model.predict(rows(3), explain=True)
        model.predict(rows(1))
        log.close()
        records = [json.loads(line) for line in path.read_text().splitlines() if '"status"' in line]
        explained = records[0]["output"].get("explanation")
        if top:
            assert explained["method"] == "linear" and [len(t) for t in explained["top"]] == [2, 2, 2]
        else:
            assert explained is None
        assert "explanation" not in records[1]["output"]
    with pytest.raises(UsageError, match="audit_explanations"):
        medinfer.load(linear_bundle).configure(audit_explanations=-1)


def test_occlusion_finds_the_bright_square(tmp_path: Path) -> None:
    model = medinfer.load(tiny_explain.occlusion(tmp_path / "ct"))
    patch = np.full((1, 100, 100, 1), -900.0, np.float32)
    patch[0, 40:60, 40:60] = 500.0
    e = model.explain(patch)
    assert e.method == "occlusion" and e.values.shape == (1, 100) and e.maps is not None
    assert {name for name, _ in e.top(0, 4)} == {"rows 40-49, cols 40-49", "rows 40-49, cols 50-59",
                                                 "rows 50-59, cols 40-49", "rows 50-59, cols 50-59"}
    # pixel (50, 50) lies in the 20 px windows at corners 40 and 50 of each axis: its value is their mean drop
    # of the score when the window is set to the patch's median (-900), computed here with the model's definition
    drops = []
    for r in (40, 50):
        for c in (40, 50):
            covered = patch.copy()
            covered[0, r:r + 20, c:c + 20] = -900.0
            drops.append(float(tiny.ct_reference(patch)[0, 0] - tiny.ct_reference(covered)[0, 0]))
    assert float(e.maps[0, 50, 50]) == pytest.approx(float(np.mean(drops)), abs=1e-6)
    assert float(np.abs(e.maps[0, :20, :20]).max()) == 0.0  # windows away from the square change nothing


def test_masking_effects_equal_the_hand_computed_ones(tmp_path: Path) -> None:
    model = medinfer.load(tiny_explain.masking(tmp_path / "seq"))
    x = np.array([[[1.0, 0.2], [3.0, 0.0], [2.0, 1.0], [6.0, 0.5]]], np.float32)
    e = model.explain(x)
    n = x.size  # the model's value is the mean of every number
    # a masked step takes the previous step's values (the first step the next one's); feature 1 is an event -> 0
    want = [(x[0, 0, 0] - x[0, 1, 0] + x[0, 0, 1]) / n] + [
        (x[0, t, 0] - x[0, t - 1, 0] + x[0, t, 1]) / n for t in range(1, 4)]
    np.testing.assert_allclose(e.values[0], want, atol=1e-6)
    assert e.features == ("t-15 min", "t-10 min", "t-5 min", "t-0 min")
    mean = tiny_explain.MEAN
    assert float(e.groups["first"][0]) == pytest.approx(float((x[0, :, 0] - mean[0]).sum() / n), abs=1e-6)
    assert float(e.groups["second"][0]) == pytest.approx(float((x[0, :, 1] - mean[1]).sum() / n), abs=1e-6)


def test_attribution_order_beats_random_order_on_a_linear_model(linear_bundle: Path) -> None:
    model = medinfer.load(linear_bundle)
    feeds, _ = model.prepare(rows(32, seed=3))
    result = measure(Explainer.for_model(model), feeds)
    assert result["n"] == 32 and result["gain"] > 0 and result["share_better"] >= 0.9
    assert result["gain_ci95"][0] > 0


def test_deletion_curves_follow_the_attribution_order() -> None:
    values = np.array([3.0, -1.0, 0.5, 2.0])

    def score(masks: np.ndarray) -> np.ndarray:  # an additive score: the kept values' sum
        return (values[None] * ~masks).sum(axis=1)

    curves = sample_curves(score, values, np.arange(4), 4, np.random.default_rng(0), points=5)
    # removing 3.0, 2.0, 0.5, -1.0 in turn: 4.5 -> 1.5 -> -0.5 -> -1.0 (k = 0, 1, 2, 3, 4 at points 0 .. 1)
    np.testing.assert_allclose(curves["deletion"], [4.5, 1.5, -0.5, -1.0, 0.0])
    assert np.all(curves["deletion"] <= curves["deletion_random"] + 1e-12)
    assert np.all(curves["insertion"] >= curves["insertion_random"] - 1e-12)


def test_target_class_of_a_multiclass_explanation(tmp_path: Path) -> None:
    """A multiclass explanation graph gives (N, C, F): the predicted class by default, or the one asked for."""
    from medinfer.explain import Subject
    from medinfer.explain_spec import ExplanationEntry
    from medinfer.manifest import TensorSpec

    subject = Subject("m", "multiclass_classification", ("a", "b", "c"), None,
                      TensorSpec("x", "float32", ("N", 2), names=("u", "v")), ("N", 3))
    entry = ExplanationEntry(method="linear", explains="logit", file="g.onnx", exact=True, bias=(0.0, 1.0, 2.0))
    attributions = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    explainer = Explainer(subject, entry, {}, lambda feeds: np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]),
                          lambda feeds: attributions)
    e = explainer.explain({"x": np.zeros((2, 2), np.float32)})
    assert e.classes == ("b", "a")
    np.testing.assert_array_equal(e.values, [[2, 3], [6, 7]])
    np.testing.assert_allclose(e.output, [1 + 5, 0 + 13])
    e = explainer.explain({"x": np.zeros((2, 2), np.float32)}, target="c")
    assert e.classes == ("c", "c")
    with pytest.raises(UnknownNameError):
        explainer.explain({"x": np.zeros((2, 2), np.float32)}, target="d")
