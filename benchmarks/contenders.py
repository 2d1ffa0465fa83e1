"""Who runs in the side-by-side suite, like for like: one bundle, one batch size, the same input and the same
explicit intra-op thread count (``threads``, a run option) for all. Each contender carries a ``label`` saying what
really runs, its ``threads``, the ``inputs`` it is fed and the ``engine`` it runs (the session or model), so a test
can check all four.

- ``medinfer [variant]``: timed as a user calls it, ``predict(x)`` plus reading ``.labels`` (``.scores`` for
  regression), through whatever medinfer does at that size (its large-batch session, its chunks); loaded with
  ``session_profile={"intra_op_num_threads": threads}`` (both of its sessions).
- ``ort (same options)``: a bare onnxruntime session with the very options medinfer uses AT THIS BATCH SIZE (the
  large-batch session's options from ``profile.large_batch_from`` on, the same threads), fetching the same outputs.
- ``ort (batch-1 profile)``: only where medinfer switches sessions at this size: the batch-1 options kept, to show
  what the switch is worth.
- ``ort (default options)``: ``onnxruntime.SessionOptions()`` with only the thread count set, the same outputs.
- the native framework's own call: scikit-learn with ``n_jobs=1`` (its default: one thread, as a device would run
  it); Keras with TensorFlow's intra-op threads set to ``threads`` when TensorFlow was not started yet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.samples import read_pinned
from medinfer.session import (
    large_batch_from,
    performance_settings,
    requested_profiles,
    session_for_batch,
    session_options,
)

log = logging.getLogger(__name__)
SAME = "ort (same options)"
BATCH1 = "ort (batch-1 profile)"
DEFAULT = "ort (default options)"


def default_threads() -> int:
    """The run's intra-op thread count when none is given: the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class Contender:
    """One thing to time: ``fn`` runs one query in this process (or ``block`` runs a timed block elsewhere)."""

    name: str
    kind: str  # medinfer | ort | native | peer
    fn: Callable[[], Any] | None = None
    block: Callable[[float], np.ndarray] | None = None
    variant: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    scores: Callable[[Any], np.ndarray] | None = None  # held-out inputs -> decision scores (accuracy column)
    label: str = ""  # what really runs: engine, version, call
    threads: int | None = None  # intra-op threads it runs with (None: not settable)
    inputs: Any = None  # what it is fed per query (the same samples for every contender)
    engine: Any = None  # the session or model timed (for tests), or the peer's load request


@dataclass
class Heldout:
    """The held-out split the native model was evaluated on (``artifacts/<name>/data.npz``) and its native scores."""

    X: Any
    y: np.ndarray
    task: str
    native_scores: np.ndarray | None
    spec: Any = None
    native_model: Any = None
    calibration: Any = None
    native_threads: int | None = None  # TensorFlow's intra-op threads (Keras); scikit-learn runs n_jobs=1


