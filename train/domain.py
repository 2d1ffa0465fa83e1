"""Applicability-domain guards: a per-sample ``domain_score`` (larger = further from the training data) fitted on
the training split only, computed in numpy here (the native reference) and added to the exported ONNX graph as an
extra output (one ``session.run``, no second model file).

A guard is a list of parts, each a simple statistic of one tensor the graph already computes (the input, an
embedding, the class probabilities, ...), fitted on the training split. Each part is divided by its own 99th
percentile on in-domain calibration data the model never saw, so 1.0 means "as far as the furthest 1 % of new
in-domain samples" for every part alike; the guard's score is the largest part. The threshold
(``domain.threshold`` in the manifest) is chosen on the same calibration data for a stated coverage.

Part kinds (all fitted with numpy, all expressed with standard ONNX operators):
- ``knn``: mean Euclidean distance to the k nearest training samples, in standardized coordinates (a QSAR
  applicability domain, a cell's distance to known cells);
- ``mahalanobis``: smallest squared Mahalanobis distance to the class means under one shared covariance
  (an embedding far from every class);
- ``nll``: mean negative log-likelihood of each feature under its training histogram (values where a feature
  never was, features shuffled);
- ``low_share``: share of features at or below their training floor (dropouts, a dead sensor channel);
- ``entropy``: entropy of the class probabilities (a sample the classifier cannot place);
- ``range``: the range (max - min) of one feature over the time axis, inverted (a stuck sensor);
- ``step``: the largest absolute step of one feature between consecutive time steps (a spike);
- ``stats``: |z-scores| of the mean and standard deviation of every value of the sample (e.g. a CT patch's HU
  distribution);
- ``value``: a per-sample statistic the graph computes anyway (e.g. the share of unknown words of a text).

Plausibility rules (:mod:`medinfer.train.domain_rules`) are parts too, with a declared limit instead of a calibrated
scale: their raw statistic is the excess over the limit relative to it (<= 0 within it); they score 0 within the
limit and :data:`RULE_GAIN` x the excess beyond it (a 1 % excess scores 10, far above any calibrated threshold), so
what physics or the format rules out is refused whatever the threshold.
How the threshold is chosen and the guard judged: :mod:`medinfer.train.domain_eval`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .domain_eval import GOALS, Shift, auroc, choose_threshold, evaluate, figure, selective_curve

__all__ = ["GOALS", "OUTPUT", "DomainGuard", "Part", "Shift", "auroc", "choose_threshold", "evaluate", "figure",
           "selective_curve"]

OUTPUT = "domain_score"
PERCENTILE = 99.0
RULE_GAIN = 1000.0  # a plausibility rule's score per unit of relative excess over its declared limit
# Native statistics of part kinds defined in other modules (medinfer.train.domain_rules): kind -> raw(params, x, *more)
KINDS: dict[str, Callable[..., np.ndarray]] = {}


@dataclass
class Part:
    """One term of a domain score: a statistic of the tensor ``source`` (a graph tensor name; ``features`` of the
    native reference holds the same tensor under the same name)."""

    kind: str
    source: str
    params: dict[str, np.ndarray] = field(default_factory=dict)
    scale: float = 1.0
    label: str = ""
    # The smallest scale calibration may choose: a part that is 0 on nearly all in-domain data (a stuck sensor's
    # share of unchanged steps) would otherwise keep scale 1 and never reach the threshold.
    min_scale: float = 0.0
    # A plausibility rule: ``raw`` is the excess over its declared limit relative to it (> 0: beyond it); its score
    # is RULE_GAIN x the excess, never calibrated. Checked at fit: no training sample may break it.
    rule: bool = False
    more: tuple[str, ...] = ()  # further sources the statistic reads (e.g. the latent beside the input)

    # -- native (numpy, float64) ---------------------------------------------------------------------------
    def raw(self, x: np.ndarray, *more: np.ndarray) -> np.ndarray:
        p = self.params
        if self.kind in KINDS:
            return KINDS[self.kind](p, np.asarray(x, dtype=np.float64), *(np.asarray(m, np.float64) for m in more))
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "knn":
            z = (x.reshape(len(x), -1) - p["mean"]) * p["inv_std"]
            ref = p["reference"].astype(np.float64)
            d2 = (z**2).sum(1)[:, None] + (ref**2).sum(1)[None] - 2 * z @ ref.T
            k = int(p["k"][0])
            return np.sqrt(np.sort(np.maximum(d2, 0.0), axis=1)[:, :k].mean(1))
        if self.kind == "mahalanobis":  # (e - m)' P (e - m) = |e W - m W|^2 with P = W W' (whitened once)
            z = x.reshape(len(x), -1) @ p["whiten"]
            return ((z[:, None, :] - p["means_w"][None]) ** 2).sum(2).min(1)
        if self.kind == "nll":
            flat = x.reshape(len(x), -1)
            bins = p["table"].shape[1]
            i = np.floor((flat - p["low"]) / p["width"])
            outside = (i < 0) | (i >= bins)
            i = np.clip(i, 0, bins - 1).astype(np.int64)
            lp = p["table"][np.arange(flat.shape[1])[None, :], i]
            return -np.where(outside, p["floor"][0], lp).mean(1)
        if self.kind == "low_share":
            return (x.reshape(len(x), -1) <= p["floor"]).mean(1)
        if self.kind == "entropy":
            q = np.clip(x.reshape(len(x), -1), 1e-12, 1.0)
            return -(q * np.log(q)).sum(1)
        if self.kind == "flat":  # share of the T steps with no change inside (low, high): a stuck sensor
            f = x[:, :, int(p["feature"][0])]
            later = f[:, 1:]
            still = (np.abs(np.diff(f, axis=1)) <= p["eps"][0]) & (later > p["low"][0]) & (later < p["high"][0])
            return still.sum(1) / f.shape[1]
        if self.kind == "step":
            f = x[:, :, int(p["feature"][0])]
            return np.abs(np.diff(f, axis=1)).max(1, initial=0.0) if f.shape[1] > 1 else np.zeros(len(f))
        if self.kind == "value":
            return x.reshape(len(x))
        if self.kind == "inverse":  # few of something (e.g. known words) is far: 1 / (1 + x)
            return 1.0 / (1.0 + x.reshape(len(x)))
        if self.kind == "stats":
            flat = x.reshape(len(x), -1)
            zm = np.abs(flat.mean(1) - p["mean"][0]) / p["mean"][1]
            zs = np.abs(flat.std(1) - p["std"][0]) / p["std"][1]
            return np.maximum(zm, zs)
        raise ValueError(f"unknown domain part kind {self.kind!r}")

    def score(self, x: np.ndarray, *more: np.ndarray) -> np.ndarray:
        return self.normalized(self.raw(x, *more))

    def normalized(self, raw: np.ndarray) -> np.ndarray:
        """The part's score from its raw statistic: a rule's RULE_GAIN x excess, else raw / scale."""
        return RULE_GAIN * np.maximum(raw, 0.0) if self.rule else raw / self.scale

    def of(self, feats: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """The tensors this part reads, from the native features by source name."""
        return (feats[self.source], *(feats[m] for m in self.more))


@dataclass
class DomainGuard:
    """The domain model of one spec: parts over graph tensors, and how to compute those tensors natively."""

    parts: list[Part]
    method: str
    features: Callable[[Any], dict[str, np.ndarray]]  # X -> {source tensor name: native values}
    sources: dict[str, str] = field(default_factory=dict)  # source name -> graph tensor name (default: same)

    def parts_scores(self, X: Any) -> dict[str, np.ndarray]:
        feats = self.features(X)
        return {part.label or f"{part.kind}({part.source})": part.score(*part.of(feats)) for part in self.parts}

    def score(self, X: Any) -> np.ndarray:
        """The native reference of the graph's ``domain_score`` output: the largest normalized part."""
        return np.maximum.reduce(list(self.parts_scores(X).values())).astype(np.float32)

    def calibrate(self, X: Any) -> DomainGuard:
        """Divide each part by its 99th percentile on ``X`` (in-domain data the model never saw), so that 1.0 means
        "as far as the furthest 1 % of in-domain data" for every part alike (rules keep their declared limits)."""
        feats = self.features(X)
        return self.calibrate_raw([part.raw(*part.of(feats)) for part in self.parts])

    def calibrate_raw(self, raws: list[np.ndarray]) -> DomainGuard:
        """:meth:`calibrate` from each part's raw statistic on the calibration data (e.g. out-of-fold values from
        guards refitted without each fold)."""
        for part, raw in zip(self.parts, raws):
            part.scale = 1.0
            if not part.rule:
                value = max(float(np.percentile(raw, PERCENTILE)), part.min_scale)
                part.scale = value if value > 0 else 1.0
        return self

    def check_rules(self, X: Any, what: str = "training samples") -> None:
        """Refuse rules that in-domain data break (a limit declared too tight would refuse real samples).

        Raises:
            ValueError: naming the rule and how many samples break it.
        """
        feats = self.features(X)
        for part in self.parts:
            if part.rule:
                broken = int(np.sum(part.raw(*part.of(feats)) > 0.0))
                if broken:
                    raise ValueError(f"domain rule {part.label!r} is broken by {broken} {what}: its declared limit "
                                     "does not hold for real data")


