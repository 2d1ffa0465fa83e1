"""The deletion/insertion figure (PNG, matplotlib Agg): the card's (one model) and the benchmark's (every model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOT = "plots/explanation_fidelity.png"


def fidelity_figure(results: dict[str, dict[str, Any]], path: Path) -> Path:
    """Per model (a row), the mean deletion and insertion curves, attribution order vs random orders.

    Args:
        results: {model name: the manifest's ``explanation.fidelity`` (see :func:`medinfer.fidelity.summarize`)}.
        path: where to write the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(results))
    fig, axes = plt.subplots(rows, 2, figsize=(8.4, 2.9 * rows), squeeze=False)
    for (name, fid), (left, right) in zip(results.items(), axes):
        x = fid.get("fractions") or []
        curves = fid.get("curves") or {}
        for ax, kind, better in ((left, "deletion", "lower"), (right, "insertion", "higher")):
            ax.plot(x, curves.get(kind, []), lw=2, label="attribution order")
            ax.plot(x, curves.get(f"{kind}_random", []), lw=1.5, ls="--", c="grey",
                    label=f"random order (mean of {fid.get('random_orders', '')})")
            gain = fid.get(f"{kind}_gain")
            ax.set(xlabel=f"share of ranked features {'removed' if kind == 'deletion' else 'kept'}",
                   ylabel=f"score ({fid.get('units', '')})")
            ax.set_title(f"{name} ({fid.get('method', '')}, n={fid.get('n')}): {kind}, {better} is better"
                         + (f"; gain {gain:.3g}" if gain is not None else ""), fontsize=8)
            ax.legend(fontsize=7)
    fig.suptitle("Explanation fidelity on held-out samples: attribution order vs random order", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path
