"""``medinfer score``: what every engine shares — options, the column plan, the Scorer, input reading.

    medinfer score bundles/drug_activity_rf archive.parquet --out scored.parquet --engine spark --workers 4

Each engine only moves data: every row is scored by the same :class:`Scorer`, a picklable recipe (bundle path,
column plan, options) that builds its ``Model`` where it runs — on the Spark executor or Dask worker, never on
the driver and never pickled (onnxruntime sessions do not pickle) — once per worker process, with
``intra_op_num_threads`` per worker from ``--threads-per-worker`` (default: the bundle's measured profile, which
keeps scores bit-identical to ``Model.predict``). Rows go through ``Model.predict`` (the library's validation) in
batches.

Input: rows with a row-id column (``--id-column``, default ``id``) and the features: for feature-named models the
manifest's names (other columns are ignored); for unnamed tabular inputs every other column, in file order; for
text models the ``text`` column; for inputs of higher rank one list column named like the input, holding each
sample flattened. CSV cells are parsed straight into the model's dtype; Parquet keeps its types, so the runtime's
safe-casting rule applies (``--cast same_kind`` to allow float64 -> float32).
Output (Parquet, or CSV when ``--out`` ends in .csv): the id, ``label`` (classification), ``score`` (positive-class
score, predicted value, or the chosen class's probability), ``probabilities`` (multiclass), ``status``/``reason``
(``no_result`` rows with ``--on-error no_result``), and provenance columns (model, version, sha256s, variant,
provider).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...decision import in_domain
from ...errors import InputError, MedinferError
from ...manifest import Manifest
from ...model import Model

log = logging.getLogger(__name__)

ENGINES = ("local", "dask", "spark")
PROVENANCE = ("model", "model_version", "model_sha256", "manifest_sha256", "variant", "provider")
Progress = Callable[[int, int, str], None]  # (done, total, unit)


@dataclass(frozen=True)
class ScoreOptions:
    """How to score. ``workers`` × ``threads_per_worker`` should not exceed the cores.

    ``threads_per_worker=None`` keeps the bundle's measured profile, unless the workers would then run more threads
    than the machine has cores: then each gets its share (:func:`medinfer.fleet.score.worker_threads`). The thread
    count can change the order in which onnxruntime sums (tree ensembles, reductions), so another count may move
    scores by an ulp; the profile's count gives scores bit-identical to ``Model.predict``.
    """

    engine: str = "local"
    id_column: str = "id"
    batch_rows: int = 65536
    workers: int = field(default_factory=lambda: max(1, len(os.sched_getaffinity(0))))
    threads_per_worker: int | None = None
    on_error: str = "fail"
    cast: str = "safe"
    variant: str | None = None
    master: str | None = None  # spark: a cluster URL instead of local[workers]
    overwrite: bool = False


@dataclass(frozen=True)
class Plan:
    """Which input columns feed the model, and the output columns (decided once, on the driver)."""

    id_column: str
    features: tuple[str, ...]
    kind: str  # "table" (numeric columns) | "text" | "list" (one column of flattened samples)
    sample_shape: tuple[int, ...]  # per-sample shape for "list" (-1: inferred)
    dtype: str
    classification: bool
    multiclass: bool
    csv_types: dict[str, str]
    domain: bool = False  # the bundle has a domain guard: domain_score and in_domain columns


def plan_columns(manifest: Manifest, columns: list[str], id_column: str) -> Plan:
    """Match the input's columns to the model's input.

    Raises:
        InputError: no id column, missing feature columns, or a multi-input model.
    """
    if id_column not in columns:
        raise InputError(f"the input has no row-id column '{id_column}' (columns: {_few(columns)}); "
                         "name it with --id-column")
    if len(manifest.inputs) != 1:
        raise InputError(f"{manifest.name} has {len(manifest.inputs)} inputs; batch scoring takes one-input models")
    spec = manifest.inputs[0]
    rest = [c for c in columns if c != id_column]
    features: tuple[str, ...]
    sample: tuple[int, ...]
    if spec.dtype == "string":
        col = "text" if "text" in rest else (rest[0] if len(rest) == 1 else None)
        if col is None:
            raise InputError(f"{manifest.name} takes text: give the input a 'text' column (columns: {_few(rest)})")
        kind, features, sample = "text", (col,), ()
    elif len(spec.shape) == 2 and spec.names is not None:
        missing = [n for n in spec.names if n not in rest]
        if missing:
            raise InputError(f"the input lacks {len(missing)} of {manifest.name}'s {len(spec.names)} feature "
                             f"columns ({_few(missing)}); the manifest lists them (medinfer info BUNDLE --json)")
        kind, features, sample = "table", tuple(spec.names), ()
    elif len(spec.shape) == 2 and spec.name not in rest:
        if len(rest) != spec.shape[1]:
            raise InputError(f"X has {len(rest)} feature columns, but {manifest.name} is expecting {spec.shape[1]} "
                             f"(every column except '{id_column}' is a feature, in file order)")
        kind, features, sample = "table", tuple(rest), ()
    else:
        if spec.name not in rest:
            raise InputError(f"{manifest.name}'s input '{spec.name}' has shape {list(spec.shape)}: give a list "
                             f"column '{spec.name}' holding each sample flattened")
        kind, features = "list", (spec.name,)
        sample = tuple(d if isinstance(d, int) else -1 for d in spec.shape[1:])
    csv_types: dict[str, str] = {c: str(spec.dtype) for c in features} if kind == "table" else {}
    return Plan(id_column, features, kind, sample, spec.dtype, manifest.task != "regression",
                manifest.task == "multiclass_classification", csv_types, manifest.domain is not None)


def _few(names: list[str] | tuple[str, ...], n: int = 5) -> str:
    return ", ".join(map(repr, names[:n])) + (f", … {len(names) - n} more" if len(names) > n else "")


_MODELS: dict[tuple[Any, ...], Any] = {}
_MODELS_LOCK = threading.Lock()


class Scorer:
    """Scores pandas frames; picklable (it carries the bundle path, not a session).

    Args:
        bundle: bundle folder (readable where the scorer runs).
        plan: from :func:`plan_columns`.
        options: threads per worker, casting, variant, error policy.
        text_output: serialize list columns as JSON text (for CSV output).
    """

    def __init__(self, bundle: str | Path, plan: Plan, options: ScoreOptions, text_output: bool = False) -> None:
        self.bundle = str(bundle)
        self.plan = plan
        self.threads = options.threads_per_worker
        self.cast = options.cast
        self.variant = options.variant
        self.on_error = options.on_error
        self.text_output = text_output

    def __dask_tokenize__(self) -> Any:
        return ("medinfer-scorer", self.bundle, self.plan, self.threads, self.cast, self.variant, self.on_error,
                self.text_output)

    def model(self) -> Model:
        """This process's model: built (verified, self-tested) at the first call, then reused."""
        key = (self.bundle, self.variant, self.cast, self.threads, os.getpid())
        model = _MODELS.get(key)
        if model is None:
            with _MODELS_LOCK:
                model = _MODELS.get(key)
                if model is None:
                    from ...loader import load

                    profile = None if self.threads is None else {"intra_op_num_threads": self.threads,
                                                                      "inter_op_num_threads": 1}
                    model = load(self.bundle, variant=self.variant, cast=self.cast, session_profile=profile)
                    _MODELS[key] = model
                    log.info("pid %d built %s (intra-op threads: %s)", os.getpid(), model.name,
                             self.threads or f"profile's {model.manifest.profile.intra_op_num_threads}")
        return model

    def features(self, frame: Any) -> Any:
        """The model input for a frame's rows."""
        plan = self.plan
        if plan.kind == "text":
            return frame[plan.features[0]].to_numpy(dtype=object)
        if plan.kind == "table":
            return frame[list(plan.features)].to_numpy()
        col = frame[plan.features[0]].to_numpy(dtype=object)
        if len(col) == 0:
            return np.zeros((0, *[max(d, 1) for d in plan.sample_shape]), dtype=plan.dtype)
        try:
            flat = np.stack([np.asarray(v) for v in col])
        except ValueError:
            raise InputError(f"rows of list column '{plan.features[0]}' differ in length within a batch; "
                             "give every sample the same shape") from None
        return flat.reshape(len(col), *plan.sample_shape)

    def __call__(self, frame: Any) -> Any:
        """Score one pandas frame; returns the output frame (same row order)."""
        import pandas as pd

        model = self.model()
        ids = frame[self.plan.id_column].to_numpy()
        x = self.features(frame)
        n = len(ids)
        ok = np.ones(n, dtype=bool)
        reasons: list[str | None] = [None] * n
        probs: Any = None
        labels: Any
        scores: Any
        domain = np.full(n, np.nan, dtype=np.float32)
        if n == 0:
            labels, scores = np.zeros(0, dtype=object), np.zeros((0,), dtype=np.float32)
            probs = np.zeros((0, len(model.manifest.labels or ())), dtype=np.float32)
        else:
            try:
                pred = model.predict(x)
                labels, scores = pred.labels, np.asarray(pred.scores)
                if pred.domain_scores is not None:
                    domain = pred.domain_scores
            except MedinferError:
                labels, scores, ok, reasons, domain = self._per_item(model, x, ids)
            if self.plan.multiclass:
                probs, scores = scores, scores.max(axis=1)
        out = {self.plan.id_column: ids}
        if self.plan.classification:
            named = np.asarray(labels, dtype=object).copy()
            named[~ok] = None
            out["label"] = named
        out["score"] = scores if scores.ndim == 1 else list(scores)
        if self.plan.multiclass:
            rows = list(probs) if probs is not None else []
            out["probabilities"] = [json.dumps(r.tolist()) for r in rows] if self.text_output else rows
        if self.plan.domain:
            out["domain_score"] = domain
            threshold = model.manifest.domain.threshold if model.manifest.domain is not None else np.inf
            inside = np.asarray(in_domain(domain, threshold), dtype=object)  # the core's rule
            inside[~ok | np.isnan(domain)] = None
            out["in_domain"] = inside
        out["status"] = np.where(ok, "ok", "no_result").astype(object)
        out["reason"] = np.asarray(reasons, dtype=object)
        meta = (model.name, model.version, model.model_sha256, model.manifest_sha256, model.variant,
                model.providers[0])
        result = pd.DataFrame(out)
        for name, value in zip(PROVENANCE, meta):
            result[name] = value
        return result

    def _per_item(self, model: Model, x: Any, ids: Any) -> tuple[Any, Any, Any, list[str | None], Any]:
        """Score each row as its own item (after the batch was refused: ``Model.predict(x, on_error="item")``), to
        name or skip the bad rows."""
        got = model.predict(x, on_error="item")
        n = len(ids)
        if self.on_error == "fail" and got.failures:
            first = min(got.failures)
            row_id = ids[first].item() if hasattr(ids[first], "item") else ids[first]
            raise InputError(f"row {self.plan.id_column}={row_id!r}: {got.error(first)} "
                             "(--on-error no_result scores the other rows and marks this one)")
        ok = got.ok
        reasons: list[str | None] = [None] * n
        for i, refusal in got.failures.items():
            reasons[i] = f"{refusal.reason}: {got.error(i) or refusal.message}"
        labels = got.labels if got.labels is not None else np.empty(n, dtype=object)
        scores = np.asarray(got.scores, dtype=np.float32)
        domain = got.domain_scores
        return (labels, scores, ok, reasons,
                np.full(n, np.nan, np.float32) if domain is None else np.asarray(domain, np.float32))


