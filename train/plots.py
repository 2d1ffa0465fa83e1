"""Model-card figures for the classifiers (PNG, matplotlib's Agg backend; no display needed).

Each function draws one figure from held-out data, writes it to ``path`` and returns the path relative to the
bundle (``plots/<file>.png``), which is what ``spec.plots`` hands to the exporter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


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
    """Held-out ROC curve with the operating point (sensitivity, 1 - specificity at ``threshold``) marked."""
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
