"""Benchmark history (JSON lines, one full suite run per line) and the ratio-based regression gate.

Absolute latencies on a shared VM drift by tens of percent between runs; ratios measured inside one run
(medinfer vs a bare onnxruntime session with the same options, same inputs, interleaved) do not. The gate
compares each ratio of a new run with the MEDIAN of that ratio over the last ``n`` full runs on the same CPU
fingerprint (model, flags, usable cores): one lucky or unlucky run neither sets nor moves the bar, and a new
machine has no baseline, which the gate says loudly instead of passing silently. Only runs of committed code count
(:func:`clean`): a run from a tree with uncommitted changes is neither kept in the history nor part of a baseline
or of a range REPORT.md shows.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

DEFAULT_THRESHOLD = 0.15
DEFAULT_WINDOW = 5
LEGACY_BARE = "ort (bundle profile)"  # records before issue 14: the batch-1 profile session at every batch size


def history_file(root: Path, env: dict[str, Any]) -> Path:
    """One history file per machine class (CPU model + usable cores), e.g. ``amd-epyc-2c.jsonl``."""
    cpu = env.get("cpu", {})
    slug = re.sub(r"[^a-z0-9]+", "-", str(cpu.get("model", "unknown")).lower()).strip("-")[:40]
    return root / f"{slug}-{cpu.get('usable_cores', 0)}c.jsonl"


def fingerprint(env: dict[str, Any]) -> str:
    """The CPU a record was measured on: model, instruction-set flags, usable cores (what ratios depend on)."""
    cpu = env.get("cpu", {})
    return f"{cpu.get('model')}|{','.join(sorted(cpu.get('flags', [])))}|{cpu.get('usable_cores')}c"


def clean(record: dict[str, Any]) -> bool:
    """Whether a record measured committed code: its provenance says the tree was clean at its start (a record
    made before provenance existed: its commit, read at the end, carries no ``+dirty`` mark)."""
    prov = record.get("provenance")
    if isinstance(prov, dict):
        return prov.get("dirty") is False
    commit = (record.get("env") or {}).get("git_commit")
    return bool(commit) and not str(commit).endswith("+dirty")


def is_full(record: dict[str, Any]) -> bool:
    """A run with the published settings (older records carry no ``full`` flag: judged by their settings)."""
    if "full" in record:
        return bool(record["full"])
    return float(record.get("seconds_per_batch", 0)) >= 6.0 and int(record.get("rounds", 0)) >= 12


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
    """medinfer's like-for-like ratios, keyed ``model|batch|candidate|vs_same_options`` (p50), plus the batch-1
    overheads (``model|overhead|...``, comparable with records from before issue 14: same session at batch 1)."""
    out: dict[str, float] = {}
    for model in record.get("models", []):
        for batch in model["batches"]:
            for row in batch["rows"]:
                if row["kind"] == "medinfer" and "ratio_p50_vs_same_options" in row:
                    out[f"{model['model']}|{batch['batch']}|{row['candidate']}|vs_same_options"] = \
                        row["ratio_p50_vs_same_options"]
        for key, value in (model.get("overhead") or {}).items():
            out[f"{model['model']}|overhead|{key}"] = value
    return out


def baseline(records: list[dict[str, Any]], new: dict[str, Any],
             window: int = DEFAULT_WINDOW) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Per ratio, the median over the last ``window`` earlier full runs on ``new``'s CPU fingerprint.

    Returns ``(medians, runs used)``; both empty when this CPU has no earlier full run.
    """
    mine = fingerprint(new.get("env", {}))
    earlier = [r for r in records if r is not new and r.get("time") != new.get("time")]
    same = [r for r in earlier if is_full(r) and clean(r) and fingerprint(r.get("env", {})) == mine][-window:]
    values: dict[str, list[float]] = {}
    for r in same:
        for key, value in ratios(r).items():
            values.setdefault(key, []).append(value)
    return {k: statistics.median(v) for k, v in values.items()}, same


def check(new: dict[str, Any], base: dict[str, float], threshold: float = DEFAULT_THRESHOLD) -> list[str]:
    """Ratios of ``new`` worse than the baseline median by more than ``threshold`` (relative); one line each.

    Keys present on one side only are ignored (a contender added or renamed is not a regression).
    """
    cur = ratios(new)
    problems = []
    for key in sorted(set(base) & set(cur)):
        if base[key] > 0 and cur[key] / base[key] - 1.0 > threshold:
            problems.append(f"{key}: ratio {cur[key]:.3f} vs median {base[key]:.3f} of the baseline runs "
                            f"(+{(cur[key] / base[key] - 1) * 100:.0f} % > {threshold * 100:.0f} %)")
    return problems


def overhead_ranges(records: list[dict[str, Any]], env: dict[str, Any] | None = None,
                    last: int = 3) -> dict[str, dict[str, tuple[float, float, int]]]:
    """Per model and overhead key, (min, max, runs) over the last ``last`` full runs (on ``env``'s CPU if given)."""
    mine = fingerprint(env) if env is not None else None
    runs = [r for r in records if is_full(r) and clean(r)
            and (mine is None or fingerprint(r.get("env", {})) == mine)][-last:]
    out: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        for m in r.get("models", []):
            for key, value in (m.get("overhead") or {}).items():
                out.setdefault(m["model"], {}).setdefault(key, []).append(value)
    return {m: {k: (min(v), max(v), len(v)) for k, v in keys.items()} for m, keys in out.items()}


FOLDER = Path(__file__).with_name("history")


def all_records(root: Path = FOLDER) -> list[dict[str, Any]]:
    """Every record of every history file (``history/<cpu>.jsonl``), oldest first per file."""
    return [r for path in sorted(root.glob("*.jsonl")) for r in load(path)]