# -- fitting the parts (training data only) ----------------------------------------------------------------
def knn(source: str, X: np.ndarray, k: int = 5, max_reference: int = 1000, seed: int = 0,
        label: str = "", standardize: bool = True) -> Part:
    flat = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    mean, std = flat.mean(0), flat.std(0)
    inv = np.where(std > 1e-9, 1.0 / np.where(std > 1e-9, std, 1.0), 0.0)
    if not standardize:  # e.g. unit-length TF-IDF vectors: their geometry is the point
        mean, inv = np.zeros_like(mean), np.ones_like(inv)
    pick = np.random.default_rng(seed).choice(len(flat), size=min(len(flat), max_reference), replace=False)
    ref = ((flat[np.sort(pick)] - mean) * inv).astype(np.float32)
    return Part("knn", source, {"mean": mean, "inv_std": inv, "reference": ref, "k": np.array([min(k, len(ref))])},
                label=label or f"kNN distance ({source})")


def mahalanobis(source: str, E: np.ndarray, y: np.ndarray | None = None, ridge: float = 1e-3,
                label: str = "", standardize: bool = False) -> Part:
    """Distance to the nearest class mean (one class when ``y`` is None) under the pooled within-class covariance,
    with a ridge of ``ridge`` x its mean variance.

    ``standardize``: estimate the covariance on standardized features (constant ones keep unit scale, so a value
    they never took is far), for features of very different magnitudes; folded back so the graph reads raw values."""
    e = np.asarray(E, dtype=np.float64).reshape(len(E), -1)
    centre, std = e.mean(0), e.std(0)
    inv = 1.0 / np.where(std > 1e-9, std, 1.0) if standardize else np.ones(e.shape[1])
    z = (e - centre) * inv
    labels = np.zeros(len(z), dtype=np.int64) if y is None else np.asarray(y)
    classes = [z[labels == c] for c in np.unique(labels)]
    means = np.stack([c.mean(0) for c in classes])
    pooled = np.concatenate([c - c.mean(0) for c in classes])
    cov = pooled.T @ pooled / max(1, len(pooled) - 1)
    cov += ridge * max(np.trace(cov) / len(cov), 1e-12) * np.eye(len(cov))
    # The precision P = inv(cov) = W W' (Cholesky): one D x D product per sample, whatever the number of classes
    # (the graph does the same: a MatMul, then C distances of length D). Folding the standardization into W:
    # ((x - centre) * inv) W - m W = x (inv W) - (centre * inv + m) W.
    chol = np.linalg.cholesky(np.linalg.inv(cov))
    whiten = inv[:, None] * chol
    return Part("mahalanobis", source, {"whiten": whiten, "means_w": (centre * inv + means) @ chol},
                label=label or f"Mahalanobis distance ({source})")


