"""Each spec's plausibility parts refuse the nonsense class they were written for (and variants with other values)
and accept in-domain samples: the spec's own part builders on small synthetic data shaped like the real inputs."""

from __future__ import annotations

import numpy as np
import pytest
from medinfer.train import domain, patch_stats
from medinfer.train.datasets import glucose
from medinfer.train.domain import RULE_GAIN, DomainGuard
from medinfer.train.specs import clinical_notes_tfidf, drug_activity_rf, gene_expression_svd, glucose_lstm

RNG = np.random.default_rng(0)
REFUSED = 10.0  # a rule's score for a 1 % excess; calibrated thresholds sit near 1


def _windows(n: int = 60, steps: int = 24) -> np.ndarray:
    """Glucose windows in the documented units: a smooth CGM, basal 1 U/h, one meal with its bolus."""
    x = np.zeros((n, steps, len(glucose.FEATURES)), np.float32)
    t = np.arange(steps)
    for i in range(n):
        x[i, :, 0] = 140 + 50 * np.sin(t / 8 + i)
        x[i, :, 3] = RNG.uniform(0.5, 1.5)
        meal = int(RNG.integers(0, steps))
        x[i, meal, 4], x[i, meal, 5] = RNG.uniform(2, 12), RNG.uniform(20, 90)
    x[:, 1:, 1] = np.diff(x[:, :, 0], axis=1) / 5
    x[:, :, 8], x[:, :, 9] = np.sin(t / 50), np.cos(t / 50)
    return x


def test_glucose_rules_refuse_impossible_therapy_and_a_dead_sensor() -> None:
    x = _windows()
    parts = glucose_lstm._glucose_parts(RNG.normal(size=(len(x), 8)), x)
    guard = DomainGuard(parts, "t", features=lambda X: {"input": X, "hidden": np.zeros((len(X), 8))})
    guard.check_rules(x)
    guard.calibrate(_windows())
    rules = DomainGuard([p for p in parts if p.rule], "t", features=guard.features)
    assert np.all(rules.score(_windows()) == 0.0)  # in-domain windows break no rule

    def edit(column: int, value: float) -> np.ndarray:
        out = _windows(20)
        out[:, :, column] = value
        return out

    for column, value in ((4, 30.0), (4, 5.0), (5, 500.0), (5, 60.0), (3, 30.0), (3, 12.0)):
        assert np.all(rules.score(edit(column, value)) >= REFUSED), (column, value)
    assert np.all(rules.score(edit(4, 2.0)) == 0.0)  # 24 U within an hour: unusual, not impossible
    pinned = next(p for p in parts if p.kind == "at_bounds")
    for level in (glucose.SENSOR_MIN, glucose.SENSOR_MAX):
        dead = edit(0, level)
        assert np.all(pinned.score(dead) >= 1.0 / 0.5 - 1e-9)  # a whole window pinned: twice its min_scale


def _scaled_expression(cells: int = 300, genes: int = 60) -> np.ndarray:
    """Scaled log counts like scanpy's: zero-inflated, each gene centred and scaled (zero -> the gene's floor)."""
    counts = RNG.poisson(RNG.gamma(0.6, 1.5, genes), (cells, genes)) * (RNG.random((cells, genes)) < 0.4)
    counts[np.arange(genes) % cells, np.arange(genes)] += 1  # every gene expressed somewhere
    logs = np.log1p(counts.astype(np.float64))
    return ((logs - logs.mean(0)) / logs.std(0)).astype(np.float32)


def test_gene_floor_rule_refuses_shuffled_summed_and_rescaled_cells() -> None:
    X = _scaled_expression()
    train, test = X[:200], X[200:]
    latent = train @ RNG.normal(size=(X.shape[1], 4))
    parts = gene_expression_svd._gene_parts({"input": train, "latent": latent}, RNG.integers(0, 3, len(train)))
    rule = DomainGuard([parts[0]], "t", features=lambda X: {"input": X})
    assert parts[0].rule and np.all(rule.score(test) == 0.0)
    for bad in (test[:, RNG.permutation(X.shape[1])], test + test[::-1], test * 2.0, test * 1.1,
                test + RNG.normal(0, 1, test.shape)):
        assert np.mean(rule.score(bad.astype(np.float32)) >= REFUSED) >= 0.95


def _descriptor_table(n: int) -> tuple[list[str], np.ndarray]:
    """Molecule-like descriptors obeying RDKit's identities: per-atom areas binned four ways, rings that add up."""
    families = {"PEOE_VSA": 14, "SMR_VSA": 10, "SlogP_VSA": 12, "EState_VSA": 11}
    names = [f"{f}{i}" for f, k in families.items() for i in range(1, k + 1)]
    rings = ["NumAromaticCarbocycles", "NumAromaticHeterocycles", "NumAliphaticCarbocycles",
             "NumAliphaticHeterocycles", "NumSaturatedCarbocycles", "NumSaturatedHeterocycles"]
    names += rings + ["NumAromaticRings", "NumAliphaticRings", "NumSaturatedRings", "RingCount", "MolWt"]
    rows = []
    for _ in range(n):
        areas = RNG.uniform(3, 25, int(RNG.integers(15, 40)))
        row = []
        for k in families.values():
            row += list(np.bincount(RNG.integers(0, k, len(areas)), weights=areas, minlength=k))
        r = list(RNG.integers(0, 3, 6))
        row += r + [r[0] + r[1], r[2] + r[3], r[4] + r[5], r[0] + r[1] + r[2] + r[3], areas.sum() * 1.3]
        rows.append(row)
    return names, np.asarray(rows, np.float32)