def tile(x: Any, batch: int) -> Any:
    """``batch`` samples made by repeating ``x`` (the held-out inputs, or the golden ones)."""
    arr = np.asarray(x)
    reps = -(-batch // len(arr))
    return np.concatenate([arr] * reps)[:batch] if reps > 1 else arr[:batch]


def overrides(threads: int | None) -> dict[str, Any] | None:
    """The ``session_profile`` overrides that give a session ``threads`` intra-op threads (None: the profile's)."""
    return {"intra_op_num_threads": int(threads)} if threads else None


def profile_at(manifest: Any, batch: int, threads: int | None = None) -> tuple[Any, bool]:
    """The session profile medinfer runs a batch of this size with (loaded with ``threads``), and whether it is
    the large-batch session."""
    small, large = requested_profiles(manifest.profile, overrides(threads))  # the sessions load() creates
    chosen = session_for_batch(manifest.profile, batch)  # and the one rule of which of them runs this batch
    return (large if chosen.large and large is not None else small), chosen.large


def single_threaded(model: Any) -> tuple[Any, bool]:
    """A scikit-learn estimator (or pipeline) with every ``n_jobs`` set to 1; Keras models unchanged."""
    get, set_ = getattr(model, "get_params", None), getattr(model, "set_params", None)
    if get is None or set_ is None:
        return model, False
    keys = [k for k in get(deep=True) if k == "n_jobs" or k.endswith("__n_jobs")]
    if keys:
        set_(**{k: 1 for k in keys})
    return model, bool(keys)


def tensorflow_threads(threads: int) -> int:
    """Set TensorFlow's intra-op threads (one inter-op thread) if it has not started yet; the count it runs with."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as exc:  # TensorFlow already started in this process: recorded as it is
        log.warning("TensorFlow's threads stay as they are: %s", exc)
    return int(tf.config.threading.get_intra_op_parallelism_threads())


def load_heldout(name: str, artifacts: Path | None, threads: int | None = None) -> Heldout | None:
    """The native model and held-out split of ``name`` from a training artifact, or None (none there, no [train])."""
    if artifacts is None or not (artifacts / name / "train.json").is_file():
        return None
    try:
        from medinfer.train import artifact, registry
    except ImportError as exc:  # the [train] extra is missing: runtime-only comparison
        log.warning("native side skipped for %s: %s", name, exc)
        return None
    tf_threads = tensorflow_threads(threads) if threads and registry.get(name).family == "keras" else None
    art = artifact.load(name, artifacts)
    spec, model = art.spec, art.model
    X, y = art.dataset.X_test, np.asarray(art.dataset.y_test)
    native = spec.scores(spec.native_outputs(model, X))
    return Heldout(X, y, spec.task, np.asarray(native), spec, model, art.dataset.X_train, tf_threads)


def headline(task: str, scores: np.ndarray, y: np.ndarray) -> tuple[str, float]:
    """The one held-out number the accuracy column compares: ROC-AUC (binary), accuracy (multiclass), RMSE."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(y)
    if task == "regression":
        return "rmse", float(np.sqrt(np.mean((s.reshape(-1) - y.reshape(-1).astype(np.float64)) ** 2)))
    if task == "binary_classification":
        from sklearn.metrics import roc_auc_score

        return "roc_auc", float(roc_auc_score(y, s.reshape(-1)))
    return "accuracy", float(np.mean(np.argmax(s, axis=1) == y))


def _session(model_bytes: bytes, profile: Any | None, threads: int | None = None) -> Any:
    """A bare session: with ``profile``'s options (medinfer's rule), or onnxruntime's defaults plus ``threads``."""
    import onnxruntime as ort

    if profile is not None:
        options = session_options(profile, cpu_fallback=True)
    else:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


def _ort() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__} InferenceSession"


def _native_label(spec: Any, label: str, changed: bool) -> str:
    """``scikit-learn 1.7.2: sklearn predict_proba, n_jobs=1`` / ``Keras 3.11 (TensorFlow 2.20): keras ...``."""
    import importlib

    module = {"sklearn": "sklearn", "keras": "keras"}.get(getattr(spec, "family", ""), "")
    version = getattr(importlib.import_module(module), "__version__", "?") if module else "?"
    name = {"sklearn": "scikit-learn", "keras": "Keras"}.get(module, module or "native")
    return f"{name} {version}: {label}" + (", n_jobs=1" if changed else "")


