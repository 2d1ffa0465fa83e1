"""``medinfer score``: batch scoring of a Parquet/CSV archive with Spark, Dask or in-process.

    medinfer score bundles/drug_activity_rf archive.parquet --out scored.parquet --engine spark --workers 4

The engines (:mod:`.local`, :mod:`.dask`, :mod:`.spark`) only move data; every row is scored by the same
:class:`~medinfer.fleet.score.plan.Scorer` (see :mod:`.plan` for the input and output columns).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ...errors import UnknownNameError, UsageError
from ...extras import optional_import
from .plan import ENGINES, Progress, ScoreOptions, input_columns, plan_columns

__all__ = ["ENGINES", "ScoreOptions", "score"]


def score(bundle: str | Path, source: str | Path, out: str | Path, options: ScoreOptions,
          progress: Progress | None = None) -> dict[str, Any]:
    """Score ``source`` with the chosen engine into ``out``; returns a summary (rows, seconds, rows/s).

    Raises:
        MissingExtraError: the engine's extra is not installed.
        InputError: the input's columns do not fit the model (or a row fails with ``on_error="fail"``).
        IntegrityError / SelfTestError: the bundle does not verify (checked on the driver first).
    """
    if options.engine not in ENGINES:
        raise UnknownNameError("engine", options.engine, ENGINES)
    if options.on_error not in ("fail", "no_result"):
        raise UnknownNameError("on_error policy", options.on_error, ("fail", "no_result"))
    feature = f"medinfer score --engine {options.engine}"  # every engine reads and writes through these two
    optional_import("pandas", "score", feature)
    optional_import("pyarrow", "score", feature)
    from ...loader import load

    out = Path(out)
    if out.exists() and not options.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    model = load(bundle, variant=options.variant, cast=options.cast)  # fail fast on the driver
    options = dataclasses.replace(options, threads_per_worker=worker_threads(
        options, model.manifest.profile.intra_op_num_threads, len(os.sched_getaffinity(0))))
    plan = plan_columns(model.manifest, input_columns(source), options.id_column)
    # Written under a temporary name beside OUT and renamed into place only when every row was scored: a failed
    # run leaves nothing behind (and an older OUT untouched).
    partial = out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")  # same suffix: same format
    _remove(partial)
    start = time.perf_counter()
    try:
        if options.engine == "local":
            from .local import score_local

            rows = score_local(bundle, source, partial, plan, options, progress)
        elif options.engine == "dask":
            from .dask import score_dask

            rows = score_dask(bundle, source, partial, plan, options, progress)
        else:
            from .spark import score_spark

            rows = score_spark(bundle, source, partial, plan, options, progress)
        if out.exists():
            _remove(out)
        partial.rename(out)
    finally:
        _remove(partial)
    seconds = time.perf_counter() - start
    workers = 1 if options.engine == "local" else options.workers
    threads = options.threads_per_worker if options.threads_per_worker is not None else \
        model.manifest.profile.intra_op_num_threads
    return {"engine": options.engine, "model": model.name, "version": model.version, "rows": rows,
            "seconds": seconds, "rows_per_s": rows / seconds if seconds > 0 else 0.0, "out": str(out),
            "workers": workers, "threads_per_worker": threads}


def worker_threads(options: ScoreOptions, profile_threads: int, cores: int) -> int | None:
    """The intra-op threads of each worker: the ones asked for; else the bundle's profile (None: scores
    bit-identical to ``Model.predict``) unless several workers on this machine would then run more threads than it
    has cores (a profile of 0 is onnxruntime's default, one per core) — then the cores shared out, at least one each.
    A Spark cluster (``master``) sizes its own executors."""
    if options.threads_per_worker is not None or options.engine == "local" or options.master is not None:
        return options.threads_per_worker
    workers = max(1, options.workers)
    if (profile_threads or cores) * workers <= cores:
        return None
    return max(1, cores // workers)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
