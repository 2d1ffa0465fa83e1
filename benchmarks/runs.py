"""Run folders: every ``python -m benchmarks run`` writes ``build/bench/<time>-<cpu>/`` (record.json: the
measurements and the command; raw.npz: every query's latency, for plots), and nothing in the repo. Only
``python -m benchmarks publish --from FOLDER`` copies a FULL run into ``results/suite.json`` (and its cold starts into
``results/cold_start.json``, its one-pass-vs-patches ``slice.json`` into ``results/``), the plots, REPORT.md and
README's numbers — on purpose, never as a side effect of a shortened run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np


def write(record: dict[str, Any], parent: Path) -> Path:
    """Write ``record`` (raw samples under each model's ``_raw``) into a new run folder under ``parent``."""
    cpu = re.sub(r"[^a-z0-9]+", "-", str(record["env"]["cpu"].get("model", "cpu")).lower()).strip("-")[:30]
    folder = parent / f"{record['time'].replace(':', '')}-{cpu}{'' if record.get('full') else '-short'}"
    folder.mkdir(parents=True, exist_ok=True)
    raw = {f"{m['model']}|{k}": v for m in record["models"] for k, v in (m.get("_raw") or {}).items()}
    np.savez_compressed(folder / "raw.npz", **{f"s{i}": v for i, v in enumerate(raw.values())})
    (folder / "raw_keys.json").write_text(json.dumps(list(raw)))
    (folder / "record.json").write_text(json.dumps(published(record), indent=1) + "\n")
    return folder


def write_slice(folder: Path, doc: dict[str, Any]) -> Path:
    """The run's one-pass-vs-patches document (``benchmarks.slice.document``) beside its record."""
    path = folder / "slice.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def read_slice(folder: Path) -> dict[str, Any] | None:
    path = folder / "slice.json"
    return json.loads(path.read_text()) if path.is_file() else None


def cold_start_doc(record: dict[str, Any]) -> dict[str, Any] | None:
    """``results/cold_start.json`` from a run record: every cold-start run of every model and variant (each with
    its raw per-process measurements) and the all-bundles-in-one-process peak RSS; None when the run had none."""
    models = {m["model"]: {"default": m["cold_start"], **(m.get("cold_start_variants") or {})}
              for m in record.get("models", []) if m.get("cold_start")}
    if not models:
        return None
    return {"kind": "medinfer.cold_start", "command": record.get("command", ""), "time": record["time"],
            "provenance": record.get("provenance"), "bundles": record.get("bundles"),
            "env": record["env"], "models": models, "all_loaded": record.get("all_loaded")}


def slice_full(doc: dict[str, Any]) -> bool:
    """Whether a one-pass-vs-patches document was timed at least as long as a published one must be."""
    from .slice import FULL

    method = doc.get("method") or {}
    return method.get("seconds_per_size", 0) >= FULL["seconds"] and method.get("rounds", 0) >= FULL["rounds"]


def publish_results(run: Path, out: Path) -> list[str]:
    """Write a FULL run folder's results files into ``out``: ``suite`` (the record), ``cold_start`` (its cold
    starts) and ``slice`` (its one-pass-vs-patches section, when timed in full). Returns the names written."""
    from . import results

    record = read(run)
    if not record.get("full"):
        raise ValueError(f"{run} is a short run: only a full run (make bench) is published")
    results.write("suite", published(record), out)
    written = ["suite"]
    cold = cold_start_doc(record)
    if cold is not None:
        results.write("cold_start", cold, out)
        written.append("cold_start")
    doc = read_slice(run)
    if doc is not None and slice_full(doc):
        results.write("slice", doc, out)
        written.append("slice")
    return written


def read(folder: Path) -> dict[str, Any]:
    """A run folder's record with each model's raw samples back under ``_raw``."""
    record = json.loads((folder / "record.json").read_text())
    keys = json.loads((folder / "raw_keys.json").read_text()) if (folder / "raw_keys.json").is_file() else []
    if keys:
        with np.load(folder / "raw.npz") as npz:
            for i, key in enumerate(keys):
                model, rest = key.split("|", 1)
                m = next(m for m in record["models"] if m["model"] == model)
                m.setdefault("_raw", {})[rest] = npz[f"s{i}"]
    return record


def published(record: dict[str, Any]) -> dict[str, Any]:
    """The record without raw samples (what results/suite.json and the run folder's record.json hold)."""
    out = {k: v for k, v in record.items() if not k.startswith("_")}
    out["models"] = [{k: v for k, v in m.items() if not k.startswith("_")} for m in record.get("models", [])]
    return out


def plots(folder: Path, out: Path, records: list[dict[str, Any]]) -> list[Path]:
    """Draw the published run's plots into ``out`` (the repo's benchmarks/plots)."""
    from . import plots as draw

    record = read(folder)
    out.mkdir(parents=True, exist_ok=True)
    drawn = draw.distributions(record, out) + [draw.native_vs_runtime(record, out)]
    if records:
        drawn.append(draw.history(records, out))
    return drawn


def committed_plots(folder: Path) -> list[Path]:
    """The plots in the repo, in the order publish draws them."""
    latency = sorted(folder.glob("latency_*.png"))
    rest = [folder / n for n in ("native_vs_runtime.png", "history_overhead.png") if (folder / n).is_file()]
    return latency + rest
