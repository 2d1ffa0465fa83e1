"""Model-card figures (PNG, matplotlib's Agg backend; no display needed): ROC with the operating point,
reliability diagram (calibration), confusion matrix, feature importance, 2-D embedding, example CT patches,
Clarke error grid, forecast-vs-truth trace.

Each function draws one figure from held-out data, writes it to ``path`` and returns the path relative to the
bundle (``plots/<file>.png``), which is what ``spec.plots`` hands to the exporter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import clarke


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})  # no version string: same data, same bytes
    _pyplot().close(fig)
    return f"plots/{path.name}"


def roc(y: np.ndarray, scores: np.ndarray, threshold: float, path: Path, positive: str = "positive") -> str:
    """Held-out ROC curve with the operating point (sensitivity, 1 - specificity at ``threshold``) marked; ``y``
    is the outcome, 1 for the positive class (``ModelSpec.outcome``)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    y = np.asarray(y).astype(int)
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, scores)
        ax.plot(fpr, tpr, lw=2, label=f"model (AUC {roc_auc_score(y, scores):.3f})")
        sens = float(np.mean(scores[y == 1] >= threshold))
        fp = float(np.mean(scores[y == 0] >= threshold))
        ax.scatter([fp], [sens], c="red", zorder=3,
                   label=f"operating point p({positive}) >= {threshold:g}\nsensitivity {sens:.3f}, "
                         f"specificity {1 - fp:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01),
           title=f"held-out ROC (n={len(y)})")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def reliability_table(outcome: np.ndarray, prob: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-width probability bins: count, mean predicted probability, observed frequency and its Wilson 95 %
    interval per non-empty bin (the numbers the reliability diagram draws)."""
    outcome = np.asarray(outcome, dtype=float).reshape(-1)
    prob = np.clip(np.asarray(prob, dtype=float).reshape(-1), 0.0, 1.0)
    index = np.minimum((prob * bins).astype(int), bins - 1)
    rows = []
    z = 1.959964
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if not n:
            continue
        k = float(outcome[mask].sum())
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        rows.append({"lo": b / bins, "hi": (b + 1) / bins, "n": n, "predicted": float(prob[mask].mean()),
                     "observed": p, "ci_lo": min(max(0.0, centre - half), p),  # contains p despite rounding
                     "ci_hi": max(min(1.0, centre + half), p)})
    return rows


def calibration(outcome: np.ndarray, prob: np.ndarray, path: Path, *, title: str, xlabel: str, ylabel: str,
                bins: int = 10, threshold: float | None = None) -> str:
    """Reliability diagram: observed frequency (Wilson 95 % CI) against the mean predicted probability per
    equal-width bin, each point labelled with its count, a histogram of the counts below; Brier score and the
    expected calibration error (ECE, count-weighted |observed - predicted|) in the legend."""
    plt = _pyplot()
    outcome = np.asarray(outcome, dtype=float).reshape(-1)
    prob = np.clip(np.asarray(prob, dtype=float).reshape(-1), 0.0, 1.0)
    rows = reliability_table(outcome, prob, bins)
    n = len(outcome)
    brier = float(np.mean((prob - outcome) ** 2)) if n else float("nan")
    ece = sum(r["n"] * abs(r["observed"] - r["predicted"]) for r in rows) / max(n, 1)
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.8, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfectly calibrated")
    if rows:
        x = np.array([r["predicted"] for r in rows])
        yv = np.array([r["observed"] for r in rows])
        err = np.array([[r["observed"] - r["ci_lo"] for r in rows], [r["ci_hi"] - r["observed"] for r in rows]])
        ax.errorbar(x, yv, yerr=err, fmt="o-", c="tab:blue", ms=4, lw=1.2, capsize=2,
                    label=f"model (Brier {brier:.3f}, ECE {ece:.3f})\nbars: Wilson 95 % CI per bin")
    if threshold is not None:
        ax.axvline(threshold, c="red", lw=0.8, ls=":", label=f"operating threshold {threshold:.3g}")
        hist.axvline(threshold, c="red", lw=0.8, ls=":")
    ax.set(ylabel=ylabel, xlim=(0, 1), ylim=(-0.02, 1.02), title=f"{title} (n={n}, {bins} bins)")
    ax.legend(loc="upper left", fontsize=7.5)
    counts, edges, _ = hist.hist(prob, bins=np.linspace(0, 1, bins + 1), color="tab:blue", alpha=0.6,
                                 edgecolor="white")
    for count, left in zip(counts, edges[:-1]):
        if count:
            hist.text(left + 0.5 / bins, count, f"{int(count)}", ha="center", va="bottom", fontsize=7)
    hist.set(xlabel=xlabel, ylabel="samples per bin", ylim=(0, max(counts.max(), 1) * 1.3))
    return _save(fig, path)


def calibration_binary(y: np.ndarray, scores: np.ndarray, path: Path, positive: str = "positive",
                       threshold: float | None = None) -> str:
    """Reliability diagram of a binary classifier's probability for ``positive`` on the held-out set; ``y`` is the
    outcome, 1 for the positive class (``ModelSpec.outcome``)."""
    return calibration(np.asarray(y).astype(int) == 1, scores, path, threshold=threshold,
                       title="held-out calibration", xlabel=f"predicted p({positive})",
                       ylabel=f"observed share of '{positive}'")


def calibration_top_class(y: np.ndarray, proba: np.ndarray, path: Path) -> str:
    """Confidence calibration of a multiclass classifier: the top class's probability against how often the
    top class is the true one, on the held-out set."""
    proba = np.asarray(proba, dtype=float)
    top = np.argmax(proba, axis=1)
    return calibration(top == np.asarray(y).astype(int), proba.max(axis=1), path,
                       title="held-out confidence calibration", xlabel="probability of the predicted class",
                       ylabel="observed share correct")


def importance(names: Sequence[str], mean: np.ndarray, std: np.ndarray, path: Path, *, title: str, xlabel: str,
               top: int = 15) -> str:
    """Horizontal bars of the ``top`` largest importances (mean with one standard deviation as whiskers)."""
    plt = _pyplot()
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    order = np.argsort(-mean, kind="stable")[:top][::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.28 * len(order) + 1.4))
    ax.barh(np.arange(len(order)), mean[order], xerr=std[order], color="tab:blue", alpha=0.8,
            error_kw={"lw": 0.8, "capsize": 2})
    ax.set_yticks(np.arange(len(order)), [names[i] for i in order], fontsize=8)
    ax.axvline(0, c="black", lw=0.6)
    ax.set(xlabel=xlabel, title=title)
    ax.title.set_fontsize(9)
    return _save(fig, path)


def confusion(y: np.ndarray, pred: np.ndarray, labels: Sequence[str], path: Path, title: str = "") -> str:
    """Per-class confusion matrix: cells coloured by row share (recall), annotated with counts."""
    plt = _pyplot()
    k = len(labels)
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (np.asarray(y, dtype=int), np.asarray(pred, dtype=int)), 1)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 2.2 + 0.55 * k
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title or f"held-out confusion matrix (n={int(cm.sum())})")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    return _save(fig, path)


def embedding(Z: np.ndarray, y: np.ndarray, labels: Sequence[str], path: Path, title: str = "",
              axes: tuple[str, str] = ("component 1", "component 2")) -> str:
    """A 2-D scatter of ``Z[:, :2]`` coloured by class."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4.8))
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    for k, name in enumerate(labels):
        mask = np.asarray(y) == k
        if mask.any():
            ax.scatter(Z[mask, 0], Z[mask, 1], s=12, alpha=0.8, color=cmap(k % cmap.N),
                       label=f"{name} ({int(mask.sum())})")
    ax.set(xlabel=axes[0], ylabel=axes[1], title=title)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    return _save(fig, path)


def example_patches(X: np.ndarray, y: np.ndarray, scores: np.ndarray, threshold: float, path: Path,
                    n: int = 12) -> str:
    """A grid of held-out patches (lung window) titled with truth, score and decision: TP, TN, FP, FN first."""
    plt = _pyplot()
    decided = scores >= threshold
    kinds = [("TP", (y == 1) & decided), ("FN", (y == 1) & ~decided), ("FP", (y == 0) & decided),
             ("TN", (y == 0) & ~decided)]
    picks: list[tuple[str, int]] = []
    for name, mask in kinds:
        picks += [(name, int(i)) for i in np.flatnonzero(mask)[: max(1, n // 4)]]
    picks = picks[:n]
    cols = 4
    rows = max(1, -(-len(picks) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.4))
    for ax in np.atleast_1d(axes).flat:
        ax.axis("off")
    for ax, (kind, i) in zip(np.atleast_1d(axes).flat, picks):
        lung = np.clip((X[i, :, :, 0] + 1350.0) / 1500.0, 0, 1)
        ax.imshow(lung, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{kind}: truth {'nodule' if y[i] else 'none'}\nscore {scores[i]:.3f}", fontsize=8,
                     color="green" if kind in ("TP", "TN") else "red")
    fig.suptitle(f"held-out patches, threshold {threshold:.3g} (simulated lesions on real CT)", fontsize=9)
    return _save(fig, path)


def clarke_grid(reference: np.ndarray, predicted: np.ndarray, path: Path, title: str = "") -> str:
    """Clarke error grid with the zone boundaries and the zone percentages in the legend."""
    plt = _pyplot()
    pct = clarke.zone_percentages(reference, predicted)
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    ax.scatter(reference, predicted, s=3, alpha=0.35, c="tab:blue", rasterized=True)
    k = dict(c="black", lw=0.8)
    ax.plot([0, 400], [0, 400], ls=":", c="grey", lw=0.8)
    ax.plot([0, 175 / 3], [70, 70], **k)
    ax.plot([175 / 3, 400 / 1.2], [70, 400], **k)
    ax.plot([70, 70], [84, 400], **k)
    ax.plot([0, 70], [180, 180], **k)
    ax.plot([70, 290], [180, 400], **k)
    ax.plot([70, 70], [0, 56], **k)
    ax.plot([70, 400], [56, 320], **k)
    ax.plot([180, 180], [0, 70], **k)
    ax.plot([180, 400], [70, 70], **k)
    ax.plot([240, 240], [70, 180], **k)
    ax.plot([240, 400], [180, 180], **k)
    ax.plot([130, 180], [0, 70], **k)
    for label, (x, yy) in {"A": (30, 15), "B": (370, 260), "B ": (280, 370), "C": (160, 370), "C ": (160, 15),
                           "D": (30, 140), "D ": (370, 120), "E": (30, 370), "E ": (370, 15)}.items():
        ax.text(x, yy, label.strip(), fontsize=12, fontweight="bold")
    ax.set(xlim=(0, 400), ylim=(0, 400), xlabel="reference glucose (mg/dL)", ylabel="forecast glucose (mg/dL)",
           title=title or "Clarke error grid")
    text = "  ".join(f"{z}: {pct[z]:.1f}%" for z in clarke.ZONES)
    ax.text(0.02, -0.16, text, transform=ax.transAxes, fontsize=8)
    return _save(fig, path)


def forecast_trace(minutes: np.ndarray, truth: np.ndarray, forecast: np.ndarray, persistence: np.ndarray,
                   path: Path, title: str = "") -> str:
    """Glucose 30 min ahead over time for one held-out patient: truth, model forecast, persistence."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 3.9))
    hours = np.asarray(minutes) / 60.0
    ax.plot(hours, truth, c="black", lw=1.5, label="blood glucose 30 min later (simulated truth)")
    ax.plot(hours, forecast, c="tab:orange", lw=1.2, label="LSTM forecast")
    ax.plot(hours, persistence, c="grey", lw=0.8, ls="--", label="persistence (last CGM)")
    ax.axhspan(70, 180, color="green", alpha=0.08, label="target range 70–180 mg/dL")
    ax.set(xlabel="time of forecast (hours since start)", ylabel="glucose (mg/dL)", title=title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # off the curves
    return _save(fig, path)