def nll(source: str, X: np.ndarray, bins: int = 16, label: str = "") -> Part:
    flat = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    low, high = flat.min(0), flat.max(0)
    width = np.where(high > low, (high - low) / bins, 1.0)
    idx = np.clip(np.floor((flat - low) / width), 0, bins - 1).astype(np.int64)
    counts = np.stack([np.bincount(idx[:, j], minlength=bins) for j in range(flat.shape[1])])
    table = np.log((counts + 0.5) / (len(flat) + 0.5 * bins))
    floor = np.log(0.5 / (len(flat) + 0.5 * bins)) - 2.0
    return Part("nll", source, {"low": low, "width": width, "table": table, "floor": np.array([floor])},
                label=label or f"per-feature likelihood ({source})")


def low_share(source: str, X: np.ndarray, bins: int = 16, label: str = "") -> Part:
    flat = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    low, high = flat.min(0), flat.max(0)
    return Part("low_share", source, {"floor": low + (high - low) / bins / 2},
                label=label or f"share of features at their floor ({source})")


def value(source: str, label: str) -> Part:
    """A per-sample statistic the graph already computes (one value per sample), used as it is."""
    return Part("value", source, {}, label=label)


def inverse(source: str, label: str) -> Part:
    """A per-sample count the graph already computes (e.g. known words), where FEW means far: 1 / (1 + count)."""
    return Part("inverse", source, {}, label=label)


