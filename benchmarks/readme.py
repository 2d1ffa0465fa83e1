"""README's speed and accuracy numbers, rendered from committed data: each sits between ``<!-- n:KEY -->`` and
``<!-- /n -->``, and :func:`values` says what it must read from the results files (``results/models.json``: the
built bundles' held-out metrics; the published suite run, else the newest full history record;
``results/concurrency.json``; ``results/safety.json``; the rules' constants: :mod:`benchmarks.stated`). The same
spans in SECURITY.md and docs/*.md are rendered alike. ``python -m benchmarks publish`` and ``report`` rewrite them;
tests/benchmarks/test_readme_numbers.py fails when one differs from its data, or when a speed or ratio stands
anywhere in those documents outside a rendered span (:mod:`benchmarks.claims`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import history, results
from .contenders import SAME

SPAN = re.compile(r"<!-- n:([\w.]+) -->(.*?)<!-- /n -->", re.S)
SKLEARN = (("drug_activity_rf", "RF"), ("clinical_notes_tfidf", "TF-IDF"), ("gene_expression_svd", "SVD"))


def models_doc(bundles: list[Path], command: str, started: dict[str, Any] | None = None) -> dict[str, Any]:
    """Held-out metrics and variants of the built bundles, read from their manifests (raw data), with the
    provenance of the command (``started``: captured before it read them) and the bundles' sha256."""
    from . import provenance

    out = []
    for b in bundles:
        m = json.loads((b / "manifest.json").read_text())
        out.append({"model": m["name"], "version": m["version"], "created": m.get("created"),
                    "model_sha256": m["files"][m["variants"]["default"]["file"]]["sha256"],
                    "synthetic_data": bool(m.get("data", {}).get("synthetic")), "metrics": m.get("metrics", {}),
                    "variants": {k: {"precision": v.get("precision"), "accuracy_delta": v.get("accuracy_delta", {})}
                                 for k, v in m["variants"].items()}})
    return {"command": command, "provenance": started or provenance.capture(),
            "bundles": provenance.bundles_of(bundles), "models": out}


