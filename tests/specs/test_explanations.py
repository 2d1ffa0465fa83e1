"""Every registered spec explains its answers on the device (sample-trained bundles of the ``built`` fixture):
the method its spec names, exactness where the method is exact (against the NATIVE model, not the explanation
itself), fidelity beating random order on held-out samples, the plain graph untouched, and a gate that fails closed.

Fidelity criterion (sample-trained models can be weak, e.g. a CNN after one epoch): the mean area between the
curves (deletion + insertion, attribution order vs random orders) is positive AND attribution order beats random
order on at least half of the held-out samples; the same numbers come back when the device recomputes them from the
bundle's parity sample.
"""

from __future__ import annotations

import json

import medinfer
import numpy as np
import pytest
from medinfer.errors import ParityError
from medinfer.explain import Explainer
from medinfer.fidelity import measure
from medinfer.train import registry

pytestmark = pytest.mark.slow

EXPLAINED = [n for n in registry.names() if registry.get(n).explain]


def test_every_registered_spec_names_an_explanation() -> None:
    assert registry.names() == EXPLAINED


@pytest.mark.parametrize("name", EXPLAINED)
def test_each_model_explains_its_answers_on_the_device(built, name: str) -> None:
    art, path = built(name)
    model = medinfer.load(path)
    entry = model.manifest.explanation
    assert entry is not None and entry.method == art.spec.explain["method"] and entry.can_tell and entry.cannot_tell
    x = np.asarray(art.dataset.X_test)[:2]
    pred = model.predict(x, explain=True)
    e = pred.explanation
    assert e.method == entry.method and len(e) == 2 and e.values.shape[1] == len(e.features)
    assert np.isfinite(e.values).all() and np.isfinite(e.output).all()
    assert any(v != 0 for _, v in e.top(0, 3))
    np.testing.assert_array_equal(pred.scores, model.predict(x).scores)
    assert "## Why this answer (explanations)" in (path / "model_card.md").read_text()
    assert entry.file is None or entry.file not in {v.file for v in model.manifest.variants.values()}


@pytest.mark.parametrize("name", ["clinical_notes_tfidf", "gene_expression_svd"])
def test_linear_contributions_add_up_to_the_native_logit(built, name: str) -> None:
    art, path = built(name)
    model = medinfer.load(path)
    X = np.asarray(art.dataset.X_test)[:32]
    e = model.explain(X)
    rows = [str(s) for s in X.reshape(-1)] if X.dtype.kind in "OU" else X.astype(np.float64)
    logits = np.asarray(art.model.decision_function(rows), np.float64)  # scikit-learn, float64
    if logits.ndim == 2:
        classes = [list(art.spec.labels).index(c) for c in e.classes]
        logits = logits[np.arange(len(X)), classes]
    elif list(art.spec.labels).index(art.spec.positive_label) == 0:
        logits = -logits
    np.testing.assert_allclose(e.bias + e.values.astype(np.float64).sum(axis=1), logits, atol=1e-5, rtol=0)
    np.testing.assert_allclose(e.output, logits, atol=1e-5, rtol=0)