def entropy(source: str, label: str = "") -> Part:
    return Part("entropy", source, {}, label=label or "entropy of the class probabilities")


def series_flat(source: str, feature: int, label: str, eps: float = 1e-3, min_scale: float = 0.1,
                bounds: tuple[float, float] = (-np.inf, np.inf)) -> Part:
    """Share of a sequence's T steps where feature ``feature`` does not change (by more than ``eps``) while strictly
    inside ``bounds`` (a sensor pinned at its floor or ceiling is its documented behaviour, not a fault). A share
    of ``min_scale`` already counts as far as the furthest in-domain data when in-domain data are never flat."""
    return Part("flat", source, {"feature": np.array([feature]), "eps": np.array([eps]),
                                 "low": np.array([bounds[0]]), "high": np.array([bounds[1]])},
                label=label, min_scale=min_scale)


def series_step(source: str, feature: int, label: str, min_scale: float = 0.0) -> Part:
    """The largest absolute change of feature ``feature`` between two consecutive steps (0 for T = 1); a change of
    ``min_scale`` or more (e.g. a physiological limit) counts as far as the furthest in-domain data at least."""
    return Part("step", source, {"feature": np.array([feature])}, label=label, min_scale=min_scale)


def value_stats(source: str, X: np.ndarray, label: str = "") -> Part:
    flat = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    m, s = flat.mean(1), flat.std(1)
    return Part("stats", source, {"mean": np.array([m.mean(), max(m.std(), 1e-6)]),
                                  "std": np.array([s.mean(), max(s.std(), 1e-6)])},
                label=label or f"mean and spread of the values ({source})")


def matmul_input(onx: Any, output: str) -> str:
    """The tensor feeding the last dense layer before graph output ``output``: walk back through the nodes that
    make it (activation, bias add, ...) to the first MatMul or Gemm and take its data input. For a Keras or
    PyTorch classifier this is the embedding the head reads (e.g. the 512 units of the CNN, the LSTM state)."""
    producer = {o: n for n in onx.graph.node for o in n.output}
    name, seen = output, set()
    while name in producer and name not in seen:
        seen.add(name)
        node = producer[name]
        if node.op_type in ("MatMul", "Gemm"):
            return str(node.input[0])
        name = node.input[0]
    raise ValueError(f"no MatMul or Gemm feeds graph output {output!r}: cannot find the embedding the head reads")


from . import domain_rules  # noqa: E402,F401  (registers the rule kinds in KINDS)
