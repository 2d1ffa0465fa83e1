"""Benchmark history (JSON lines, one suite run per line) and the ratio-based regression check.

Absolute latencies on a shared VM drift by tens of percent between runs; ratios measured inside one run
(medinfer vs bare onnxruntime on the same graph, same inputs, interleaved) do not. So the regression check
compares RATIOS of a new run with those of a stored baseline run, never absolute times.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DEFAULT_THRESHOLD = 0.15


def history_file(root: Path, env: dict[str, Any]) -> Path:
    """One history file per machine class (CPU model + usable cores), e.g. ``amd-epyc-2c.jsonl``."""
    cpu = env.get("cpu", {})
    slug = re.sub(r"[^a-z0-9]+", "-", str(cpu.get("model", "unknown")).lower()).strip("-")[:40]
    return root / f"{slug}-{cpu.get('usable_cores', 0)}c.jsonl"


def append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    slim = {k: v for k, v in record.items() if not k.startswith("_")}
    slim["models"] = [{k: v for k, v in m.items() if not k.startswith("_")} for m in record.get("models", [])]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(slim, separators=(",", ":")) + "\n")


def load(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ratios(record: dict[str, Any]) -> dict[str, float]:
    """medinfer's ratios against bare onnxruntime, keyed ``model|batch|candidate`` (p50), plus overheads."""
    out: dict[str, float] = {}
    for model in record.get("models", []):
        for batch in model["batches"]:
            for row in batch["rows"]:
                if row["kind"] == "medinfer":
                    out[f"{model['model']}|{batch['batch']}|{row['candidate']}"] = row["ratio_p50_vs_ort"]
        for key, value in (model.get("overhead") or {}).items():
            out[f"{model['model']}|overhead|{key}"] = value
    return out


def check(new: dict[str, Any], baseline: dict[str, Any], threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """Ratios of ``new`` that are worse than ``baseline``'s by more than ``threshold`` (relative).

    Returns one line per regression (empty list: no regression). Keys present in only one run are ignored.
    """
    old, cur = ratios(baseline), ratios(new)
    problems = []
    for key in sorted(set(old) & set(cur)):
        if old[key] > 0 and cur[key] / old[key] - 1.0 > threshold:
            problems.append(f"{key}: ratio {cur[key]:.3f} vs baseline {old[key]:.3f} "
                            f"(+{(cur[key] / old[key] - 1) * 100:.0f} % > {threshold * 100:.0f} %)")
    return problems


def baseline_of(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The stored baseline for the newest record: the latest one marked ``baseline``, else the one before it."""
    if len(records) < 2:
        return None
    marked = [r for r in records[:-1] if r.get("baseline")]
    return marked[-1] if marked else records[-2]
