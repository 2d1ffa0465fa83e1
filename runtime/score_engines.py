"""The distributed engines of ``medinfer score``: Dask ``map_partitions`` and Spark ``mapInPandas``.

Both hand each partition to the same :class:`~medinfer.score.Scorer`, which builds its onnxruntime session where
the partition is scored (a Dask worker thread's process, a Spark Python worker), once per worker process, and
writes a folder of part files. Spark runs ``local[workers]`` bound to 127.0.0.1 with its web UI off unless
``--master`` names a cluster; the same code then runs on the cluster's executors.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from .errors import MissingExtraError
from .score import PROVENANCE, Plan, Progress, ScoreOptions, Scorer, _dataset, arrow_schema, is_csv_output

log = logging.getLogger(__name__)


def _is_csv_input(source: str | Path) -> bool:
    path = Path(source)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return bool(files) and all(p.suffix.lower() in (".csv", ".tsv") for p in files
                               if not p.name.startswith((".", "_")))


# -- Dask -------------------------------------------------------------------------------------------------
def score_dask(bundle: str | Path, source: str | Path, out: str | Path, plan: Plan, options: ScoreOptions,
               progress: Progress | None = None) -> int:
    """Score with ``dask.dataframe.map_partitions`` on the threaded scheduler (``options.workers`` threads;
    onnxruntime releases the GIL while it runs). Writes ``out/part.*.parquet`` (or ``part-*.csv``)."""
    try:
        import dask
        import dask.dataframe as dd
        from dask.callbacks import Callback
    except ImportError as exc:
        raise MissingExtraError("medinfer score --engine dask", "dask", exc.name) from None

    columns = [plan.id_column, *plan.features]
    if _is_csv_input(source):
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


# -- Spark ------------------------------------------------------------------------------------------------
_SPARK_TYPES = {"int64": "bigint", "int32": "int", "int16": "smallint", "int8": "tinyint", "double": "double",
                "float": "float", "string": "string", "large_string": "string", "bool": "boolean"}


def spark_session(options: ScoreOptions, app: str) -> tuple[Any, bool]:
    """A SparkSession: ``local[workers]`` on 127.0.0.1 with the UI off (or ``options.master``).

    Returns ``(session, created)``; only a session created here is stopped afterwards.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise MissingExtraError("medinfer score --engine spark", "spark", exc.name) from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    local = options.master is None or options.master.startswith("local")
    if local:
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    # executors' Python must be this one (it has medinfer); a cluster would set its own
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(options.master or f"local[{options.workers}]").appName(app)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(options.batch_rows))
               .config("spark.python.worker.reuse", "true"))
    if local:
        builder = (builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.memory", os.environ.get("MEDINFER_SPARK_DRIVER_MEMORY", "2g")))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session, True


def _output_ddl(plan: Plan, id_type: str, csv_out: bool) -> str:
    fields = [f"`{plan.id_column}` {id_type}"]
    if plan.classification:
        fields.append("label string")
    fields.append("score float")
    if plan.multiclass:
        fields.append("probabilities string" if csv_out else "probabilities array<float>")
    fields += ["status string", "reason string"] + [f"{p} string" for p in PROVENANCE]
    return ", ".join(fields)


def _partition_fn(scorer: Scorer, rows: Any) -> Any:
    def run(frames: Any) -> Any:
        scorer.model()  # built here, on the executor, once per Python worker (sessions do not pickle)
        for frame in frames:
            out = scorer(frame)
            rows.add(len(out))
            yield out

    return run


def _watch(session: Any, progress: Progress, stop: threading.Event) -> None:
    tracker = session.sparkContext.statusTracker()
    while not stop.wait(0.5):
        done = total = 0
        for stage in tracker.getActiveStageIds():
            info = tracker.getStageInfo(stage)
            if info is not None:
                done, total = done + info.numCompletedTasks, total + info.numTasks
        if total:
            progress(done, total, "partitions")


def score_spark(bundle: str | Path, source: str | Path, out: str | Path, plan: Plan, options: ScoreOptions,
                progress: Progress | None = None) -> int:
    """Score with Spark ``mapInPandas``; writes ``out/part-*.parquet`` (or ``.csv``)."""
    from pyspark.sql import functions as F

    session, created = spark_session(options, f"medinfer-score-{Path(bundle).name}")
    stop = threading.Event()
    try:
        id_arrow = str(_dataset(source, plan.csv_types).schema.field(plan.id_column).type)
        id_type = _SPARK_TYPES.get(id_arrow, "string")
        if _is_csv_input(source):
            sep = "\t" if str(source).lower().endswith(".tsv") else ","
            frame = session.read.csv(str(source), header=True, sep=sep)
            frame = frame.select(F.col(plan.id_column).cast(id_type).alias(plan.id_column),
                                 *[F.col(c).cast(plan.dtype.replace("float32", "float")
                                                 .replace("float64", "double")).alias(c) for c in plan.features])
        else:
            frame = session.read.parquet(str(source)).select(plan.id_column, *plan.features)
            id_type = frame.schema[plan.id_column].dataType.simpleString()
        csv_out = is_csv_output(out)
        rows = session.sparkContext.accumulator(0)
        scorer = Scorer(bundle, plan, options, text_output=csv_out)
        scored = frame.mapInPandas(_partition_fn(scorer, rows), schema=_output_ddl(plan, id_type, csv_out))
        if progress is not None:
            threading.Thread(target=_watch, args=(session, progress, stop), daemon=True).start()
        writer = scored.write.mode("overwrite" if options.overwrite else "errorifexists")
        if csv_out:
            writer.option("header", "true").csv(str(out))
        else:
            writer.parquet(str(out))
        return int(rows.value)
    finally:
        stop.set()
        if created:
            session.stop()