def arrow_schema(plan: Plan, id_type: Any, text_output: bool) -> Any:
    """The output's Arrow schema (fixed, so that a batch whose ``reason`` is all null writes like the others)."""
    import pyarrow as pa

    fields = [pa.field(plan.id_column, id_type)]
    if plan.classification:
        fields.append(pa.field("label", pa.string()))
    fields.append(pa.field("score", pa.float32()))
    if plan.multiclass:
        fields.append(pa.field("probabilities", pa.string() if text_output else pa.list_(pa.float32())))
    if plan.domain:
        fields += [pa.field("domain_score", pa.float32()), pa.field("in_domain", pa.bool_())]
    fields += [pa.field("status", pa.string()), pa.field("reason", pa.string())]
    fields += [pa.field(name, pa.string()) for name in PROVENANCE]
    return pa.schema(fields)


# -- reading inputs ----------------------------------------------------------------------------------------
def open_dataset(path: str | Path, plan_types: dict[str, str] | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                  and not p.name.startswith((".", "_")))
    suffixes = {p.suffix.lower() for p in files}
    if suffixes <= {".csv", ".tsv"} and suffixes:
        types = {k: pa.from_numpy_dtype(np.dtype(v)) for k, v in (plan_types or {}).items()}
        delimiter = "\t" if suffixes == {".tsv"} else ","
        fmt = ds.CsvFileFormat(parse_options=pacsv.ParseOptions(delimiter=delimiter),
                               convert_options=pacsv.ConvertOptions(column_types=types))
        return ds.dataset([str(p) for p in files], format=fmt)
    if suffixes <= {".parquet", ".pq"} and suffixes:
        return ds.dataset([str(p) for p in files], format="parquet")
    raise InputError(f"{path}: use Parquet (.parquet) or CSV (.csv/.tsv) files, found {sorted(suffixes) or 'none'}")


def input_columns(path: str | Path) -> list[str]:
    """Column names of a Parquet/CSV input (file or folder of parts)."""
    return list(open_dataset(path).schema.names)


def is_csv_output(out: str | Path) -> bool:
    return str(out).lower().endswith((".csv", ".tsv"))


def is_csv_input(source: str | Path) -> bool:
    path = Path(source)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return bool(files) and all(p.suffix.lower() in (".csv", ".tsv") for p in files
                               if not p.name.startswith((".", "_")))
