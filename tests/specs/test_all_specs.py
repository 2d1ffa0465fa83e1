"""Every registered spec end to end on its small test sample: train → export → parity → load → predict == native.

Parametrized over the registry: a new spec file is tested here without editing this file.
"""

from __future__ import annotations

import json

import medinfer
import numpy as np
import pytest
from medinfer.train import registry

from ..helpers.checks import concurrent_check, deterministic_check
from ..helpers.hostile import (
    DTYPES,
    PATTERNS,
    SHAPES,
    check_refused_or_right,
    invalid_cases,
    numeric_case,
    strings_case,
    valid_from,
)
from ..helpers.isolation import run_isolated

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", registry.names())
def test_runtime_predict_equals_native(built, name: str) -> None:
    art, path = built(name)
    spec = art.spec
    model = medinfer.load(path)
    X = art.dataset.X_test
    pred = model.predict(X)
    native_scores = spec.scores(spec.native_outputs(art.model, X))
    np.testing.assert_allclose(pred.scores, native_scores, atol=spec.parity.atol, rtol=spec.parity.rtol)
    if spec.task != "regression":
        native_labels = np.asarray(spec.labels, dtype=object)[spec.decisions(native_scores, art.point.threshold)]
        assert list(pred.labels) == list(native_labels)
    assert pred.model_sha256 == model.manifest.files["model.onnx"].sha256


@pytest.mark.parametrize("name", registry.names())
def test_every_card_shows_its_plots_and_every_classifier_a_calibration_plot(built, name: str) -> None:
    art, path = built(name)
    m = medinfer.load_manifest(path)
    card = (path / "model_card.md").read_text()
    assert m.card.plots, f"{name}'s card has no plots"
    for title, rel in m.card.plots.items():
        assert rel in m.files and (path / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{title}]({rel})" in card
    if art.spec.task != "regression":  # devices act on probabilities: show how far they can be trusted
        assert "plots/calibration.png" in m.card.plots.values()
        assert any("calibration" in title.lower() for title in m.card.plots)


@pytest.mark.parametrize("name", registry.names())
def test_manifest_records_the_contract(built, name: str) -> None:
    art, path = built(name)
    m = medinfer.load_manifest(path)
    assert m.name == name and m.version == art.spec.version
    assert m.parity.passed is True and m.parity.n_samples >= len(art.dataset.y_test)
    assert m.data.sources and all(len(s.sha256) == 64 for s in m.data.sources)
    assert all(v.ci95 is None or v.ci95[0] <= v.value <= v.ci95[1] for v in m.metrics.heldout.values())
    assert m.metrics.baseline is not None
    assert set(m.files) >= {"model.onnx", "golden.npz", "model_card.md"}
    assert m.producer.opset and m.producer.frameworks
    card = (path / "model_card.md").read_text()
    assert m.card.intended_use in card
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path / "model.onnx")).metadata_props}
    assert props["medinfer.name"] == name and props["medinfer.version"] == m.version
    assert json.loads((path / "manifest.json").read_text())["schema_version"] == 1


@pytest.mark.parametrize("name", registry.names())
def test_deterministic_and_concurrent_every_bundle(built, name: str) -> None:
    _, path = built(name)
    inputs, _ = medinfer.load(path).golden()
    x = next(iter(inputs.values()))
    deterministic_check(path, x)
    concurrent_check(path, x)


@pytest.mark.parametrize("name", registry.names())
def test_runtime_alone_runs_every_spec_bundle(built, name: str) -> None:
    _, path = built(name)
    result = run_isolated([path])
    assert result["heavy"] == []
    assert result["results"][name]["self_test"] in ("bit_exact", "within_tolerance")


