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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OUTPUT = "domain_score"
PERCENTILE = 99.0


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

    # -- native (numpy, float64) ---------------------------------------------------------------------------
    def raw(self, x: np.ndarray) -> np.ndarray:
        p = self.params
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

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.raw(x) / self.scale


@dataclass
class DomainGuard:
    """The domain model of one spec: parts over graph tensors, and how to compute those tensors natively."""

    parts: list[Part]
    method: str
    features: Callable[[Any], dict[str, np.ndarray]]  # X -> {source tensor name: native values}
    sources: dict[str, str] = field(default_factory=dict)  # source name -> graph tensor name (default: same)

    def parts_scores(self, X: Any) -> dict[str, np.ndarray]:
        feats = self.features(X)
        return {part.label or f"{part.kind}({part.source})": part.score(feats[part.source]) for part in self.parts}

    def score(self, X: Any) -> np.ndarray:
        """The native reference of the graph's ``domain_score`` output: the largest normalized part."""
        return np.maximum.reduce(list(self.parts_scores(X).values())).astype(np.float32)

    def calibrate(self, X: Any) -> DomainGuard:
        """Divide each part by its 99th percentile on ``X`` (in-domain data the model never saw), so that 1.0 means
        "as far as the furthest 1 % of in-domain data" for every part alike."""
        feats = self.features(X)
        for part in self.parts:
            part.scale = 1.0
            value = max(float(np.percentile(part.raw(feats[part.source]), PERCENTILE)), part.min_scale)
            part.scale = value if value > 0 else 1.0
        return self


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


# -- evaluation ------------------------------------------------------------------------------------------------
def choose_threshold(scores: np.ndarray, coverage: float) -> float:
    """The smallest threshold accepting ``coverage`` of these in-domain scores, placed midway to the next score
    so that no calibration score sits on it."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    k = min(len(s) - 1, int(np.ceil(coverage * len(s))) - 1)
    upper = s[k + 1] if k + 1 < len(s) else s[k] * 1.05 + 1e-6
    return float(np.float32((s[k] + upper) / 2))


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Area under the ROC of ``domain_score`` separating shifted (positive) from in-domain samples (ties: 0.5)."""
    a = np.asarray(inside, dtype=np.float64)
    b = np.asarray(outside, dtype=np.float64)
    if not len(a) or not len(b):
        return float("nan")
    allv = np.concatenate([a, b])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b)))


def selective_curve(scores: np.ndarray, errors: np.ndarray, points: int = 11) -> list[dict[str, float]]:
    """Error among the accepted samples vs coverage, accepting the lowest domain scores first."""
    order = np.argsort(scores, kind="mergesort")
    err = np.asarray(errors, dtype=np.float64)[order]
    out = []
    for cov in np.linspace(0.5, 1.0, points):
        n = max(1, int(round(cov * len(err))))
        out.append({"coverage": round(float(n / len(err)), 4), "error": round(float(err[:n].mean()), 6)})
    return out


@dataclass
class Shift:
    """A shifted set to evaluate a guard on: its scores (and, when the set needs its own in-domain reference, e.g.
    a guard refitted without one cell type, the in-domain scores to compare with)."""

    kind: str  # "gross" (a fault: wrong modality, calibration, stuck sensor) or "subtle" (another series, cell type)
    scores: np.ndarray
    description: str
    inside: np.ndarray | None = None
    source: str = ""  # where the shifted data comes from (package==version:file), for the card

    def to_dict(self, reference: np.ndarray, threshold: float) -> dict[str, Any]:
        inside = reference if self.inside is None else self.inside
        return {"kind": self.kind, "description": self.description, "n": int(len(self.scores)),
                "auroc": round(auroc(inside, self.scores), 4),
                "rejected": round(float(np.mean(self.scores > threshold)), 4) if len(self.scores) else None,
                "source": self.source}


GOALS = {"gross": 0.95, "subtle": 0.80}


def evaluate(guard: DomainGuard, shifts: dict[str, Shift], X_cal: Any, X_eval: Any, errors: np.ndarray,
             coverage: float, calibration: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Choose the threshold on ``X_cal`` (in-domain, never trained on), then measure on ``X_eval``: acceptance,
    AUROC and rejected share per shift, the selective-prediction curve (``errors`` per eval sample).

    Returns:
        (the manifest's ``domain`` fields, arrays for the card's figure).
    """
    cal = guard.score(X_cal)
    threshold = choose_threshold(cal, coverage)
    inside = guard.score(X_eval)
    shift_report = {name: s.to_dict(inside, threshold) for name, s in shifts.items()}
    goals = {name: {"goal": GOALS.get(r["kind"], 0.8), "met": bool(r["auroc"] >= GOALS.get(r["kind"], 0.8))}
             for name, r in shift_report.items()}
    acceptance = float(np.mean(inside <= threshold))
    report = {
        "threshold": threshold, "coverage": coverage, "method": guard.method,
        "calibration": {"data": calibration, "n": int(len(cal))},
        "evaluation": {"n": int(len(inside)), "acceptance": round(acceptance, 4),
                       "acceptance_goal_met": bool(acceptance >= coverage - 0.01),
                       "parts": [p.label for p in guard.parts], "shifts": shift_report, "goals": goals,
                       "selective": selective_curve(inside, errors),
                       "note": "scores measured with the native reference (numpy); the parity gate checks the "
                               "graph's domain_score against it"},
    }
    arrays = {"inside": inside, **{f"shift:{k}": s.scores for k, s in shifts.items()}}
    return report, arrays


def figure(arrays: dict[str, np.ndarray], report: dict[str, Any], path: Any) -> str:
    """The card's figure: domain-score distributions (in-domain held-out vs each shifted set, the threshold
    marked) and the selective-prediction curve (error among accepted samples vs coverage). Returns
    ``plots/<file>``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threshold = float(report["threshold"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    inside = np.asarray(arrays["inside"], dtype=np.float64)
    shifts = {k.split(":", 1)[1]: np.asarray(v, dtype=np.float64) for k, v in arrays.items() if k.startswith("shift:")}
    top = np.percentile(np.concatenate([inside, *shifts.values()]), 99.5)
    bins = np.linspace(0, max(top, threshold * 1.5, 1e-6), 40)
    a.hist(np.clip(inside, 0, bins[-1]), bins=bins, density=True, alpha=0.6,
           label=f"held-out, in domain ({len(inside)})")
    for name, values in shifts.items():
        auc = report["evaluation"]["shifts"][name]["auroc"]
        a.hist(np.clip(values, 0, bins[-1]), bins=bins, density=True, histtype="step", linewidth=1.4,
               label=f"{name} (AUROC {auc:.2f})")
    a.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    a.set_xlabel("domain score (larger = further from the training data)")
    a.set_ylabel("density")
    a.set_title("who is flagged")
    a.legend(fontsize=7)
    curve = report["evaluation"]["selective"]
    b.plot([c["coverage"] for c in curve], [c["error"] for c in curve], marker="o")
    b.set_xlabel("coverage (share answered, lowest domain scores first)")
    b.set_ylabel("error among the answered")
    b.set_title("selective prediction")
    b.axvline(report["coverage"], color="black", linestyle="--", label=f"target coverage {report['coverage']:.0%}")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return f"plots/{Path(path).name}"