def in_process(bundle: Path, batch: int, heldout: Heldout | None,
               threads: int | None = None) -> tuple[list[Contender], dict[str, Any]]:
    """Everything measured in this process for one bundle at one batch size, on the same input samples and with
    ``threads`` intra-op threads each (default: :func:`default_threads`)."""
    threads = threads or default_threads()
    manifest = medinfer.load_manifest(bundle)
    base = medinfer.load(bundle, session_profile=overrides(threads))
    source = heldout.X if heldout is not None else next(iter(base.golden()[0].values()))
    x = tile(source, batch)
    feeds = base.prepare(x)[0]  # exactly what Model.predict hands to onnxruntime
    first = base.predict(x)
    fetch = list(first.outputs)  # medinfer's own fetch list: the score, evidence and domain_score outputs
    read = "scores" if first.labels is None else "labels"
    graph = manifest.variants["default"].file
    model_bytes = read_pinned(bundle, graph, manifest.files[graph])
    profile, large = profile_at(manifest, batch, threads)
    same = _session(model_bytes, profile)
    naive = _session(model_bytes, None, threads)
    out = [Contender(SAME, "ort", lambda: same.run(fetch, feeds), settings=performance_settings(profile),
                     threads=threads, label=f"{_ort()}, medinfer's session options at batch {batch}", inputs=feeds,
                     engine=same),
           Contender(DEFAULT, "ort", lambda: naive.run(fetch, feeds), threads=threads, inputs=feeds, engine=naive,
                     settings={"session_options": "default", "intra_op_num_threads": threads},
                     label=f"{_ort()}, default SessionOptions + intra-op threads")]
    if large:
        one_profile = requested_profiles(manifest.profile, overrides(threads))[0]
        one = _session(model_bytes, one_profile)
        out.append(Contender(BATCH1, "ort", lambda: one.run(fetch, feeds), settings=performance_settings(one_profile),
                             threads=threads, label=f"{_ort()}, medinfer's batch-1 session options", inputs=feeds,
                             engine=one))
    import onnxruntime as ort

    for key, entry in manifest.variants.items():
        if entry.inputs is not None:
            continue  # a whole-slice graph takes other inputs: benchmarks/slice.py measures it
        model = base if key == "default" else medinfer.load(bundle, variant=key, session_profile=overrides(threads))
        out.append(Contender(f"medinfer [{key}]", "medinfer", (lambda m=model: getattr(m.predict(x), read)),
                             variant=key, settings=performance_settings(profile), threads=threads, inputs=x,
                             engine=model,
                             label=f"medinfer {medinfer.__version__} Model.predict + .{read} ({key} graph, "
                                   f"onnxruntime {ort.__version__})",
                             scores=(lambda X, m=model: _chunked_scores(m, X))))
    if heldout is not None and heldout.spec is not None:
        native, changed = single_threaded(heldout.native_model)
        for label, fn in heldout.spec.native_predictors(native).items():
            name = f"{label} (n_jobs=1)" if changed else label
            out.append(Contender(name, "native", (lambda f=fn: f(x)), settings={"n_jobs": 1} if changed else {},
                                 threads=1 if changed else heldout.native_threads, inputs=x, engine=native,
                                 label=_native_label(heldout.spec, label, changed)))
    info = {"model": manifest.name, "version": manifest.version, "batch": batch, "fetch": fetch, "threads": threads,
            "medinfer_reads": read, "input": "held-out split" if heldout is not None else "golden inputs",
            "large_batch_session": large, "chunk": manifest.profile.chunk,
            "profile": performance_settings(manifest.profile),
            "large_batch": _large_session(manifest.profile),
            "variants": {k: v.precision for k, v in manifest.variants.items()}}
    return out, info


def _large_session(profile: Any) -> dict[str, Any]:
    """Where the large-batch session starts and the settings it changes (``{"from": 0}``: one session)."""
    start = large_batch_from(profile)
    if start is None:
        return {"from": 0}
    small, large = performance_settings(profile), performance_settings(session_for_batch(profile, start).profile)
    return {"from": start, **{k: v for k, v in large.items() if small.get(k) != v}}


def _chunked_scores(model: Any, X: Any, size: int = 256) -> np.ndarray:
    arr = np.asarray(X)
    return np.concatenate([np.asarray(model.predict(arr[i:i + size]).scores) for i in range(0, len(arr), size)])
