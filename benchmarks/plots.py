"""PNG plots of a suite run and of the history (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def distributions(record: dict[str, Any], out: Path) -> list[Path]:
    """Per model: the latency distribution of every candidate at batch 1, whiskers to min/max (tails visible)."""
    plt = _plt()
    paths = []
    for model in record["models"]:
        raw = model.get("_raw") or {}
        batch = next((b for b in model["batches"] if b["batch"] == 1), model["batches"][0])
        names = [r["candidate"] for r in batch["rows"]]
        data = [raw.get(f"{batch['batch']}|{n}") for n in names]
        if any(d is None for d in data):
            continue
        fig, ax = plt.subplots(figsize=(8, 0.6 * len(names) + 1.5))
        us = [np.asarray(d) / 1e3 for d in data]
        ax.boxplot(us, vert=False, whis=(0, 100), showfliers=False, tick_labels=names)
        for i, u in enumerate(us, start=1):
            for q, marker in ((99, "|"), (99.9, "x")):
                ax.plot(np.percentile(u, q), i, marker=marker, color="crimson", markersize=9)
        ax.set_xscale("log")
        ax.set_xlabel("latency per query (µs, log) — box p25–p75, whiskers min–max, | p99, x p99.9")
        ax.set_title(f"{model['model']}: batch {batch['batch']} latency distribution")
        fig.tight_layout()
        path = out / f"latency_{model['model']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def native_vs_runtime(record: dict[str, Any], out: Path) -> Path:
    """Grouped bars: p50 at batch 1 of native / bare ORT / medinfer per model (log scale)."""
    plt = _plt()
    models = record["models"]
    groups: dict[str, dict[str, float]] = {}
    for m in models:
        batch = next((b for b in m["batches"] if b["batch"] == 1), m["batches"][0])
        for row in batch["rows"]:
            kind = row["kind"] if row["kind"] != "medinfer" else row["candidate"]
            key = {"native": "native (best)", "ort": row["candidate"]}.get(kind, kind)
            value = row["latency_us"]["p50"]
            groups.setdefault(key, {})
            prev = groups[key].get(m["model"])
            groups[key][m["model"]] = value if prev is None else min(prev, value)
    names = [m["model"] for m in models]
    keys = sorted(groups, key=lambda k: (not k.startswith("native"), k))
    width = 0.8 / max(len(keys), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(names)), 4.5))
    for i, key in enumerate(keys):
        vals = [groups[key].get(n, np.nan) for n in names]
        ax.bar(np.arange(len(names)) + i * width, vals, width, label=key)
    ax.set_xticks(np.arange(len(names)) + width * (len(keys) - 1) / 2, names, rotation=15)
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency at batch 1 (µs, log)")
    ax.set_title("native framework vs onnxruntime vs medinfer (one interleaved run)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "native_vs_runtime.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def history(records: list[dict[str, Any]], out: Path) -> Path:
    """medinfer [default] / bare ORT (p50, batch 1) per model over the history's runs."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    series: dict[str, list[tuple[int, float]]] = {}
    labels = []
    for i, rec in enumerate(records):
        labels.append((rec.get("env", {}).get("git_commit") or "?")[:7])
        for m in rec.get("models", []):
            ratio = (m.get("overhead") or {}).get("predict_vs_bare_same_options_p50")
            if ratio is not None:
                series.setdefault(m["model"], []).append((i, ratio))
    for name, pts in sorted(series.items()):
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", label=name)
    import json

    bound = json.loads((Path(__file__).parent / "targets.json").read_text())["overhead_same_options"]["max"]
    ax.axhline(bound, color="grey", linestyle="--", linewidth=1, label=f"target {bound:g}")
    ax.set_xticks(range(len(labels)), labels, rotation=45, fontsize=7)
    ax.set_ylabel("Model.predict / bare session.run (p50, batch 1)")
    ax.set_title("runtime overhead over commits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "history_overhead.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
