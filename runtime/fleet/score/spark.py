"""The Spark engine of ``medinfer score``: ``mapInPandas``, ``local[workers]`` on 127.0.0.1 with the UI off
unless ``--master`` names a cluster (the same code then runs on the cluster's executors)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

from ...extras import optional_import
from .plan import PROVENANCE, Plan, Progress, ScoreOptions, Scorer, is_csv_input, is_csv_output, open_dataset

# -- Spark ------------------------------------------------------------------------------------------------
_SPARK_TYPES = {"int64": "bigint", "int32": "int", "int16": "smallint", "int8": "tinyint", "double": "double",
                "float": "float", "string": "string", "large_string": "string", "bool": "boolean"}


def spark_session(options: ScoreOptions, app: str) -> tuple[Any, bool]:
    """A SparkSession: ``local[workers]`` on 127.0.0.1 with the UI off (or ``options.master``).

    Returns ``(session, created)``; only a session created here is stopped afterwards.
    """
    SparkSession = optional_import("pyspark.sql", "spark", "medinfer score --engine spark").SparkSession
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
    if plan.domain:
        fields += ["domain_score float", "in_domain boolean"]
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
        id_arrow = str(open_dataset(source, plan.csv_types).schema.field(plan.id_column).type)
        id_type = _SPARK_TYPES.get(id_arrow, "string")
        if is_csv_input(source):
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
