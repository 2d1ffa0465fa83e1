"""REPORT.md lines for ``results/scale.json``: batch scoring of >= 1 M rows through the local, Dask and Spark
engines (written by ``make test-scale``: tests/fleet/test_score.py, raw numbers + the command)."""

from __future__ import annotations

from typing import Any


def markdown(doc: dict[str, Any]) -> list[str]:
    setup = doc.get("setup") or {}
    lines = [f"{setup.get('rows', 0):,} rows × {setup.get('features')} float32 descriptors of `{setup.get('model')}` "
             f"{setup.get('version')} (Parquet, {setup.get('parts')} parts, written in "
             f"{setup.get('write_s', 0):.1f} s) "
             f"on {setup.get('cores')} cores ({setup.get('machine')}); each engine's output equals `Model.predict` on "
             "the same rows (scores bit for bit, ids kept).", "",
             "| engine | workers × threads | rows | seconds (incl. engine start) | rows/s |", "|---|---|---|---|---|"]
    lines += [f"| {r['engine']} | {r['workers']} × {r['threads_per_worker']} | {r['rows']:,} | {r['seconds']:.1f} | "
              f"{r['rows_per_s']:,.0f} |" for r in doc.get("results", [])]
    by = {r["engine"]: r for r in doc.get("results", [])}
    if "spark" in by and "local" in by and by["spark"]["rows_per_s"] < by["local"]["rows_per_s"]:
        lines += ["", f"Spark scores {by['spark']['rows_per_s'] / by['local']['rows_per_s']:.2f}× the local engine's "
                      "rows/s here, its JVM start included: the engine for a cluster, not for a "
                      f"{setup.get('cores')}-core box."]
    return lines