def suite_source(folder: Path = results.FOLDER, records: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The published suite run, else the newest full record of the history."""
    rec = results.load("suite", folder)
    if rec is not None:
        return rec
    full = [r for r in (records if records is not None else history.all_records())
            if history.is_full(r) and history.clean(r)]
    return full[-1] if full else None


def _b1(rec: dict[str, Any], model: str) -> dict[str, float]:
    m = next((m for m in rec["models"] if m["model"] == model), None)
    b = next((b for b in (m or {}).get("batches", []) if b["batch"] == 1), None)
    return {r["candidate"]: r["latency_us"]["p50"] for r in (b or {}).get("rows", [])}


def _ci(entry: dict[str, Any], digits: int) -> str:
    ci = entry.get("ci95")
    return f"{entry['value']:.{digits}f}" + (f" ({ci[0]:.{digits}f}–{ci[1]:.{digits}f})" if ci else "")


def values(models: dict[str, Any] | None, suite: dict[str, Any] | None, concurrency: dict[str, Any] | None,
           safety: dict[str, Any] | None = None, domain: dict[str, Any] | None = None) -> dict[str, Callable[[], str]]:
    """{marker key: how its text is made from the data (and, ``const.*``, from the rules' constants)}."""
    from . import stated

    by = {m["model"]: m for m in (models or {}).get("models", [])}

    def audit_added(row: str = "predict + audit") -> str:
        from .safety import audit_added_us

        cost = next(c for c in (safety or {}).get("costs", []) if c["model"] == "drug_activity_rf")
        what = "per record over a plain predict" if row == "predict + audit" else "per record with fsync"
        return f"{audit_added_us(cost, row):+.1f} µs {what} (drug_activity_rf, p50, batch 1)"

    def metric(model: str, key: str, digits: int, baseline: bool = False) -> str:
        h = by[model]["metrics"]
        return _ci((h["baseline"] if baseline else h)["heldout"][key], digits)

    def int8_ratio() -> str:
        p = _b1(suite or {"models": []}, "lung_nodule_cnn")
        return f"{p['medinfer [int8]'] / p['medinfer [default]']:.2f}×"

    def hot_path() -> str:
        assert suite is not None
        parts = []
        for model, short in SKLEARN:
            p = _b1(suite, model)
            bare = p.get(SAME, p.get(history.LEGACY_BARE))
            if bare is not None and "medinfer [default]" in p:
                parts.append(f"{short} +{p['medinfer [default]'] - bare:.1f} µs")
        return f"{', '.join(parts)} (p50, batch 1, run {suite['time'][:10]})"

    def micro(model: str | None) -> str:
        rows = (concurrency or {}).get("rows", [])
        ratio = {r["model"]: r["micro_batched"]["requests_per_s"] / r["direct"]["requests_per_s"] for r in rows}
        if model is not None:
            r = next(r for r in rows if r["model"] == model)
            p99 = r["micro_batched"]["p99_us"] / r["direct"]["p99_us"]
            return f"{ratio[model]:.2f}× the requests with {p99:.2f}× the p99"
        small = [v for k, v in ratio.items() if v < 1.0]
        return f"{min(small):.2f}–{max(small):.2f}×"

    return {
        "cnn.auc": lambda: metric("lung_nodule_cnn", "roc_auc", 3),
        "lstm.rmse": lambda: metric("glucose_lstm", "rmse", 1),
        "lstm.persistence": lambda: f"{by['glucose_lstm']['metrics']['baseline']['heldout']['rmse']['value']:.1f}",
        "lstm.clarke_a": lambda: f"{by['glucose_lstm']['metrics']['heldout']['clarke_A_pct']['value']:.0f} %",
        "int8.auc": lambda: f"−{by['lung_nodule_cnn']['variants']['int8']['accuracy_delta']['roc_auc']:.3f}"
        if by["lung_nodule_cnn"]["variants"]["int8"]["accuracy_delta"]["roc_auc"] >= 0 else
        f"+{-by['lung_nodule_cnn']['variants']['int8']['accuracy_delta']['roc_auc']:.3f}",
        "int8.ratio": int8_ratio,
        "hotpath.us": hot_path,
        "microbatch.cnn": lambda: micro("lung_nodule_cnn"),
        "microbatch.small": lambda: micro(None),
        "audit.added": audit_added,
        "audit.fsync": lambda: audit_added("predict + audit + fsync"),
        **stated.values(domain),
    }


def expected(folder: Path = results.FOLDER) -> dict[str, str]:
    """Every marker's text as the committed data makes it (a key whose data is missing reads 'no data')."""
    out = {}
    makers = values(results.load("models", folder), suite_source(folder), results.load("concurrency", folder),
                    results.load("safety", folder), results.load("domain", folder))
    for key, make in makers.items():
        try:
            out[key] = make()
        except (KeyError, StopIteration, AssertionError, TypeError, ValueError, ZeroDivisionError):
            out[key] = "no data"
    return out


def spans(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in SPAN.finditer(text)}


def rewrite(readme: Path, folder: Path = results.FOLDER) -> bool:
    """Rewrite every marked number of ``readme`` from the data; True when something changed."""
    want = expected(folder)
    text = readme.read_text()
    new = SPAN.sub(lambda m: f"<!-- n:{m.group(1)} -->{want.get(m.group(1), m.group(2))}<!-- /n -->", text)
    readme.write_text(new)
    return new != text


def rewrite_documents(folder: Path = results.FOLDER) -> list[Path]:
    """Rewrite the marked numbers of README.md, SECURITY.md and docs/*.md; the documents that changed."""
    from .claims import documents

    return [doc for doc in documents() if rewrite(doc, folder)]
