"""The Dask engine of ``medinfer score``: ``map_partitions`` on the threaded scheduler.

Each partition goes to the same :class:`~medinfer.fleet.score.plan.Scorer`, which builds its onnxruntime session
once per worker process and writes a folder of part files.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ...extras import optional_import
from .plan import Plan, Progress, ScoreOptions, Scorer, arrow_schema, is_csv_input, is_csv_output


# -- Dask -------------------------------------------------------------------------------------------------
def score_dask(bundle: str | Path, source: str | Path, out: str | Path, plan: Plan, options: ScoreOptions,
               progress: Progress | None = None) -> int:
    """Score with ``dask.dataframe.map_partitions`` on the threaded scheduler (``options.workers`` threads;
    onnxruntime releases the GIL while it runs). Writes ``out/part.*.parquet`` (or ``part-*.csv``)."""
    dask = optional_import("dask", "dask", "medinfer score --engine dask")
    dd = optional_import("dask.dataframe", "dask", "medinfer score --engine dask")
    from dask.callbacks import Callback

    columns = [plan.id_column, *plan.features]
    if is_csv_input(source):
        path = Path(source)
        pattern = str(path / "*.csv") if path.is_dir() else str(path)
        sep = "\t" if str(source).lower().endswith(".tsv") else ","
        frame = dd.read_csv(pattern, usecols=columns, dtype=plan.csv_types or None, sep=sep)
    else:
        frame = dd.read_parquet(str(source), columns=columns)
    csv_out = is_csv_output(out)
    scorer = Scorer(bundle, plan, options, text_output=csv_out)
    meta = scorer(frame._meta)
    scored = frame.map_partitions(scorer, meta=meta)
    rows = _RowCounter()
    scored = scored.map_partitions(rows, meta=meta)
    if csv_out:
        Path(out).mkdir(parents=True, exist_ok=True)
        task = scored.to_csv(str(Path(out) / "part-*.csv"), index=False, compute=False)
    else:
        import pyarrow as pa

        schema = arrow_schema(plan, pa.Schema.from_pandas(meta[[plan.id_column]], preserve_index=False)[0].type,
                              False)
        task = scored.to_parquet(str(out), write_index=False, compute=False, schema=schema)

    class _Report(Callback):  # type: ignore[misc]
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if progress is not None:
                done = len(state["finished"])
                total = done + sum(len(state[k]) for k in ("ready", "waiting", "running"))
                progress(done, total, "tasks")

    with _Report(), dask.config.set(scheduler="threads", num_workers=options.workers):
        dask.compute(task)
    return rows.value


class _RowCounter:
    """Counts the rows passing through (called in the threaded scheduler's workers)."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def __call__(self, part: Any) -> Any:
        with self._lock:
            self.value += len(part)
        return part

    def __dask_tokenize__(self) -> Any:
        return ("medinfer-row-counter", id(self))


