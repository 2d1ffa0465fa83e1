"""Model-card figures (PNG, matplotlib Agg): ROC with the operating point, example patches, Clarke error grid,
forecast-vs-truth trace. Each function writes one file and returns its path relative to the bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import clarke


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return f"plots/{path.name}"


def roc_curve(y: np.ndarray, scores: np.ndarray, threshold: float, path: Path) -> str:
    """ROC curve of held-out scores with the operating point (sensitivity, 1 - specificity) marked."""
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve as curve

    plt = _plt()
    fpr, tpr, _ = curve(y, scores)
    sens = float(np.mean(scores[y == 1] >= threshold)) if (y == 1).any() else float("nan")
    fp = float(np.mean(scores[y == 0] >= threshold)) if (y == 0).any() else float("nan")
    auc = roc_auc_score(y, scores) if len(np.unique(y)) == 2 else float("nan")
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot(fpr, tpr, lw=2, label=f"model (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    ax.scatter([fp], [sens], c="red", zorder=3, label=f"operating point t={threshold:.3g}\n"
                                                      f"sens {sens:.2f}, spec {1 - fp:.2f}")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01),
           title=f"held-out ROC (n={len(y)})")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def example_patches(X: np.ndarray, y: np.ndarray, scores: np.ndarray, threshold: float, path: Path,
                    n: int = 12) -> str:
    """A grid of held-out patches (lung window) titled with truth, score and decision: TP, TN, FP, FN first."""
    plt = _plt()
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
    plt = _plt()
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
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.0, 3.4))
    hours = np.asarray(minutes) / 60.0
    ax.plot(hours, truth, c="black", lw=1.5, label="blood glucose 30 min later (simulated truth)")
    ax.plot(hours, forecast, c="tab:orange", lw=1.2, label="LSTM forecast")
    ax.plot(hours, persistence, c="grey", lw=0.8, ls="--", label="persistence (last CGM)")
    ax.axhspan(70, 180, color="green", alpha=0.06)
    ax.set(xlabel="time of forecast (hours since start)", ylabel="glucose (mg/dL)", title=title)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)