def test_saabas_contributions_add_up_to_the_forest(built) -> None:
    art, path = built("drug_activity_rf")
    model = medinfer.load(path)
    X = np.asarray(art.dataset.X_test)[:32]
    e = model.explain(X)
    native = art.model.predict_proba(X)[:, 1]  # the forest averages its trees in float64
    np.testing.assert_allclose(e.bias + e.values.astype(np.float64).sum(axis=1), native, atol=1e-5, rtol=0)
    np.testing.assert_allclose(e.output, model.predict(X).scores, atol=1e-5, rtol=0)
    shap = pytest.importorskip("shap")
    reference = np.asarray(shap.TreeExplainer(art.model).shap_values(X.astype(np.float64), approximate=True))[..., 1]
    np.testing.assert_allclose(e.values, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", EXPLAINED)
def test_attribution_order_beats_random_order_on_held_out_samples(built, name: str) -> None:
    _, path = built(name)
    model = medinfer.load(path)
    fidelity = model.manifest.explanation.fidelity
    assert fidelity["n"] >= 4 and fidelity["gain"] > 0 and fidelity["share_better"] >= 0.5, fidelity
    inputs, _ = model.parity_sample()
    feeds, _ = model.prepare(next(iter(inputs.values())))
    again = measure(Explainer.for_model(model), feeds)
    assert again["n"] == fidelity["n"]
    assert again["gain"] == pytest.approx(fidelity["gain"], rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("name", EXPLAINED)
def test_the_model_graph_computes_no_explanation(built, name: str) -> None:
    onnx = pytest.importorskip("onnx")
    _, path = built(name)
    graph = onnx.load(str(path / "model.onnx"))
    assert "attributions" not in {o.name for o in graph.graph.output}
    assert not any("explain" in n.name or any("explain" in o for o in n.output) for n in graph.graph.node)


def test_the_linear_gate_refuses_a_wrong_explanation_graph(built, monkeypatch: pytest.MonkeyPatch) -> None:
    onnx = pytest.importorskip("onnx")
    from medinfer.export.explain import build_explanation, linear

    art, path = built("gene_expression_svd")
    onx = onnx.load(str(path / "model.onnx"))
    meta = {p.key: p.value for p in onx.metadata_props}
    original = linear._graph
    monkeypatch.setattr(linear, "_graph", lambda ctx, W, kind: original(ctx, W * 1.001, kind))
    with pytest.raises(ParityError, match="differs from its native reference"):
        build_explanation(art.spec, art.model, art.dataset, onx, onx.SerializeToString(), meta)


def test_the_saabas_gate_refuses_contributions_that_are_not_shap_s(built, monkeypatch: pytest.MonkeyPatch) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("shap")
    from medinfer.export.explain import build_explanation, saabas

    art, path = built("drug_activity_rf")
    onx = onnx.load(str(path / "model.onnx"))
    meta = {p.key: p.value for p in onx.metadata_props}
    original = saabas._leaf_targets

    def shifted(tree, column, n_trees):  # credits every leaf's path to its first feature only
        out = original(tree, column, n_trees)
        return {leaf: ({min(w): sum(w.values())} if w else w) for leaf, w in out.items()}

    monkeypatch.setattr(saabas, "_leaf_targets", shifted)
    with pytest.raises(ParityError, match="Saabas contributions vs shap"):
        build_explanation(art.spec, art.model, art.dataset, onx, onx.SerializeToString(), meta)


def test_the_cli_shows_the_words_behind_a_report(built, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from medinfer.cli import main

    art, path = built("clinical_notes_tfidf")
    report = tmp_path / "report.txt"
    report.write_text(str(np.asarray(art.dataset.X_test).reshape(-1)[0]))
    assert main(["predict", str(path), str(report), "--explain"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("#0"))
    words = [part.rsplit(" ", 1) for part in line.split(": ", 1)[1].split(", ")]
    vocabulary = set(json.loads(json.dumps(medinfer.load(path).explain("x y").features)))
    assert words and all(w in vocabulary and v[0] in "+-" for w, v in words)


def test_a_text_with_no_known_word_is_not_explained_either(built) -> None:
    _, path = built("clinical_notes_tfidf")
    model = medinfer.load(path)
    with pytest.raises(medinfer.NoInformationError, match="no usable information"):
        model.explain("the of and 😀")
    with pytest.raises(medinfer.NoInformationError):
        model.predict("the of and", explain=True)


EXPLAIN_ISOLATED = r"""
import json, sys
import numpy as np
import medinfer
out = {}
for path in sys.argv[1:]:
    model = medinfer.load(path)
    inputs, _ = model.golden()
    e = model.explain(next(iter(inputs.values())))
    out[model.name] = {"method": e.method, "output": e.output.tolist(), "top": e.top(0, 3)}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "sklearn", "onnx", "scipy", "shap"})
print(json.dumps({"results": out, "heavy": heavy}))
"""


def test_every_bundle_explains_on_a_base_device_install(built) -> None:
    """Explanations need numpy + onnxruntime only: a fresh process with the training stack, onnx, scipy and the
    exporter blocked explains the golden input of every bundle as the full environment does."""
    import subprocess
    import sys

    from ..helpers.isolation import BLOCKER

    paths = [built(name)[1] for name in EXPLAINED]
    proc = subprocess.run([sys.executable, "-c", BLOCKER + EXPLAIN_ISOLATED, *map(str, paths)], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["heavy"] == [] and sorted(doc["results"]) == sorted(EXPLAINED)
    for path in paths:
        model = medinfer.load(path)
        inputs, _ = model.golden()
        here = model.explain(next(iter(inputs.values())))
        np.testing.assert_allclose(doc["results"][model.name]["output"], here.output, atol=1e-6)
        assert doc["results"][model.name]["method"] == here.method
