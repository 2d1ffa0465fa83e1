"""Who runs in the side-by-side suite, like for like: one bundle, one batch size, the same input for all.

- ``medinfer [variant]``: timed as a user calls it, ``predict(x)`` plus reading ``.labels`` (``.scores`` for
  regression), through whatever medinfer does at that size (its large-batch session, its chunks).
- ``ort (same options)``: a bare onnxruntime session with the very options medinfer uses AT THIS BATCH SIZE (the
  large-batch session's options from ``profile.large_batch_from`` on), fetching the same outputs.
- ``ort (batch-1 profile)``: only where medinfer switches sessions at this size: the batch-1 options kept, to show
  what the switch is worth.
- ``ort (default options)``: ``onnxruntime.SessionOptions()`` untouched, the same outputs.
- the native framework's own call, single-threaded where it has a knob (scikit-learn ``n_jobs=1``, as a device
  would run it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.samples import read_pinned
from medinfer.session import large_batch_from, performance_settings, session_for_batch, session_options

log = logging.getLogger(__name__)
SAME = "ort (same options)"
BATCH1 = "ort (batch-1 profile)"
DEFAULT = "ort (default options)"


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


def tile(x: Any, batch: int) -> Any:
    """``batch`` samples made by repeating ``x`` (the held-out inputs, or the golden ones)."""
    arr = np.asarray(x)
    reps = -(-batch // len(arr))
    return np.concatenate([arr] * reps)[:batch] if reps > 1 else arr[:batch]


def profile_at(manifest: Any, batch: int) -> tuple[Any, bool]:
    """The session profile medinfer runs a batch of this size with, and whether it is the large-batch session."""
    session = session_for_batch(manifest.profile, batch)  # what load() creates, from the one rule
    return session.profile, session.large


def single_threaded(model: Any) -> tuple[Any, bool]:
    """A scikit-learn estimator (or pipeline) with every ``n_jobs`` set to 1; Keras models unchanged."""
    get, set_ = getattr(model, "get_params", None), getattr(model, "set_params", None)
    if get is None or set_ is None:
        return model, False
    keys = [k for k in get(deep=True) if k == "n_jobs" or k.endswith("__n_jobs")]
    if keys:
        set_(**{k: 1 for k in keys})
    return model, bool(keys)


def load_heldout(name: str, artifacts: Path | None) -> Heldout | None:
    """The native model and held-out split of ``name`` from a training artifact, or None (none there, no [train])."""
    if artifacts is None or not (artifacts / name / "train.json").is_file():
        return None
    try:
        from medinfer.train import artifact
    except ImportError as exc:  # the [train] extra is missing: runtime-only comparison
        log.warning("native side skipped for %s: %s", name, exc)
        return None
    art = artifact.load(name, artifacts)
    spec, model = art.spec, art.model
    X, y = art.dataset.X_test, np.asarray(art.dataset.y_test)
    native = spec.scores(spec.native_outputs(model, X))
    return Heldout(X, y, spec.task, np.asarray(native), spec, model, art.dataset.X_train)


def headline(task: str, scores: np.ndarray, y: np.ndarray) -> tuple[str, float]:
    """The one held-out number the accuracy column compares: ROC-AUC (binary), accuracy (multiclass), RMSE."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(y)
    if task == "regression":
        return "rmse", float(np.sqrt(np.mean((s.reshape(-1) - y.reshape(-1).astype(np.float64)) ** 2)))
    if task == "binary_classification":
        from sklearn.metrics import roc_auc_score

        return "roc_auc", float(roc_auc_score(y, s.reshape(-1)))
    return "accuracy", float(np.mean(np.argmax(s, axis=1) == y))


def _session(model_bytes: bytes, profile: Any | None) -> Any:
    import onnxruntime as ort

    options = session_options(profile, cpu_fallback=True) if profile is not None else ort.SessionOptions()
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


def in_process(bundle: Path, batch: int, heldout: Heldout | None) -> tuple[list[Contender], dict[str, Any]]:
    """Everything measured in this process for one bundle at one batch size, on the same input samples."""
    manifest = medinfer.load_manifest(bundle)
    base = medinfer.load(bundle)
    source = heldout.X if heldout is not None else next(iter(base.golden()[0].values()))
    x = tile(source, batch)
    feeds = base.prepare(x)[0]  # exactly what Model.predict hands to onnxruntime
    first = base.predict(x)
    fetch = list(first.outputs)  # medinfer's own fetch list: the score, evidence and domain_score outputs
    read = "scores" if first.labels is None else "labels"
    graph = manifest.variants["default"].file
    model_bytes = read_pinned(bundle, graph, manifest.files[graph])
    profile, large = profile_at(manifest, batch)
    same = _session(model_bytes, profile)
    naive = _session(model_bytes, None)
    out = [Contender(SAME, "ort", lambda: same.run(fetch, feeds), settings=performance_settings(profile)),
           Contender(DEFAULT, "ort", lambda: naive.run(fetch, feeds), settings={"session_options": "default"})]
    if large:
        one = _session(model_bytes, manifest.profile)
        out.append(Contender(BATCH1, "ort", lambda: one.run(fetch, feeds),
                             settings=performance_settings(manifest.profile)))
    for key, entry in manifest.variants.items():
        if entry.inputs is not None:
            continue  # a whole-slice graph takes other inputs: benchmarks/slice.py measures it
        model = base if key == "default" else medinfer.load(bundle, variant=key)
        out.append(Contender(f"medinfer [{key}]", "medinfer", (lambda m=model: getattr(m.predict(x), read)),
                             variant=key, settings=performance_settings(profile),
                             scores=(lambda X, m=model: _chunked_scores(m, X))))
    if heldout is not None and heldout.spec is not None:
        native, changed = single_threaded(heldout.native_model)
        for label, fn in heldout.spec.native_predictors(native).items():
            name = f"{label} (n_jobs=1)" if changed else label
            out.append(Contender(name, "native", (lambda f=fn: f(x)), settings={"n_jobs": 1} if changed else {}))
    info = {"model": manifest.name, "version": manifest.version, "batch": batch, "fetch": fetch,
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