def test_descriptor_identities_refuse_mixed_and_random_descriptors() -> None:
    from medinfer.train.spec import Dataset

    names, X = _descriptor_table(300)
    ds = Dataset(X_train=X[:200], y_train=np.zeros(200), X_test=X[200:], y_test=np.zeros(100), sources=(),
                 split={}, feature_names=tuple(names))
    parts = drug_activity_rf.DrugActivityRF().domain_parts(None, ds)
    rule = DomainGuard([p for p in parts if p.rule], "t", features=lambda X: {"input": X})
    test = X[200:]
    assert np.all(rule.score(test) == 0.0)
    n, d = test.shape
    mixed = test[RNG.integers(0, n, (n, d)), np.arange(d)[None, :]]
    gaussian = RNG.normal(X.mean(0), X.std(0), (n, d)).astype(np.float32)
    for bad in (mixed, gaussian):
        assert np.mean(rule.score(bad) >= REFUSED) >= 0.95


def test_word_pairs_tell_salad_and_shuffled_words_from_reports() -> None:
    from medinfer.train.spec import Dataset

    phrases = ["the heart size is normal", "no focal airspace consolidation", "no pleural effusion or pneumothorax",
               "the lungs are clear", "mild degenerative changes of the spine", "stable cardiomediastinal silhouette"]
    docs = [" ".join(RNG.permutation(phrases)[:4]) for _ in range(120)]
    X = np.asarray(docs, dtype=object).reshape(-1, 1)
    spec = clinical_notes_tfidf.ClinicalNotesTfidf()
    ds = Dataset(X_train=X[:100], y_train=RNG.integers(0, 2, 100), X_test=X[100:], y_test=np.zeros(20), sources=(),
                 split={})
    model = spec.fit(spec.build(ds), ds)
    share = lambda texts: spec.domain_features(model)(np.asarray(texts, dtype=object))["unknown_pair_share"]  # noqa
    held = [str(t) for t in X[100:, 0]]
    words = sorted({w for t in held for w in t.split()})
    salad = [" ".join(RNG.choice(words, 16)) for _ in range(20)]
    shuffled = [" ".join(RNG.permutation(t.split())) for t in held]
    assert share(held).max() <= 0.15
    assert share(salad).min() >= 0.5 and np.median(share(shuffled)) >= 0.5
    assert share(["effusion"])[0] == 0.0 and share([""])[0] == 0.0  # fewer than two tokens: no pair to judge


def _ct_patches(seeds: range) -> np.ndarray:
    from ..helpers import tiny_cnn

    return np.stack([tiny_cnn.ct_image((100, 100), s)[:, :, None] for s in seeds])


@pytest.fixture(scope="module")
def ct_guard() -> tuple[DomainGuard, float, np.ndarray]:
    from medinfer.train.spec import Dataset
    from medinfer.train.specs import lung_nodule_cnn

    train, cal, test = _ct_patches(range(100, 250)), _ct_patches(range(300, 400)), _ct_patches(range(400, 440))
    spec = lung_nodule_cnn.LungNoduleCNN()
    ds = Dataset(X_train=train, y_train=np.zeros(len(train)), X_test=test, y_test=np.zeros(len(test)), sources=(),
                 split={})
    guard = DomainGuard(spec.domain_parts(None, ds), "t", spec.domain_features(None)).calibrate(cal)
    return guard, domain.choose_threshold(guard.score(cal), 0.99), test


@pytest.mark.parametrize("fault", ["noise_with_moments", "pixels_shuffled", "contrast_inverted",
                                   "mr_like_values", "intercept_twice"])
def test_ct_statistics_refuse_patches_no_ct_has(ct_guard, fault: str) -> None:
    guard, threshold, test = ct_guard
    assert np.mean(guard.score(test) <= threshold) >= 0.95
    mean, sd = test.mean(axis=(1, 2, 3), keepdims=True), test.std(axis=(1, 2, 3), keepdims=True)
    smooth = np.cumsum(np.cumsum(RNG.normal(size=test.shape), axis=1), axis=2)
    bad = {"noise_with_moments": mean + sd * RNG.normal(size=test.shape),
           "pixels_shuffled": RNG.permuted(test.reshape(len(test), -1), axis=1).reshape(test.shape),
           "contrast_inverted": -1024.0 + 3071.0 - test,
           "mr_like_values": 300 + 200 * (smooth - smooth.mean()) / smooth.std(),
           "intercept_twice": test - 1024.0}[fault]
    assert np.mean(guard.score(np.clip(bad, -1024, 3071).astype(np.float32)) > threshold) >= 0.9
    assert patch_stats.features(test).shape == (len(test), len(patch_stats.NAMES))
    assert 100 * threshold <= RULE_GAIN
