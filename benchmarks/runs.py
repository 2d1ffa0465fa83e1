"""Run folders: every ``python -m benchmarks run`` writes ``build/bench/<time>-<cpu>/`` (record.json: the
measurements and the command; raw.npz: every query's latency, for plots), and nothing in the repo. Only
``python -m benchmarks publish --from FOLDER`` copies a FULL run into ``results/suite.json``, the plots, REPORT.md
and README's numbers — on purpose, never as a side effect of a shortened run."""

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