@pytest.mark.hostile("every bundle: valid answered, invalid refused")
@pytest.mark.parametrize("name", registry.names())
def test_hostile_inputs_every_bundle(built, name: str) -> None:
    """Held-out samples (any subset, one alone, a safe float16 cast) MUST be answered and equal the native model;
    every invalid class MUST be refused with its error; generated garbage ends in an input refusal or an answer."""
    art, path = built(name)
    model = medinfer.load(path, self_test=False)
    spec = model.manifest.inputs[0]
    pool = np.asarray(art.dataset.X_test)
    if spec.dtype == "string":
        pool = np.array([str(v) for v in pool.reshape(-1)], dtype=object)
        known = art.spec.native_outputs(art.model, pool).get("known_tokens")
        if known is not None:
            pool = pool[known > 0]  # texts with no known word are refused by design (tested apart)
    rng = np.random.default_rng(0)
    for form in ("batch", "single", "float16") * 4:
        x, rows = valid_from(pool, rng, form)
        native = art.spec.scores(art.spec.native_outputs(art.model, rows))
        pred = model.predict(x)
        np.testing.assert_allclose(np.asarray(pred.scores).reshape(native.shape), native,
                                   atol=max(art.spec.parity.atol, 1e-3 if form == "float16" else 0),
                                   rtol=art.spec.parity.rtol)
    for case, (x, error) in invalid_cases(spec, pool).items():
        with pytest.raises(error):
            model.predict(x)
        assert model.try_predict(x).reason in ("input", "input_type", "no_information"), case
    if spec.dtype == "string":
        text = st.one_of(st.text(max_size=200), st.binary(max_size=64), st.just("\x00"), st.just("\ud800"),
                         st.just("a" * 100_000), st.integers(), st.none())

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(texts=st.lists(text, min_size=0, max_size=4), shape=st.sampled_from(["ok", "scalar", "empty",
                                                                                    "extra_axis"]))
        def run(texts, shape) -> None:
            check_refused_or_right(model, strings_case(texts, shape))
    else:

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(shape=st.sampled_from(SHAPES), dtype=st.sampled_from(DTYPES), pattern=st.sampled_from(PATTERNS),
               batch=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
        def run(shape, dtype, pattern, batch, seed) -> None:
            check_refused_or_right(model, numeric_case(spec, shape, dtype, pattern, batch, seed))

    run()


def _shifted(name: str, X, rng: np.random.Generator):
    """A gross fault per model, built the way the spec's evaluation builds it (see each spec's domain_shifts)."""
    X = np.asarray(X)
    if name == "drug_activity_rf":
        return X[:, rng.permutation(X.shape[1])]  # descriptor columns in another order
    if name == "clinical_notes_tfidf":
        code = " ".join(["import subprocess; def main(argv): return subprocess.call(argv, **kwargs)"] * 20)
        return np.array([f"{report} {code}" for report in X[:3]], dtype=object)  # mostly source code
    if name == "gene_expression_svd":
        return np.ascontiguousarray(X[:, rng.permutation(X.shape[1])])  # genes in another order
    if name == "lung_nodule_cnn":
        return rng.uniform(-1024, 3071, (4, *X.shape[1:])).astype(np.float32)  # noise over the HU range
    if name == "glucose_lstm":
        stuck = X[:8].copy()
        stuck[:, :, 0] = 150.0  # the CGM repeats one reading for the whole window
        stuck[:, :, 1:3] = 0.0
        return stuck
    raise AssertionError(f"no shifted input for {name}: add one when registering a spec")


@pytest.mark.parametrize("name", registry.names())
def test_every_bundle_carries_a_domain_guard_that_flags_a_fault(built, name: str) -> None:
    """The guard is in the one graph, its score equals the native guard, held-out data are mostly in the domain,
    a gross fault is flagged, and each policy acts on it."""
    art, path = built(name)
    m = medinfer.load_manifest(path)
    assert m.domain is not None and m.domain.output == "domain_score" and m.domain.threshold > 0
    assert "domain_score" in [o.name for o in m.outputs]
    assert m.domain.evaluation["shifts"] and "auroc" in next(iter(m.domain.evaluation["shifts"].values()))
    model = medinfer.load(path)
    X = art.dataset.X_test
    pred = model.predict(X)
    from medinfer.export.parity import DOMAIN_TOLERANCE

    np.testing.assert_allclose(pred.domain_scores, art.domain.score(X), atol=DOMAIN_TOLERANCE.atol,
                               rtol=DOMAIN_TOLERANCE.rtol)
    assert pred.in_domain.mean() >= 0.5  # tiny test models: a loose floor; the built bundles report theirs
    bad = _shifted(name, X, np.random.default_rng(0))
    assert not model.predict(bad).in_domain.any()
    out = medinfer.load(path, out_of_domain="no_result").try_predict(bad)
    assert isinstance(out, medinfer.NoResult) and out.reason == "out_of_domain"
    with pytest.raises(medinfer.OutOfDomainError):
        medinfer.load(path, out_of_domain="raise").predict(bad)
