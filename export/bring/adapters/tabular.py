"""scikit-learn estimators and gradient-boosted trees (LightGBM, XGBoost).

- ``sklearn``: a ``.skops`` file (skops.io; only types from scikit-learn, numpy, scipy and the boosters are
  trusted, anything else is refused with its name) or ``.joblib``/``.pkl`` (a pickle: it runs code when loaded;
  bring only files you made). Converted by skl2onnx (the five specs' ``sklearn`` converter).
- ``lightgbm``: a model file (``.txt``, ``Booster.save_model``) or a pickled ``LGBMClassifier``/``LGBMRegressor``.
- ``xgboost``: a model file (``.json``/``.ubj``, ``save_model``), read as ``XGBClassifier``/``XGBRegressor`` by the
  contract's task, or a pickled one. Boosters are converted by onnxmltools (the ``lightgbm``/``xgboost`` converters).

Every kind here has one input (``(N, F)`` features) and a known output layout: ``label`` + ``probabilities`` for
classifiers, ``prediction`` (N, 1) for regressors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from medinfer.errors import UsageError
from medinfer.extras import optional_import

from ....train.spec import ParityTolerance
from ..sources import Loaded, Source, register_source, suffix, versions

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "lightgbm.", "xgboost.", "collections.")
CLASSIFIER = (("label", "probabilities"), ("probabilities", "label"))
REGRESSOR = (("prediction",), ("prediction", None))
PICKLES = (".joblib", ".pkl", ".pickle", ".skops")


def layout(task: str) -> tuple[tuple[str, ...], tuple[str, str | None]]:
    return CLASSIFIER if task != "regression" else REGRESSOR


def _exists(source: str) -> Path:
    path = Path(source)
    if not path.is_file():
        raise UsageError(f"model file {source} does not exist")
    return path


def _unpickle(source: str) -> Any:
    path = _exists(source)
    if path.suffix.lower() == ".skops":
        sio = optional_import("skops.io", "boost", "reading a .skops model (medinfer bundle)")
        untrusted = sio.get_untrusted_types(file=str(path))
        foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
        if foreign:
            raise UsageError(f"{source} holds types medinfer does not trust ({', '.join(foreign)}); only "
                             f"{', '.join(p.rstrip('.') for p in TRUSTED_PREFIXES)} types are loaded from .skops")
        return sio.load(str(path), trusted=untrusted)
    import joblib

    return joblib.load(path)


def _kind_of(obj: Any) -> str:
    module = type(obj).__module__.split(".")[0]
    return module if module in ("lightgbm", "xgboost") else "sklearn"


def _check_task(loaded: Loaded, task: str) -> Loaded:
    hint = loaded.task_hint
    if hint is not None and (hint == "regression") != (task == "regression"):
        raise UsageError(f"{loaded.path} is a {hint} model (its own objective says so), but the contract declares "
                         f"task = {task!r}")
    return loaded


def _load_sklearn(source: str, task: str) -> Loaded:
    obj = _unpickle(source)
    kind = _kind_of(obj)
    hint = "classification" if hasattr(obj, "predict_proba") else "regression"
    return _check_task(Loaded(kind, obj, source, task_hint=hint), task)


def _load_lightgbm(source: str, task: str) -> Loaded:
    if suffix(source) in PICKLES:
        return _load_sklearn(source, task)
    lgb = optional_import("lightgbm", "boost", "bringing a LightGBM model (medinfer bundle)")
    # LightGBM parses the trees of a file with a 'tree_sizes' header in parallel threads, and a malformed tree there
    # aborts the whole process (std::terminate) instead of raising: without the header it parses them one by one,
    # the same model, and a bad file is an exception.
    text = _exists(source).read_text(encoding="utf-8", errors="replace")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("tree_sizes="))
    try:
        booster = lgb.Booster(model_str=text)
    except Exception as exc:  # noqa: BLE001 - a file LightGBM cannot read is the user's file
        raise UsageError(f"{source} is not a LightGBM model file ({type(exc).__name__}: {exc})") from None
    objective = str(booster.params.get("objective", ""))
    hint = "classification" if objective.startswith(("binary", "multiclass", "cross_entropy")) else "regression"
    return _check_task(Loaded("lightgbm", booster, source, task_hint=hint, info={"objective": objective}), task)


def _load_xgboost(source: str, task: str) -> Loaded:
    if suffix(source) in PICKLES:
        return _load_sklearn(source, task)
    xgb = optional_import("xgboost", "boost", "bringing an XGBoost model (medinfer bundle)")
    model = xgb.XGBRegressor() if task == "regression" else xgb.XGBClassifier()
    try:
        model.load_model(str(_exists(source)))
    except Exception as exc:  # noqa: BLE001 - a file xgboost cannot read is the user's file
        raise UsageError(f"{source} is not an XGBoost model file ({type(exc).__name__}: {exc})") from None
    objective = str(model.get_booster().attr("objective") or model.get_xgb_params().get("objective") or "")
    hint = None if not objective else ("regression" if objective.startswith("reg:") else "classification")
    return _check_task(Loaded("xgboost", model, source, task_hint=hint), task)


def _proba(loaded: Loaded, X: np.ndarray) -> np.ndarray:
    obj = loaded.obj
    if hasattr(obj, "predict_proba"):
        return np.asarray(obj.predict_proba(X), dtype=np.float32)
    p = np.asarray(obj.predict(X), dtype=np.float64)  # a LightGBM Booster: P(positive) for binary
    return np.asarray(np.column_stack([1.0 - p, p]) if p.ndim == 1 else p, dtype=np.float32)


def _run(loaded: Loaded, inputs: dict[str, np.ndarray], output_names: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    (X,) = inputs.values()
    obj = loaded.obj
    if loaded.task_hint == "regression":
        return {"prediction": np.asarray(obj.predict(X), dtype=np.float32).reshape(len(X), 1)}
    proba = _proba(loaded, X)
    if hasattr(obj, "predict_proba"):
        label = np.asarray(obj.predict(X))
    else:
        label = np.argmax(proba, axis=1)
    return {"label": label.astype(np.int64) if label.dtype.kind in "iub" else label, "probabilities": proba}


TREES = ParityTolerance(atol=1e-5, rtol=1e-4)
register_source(Source(
    kind="sklearn", family="sklearn", extra="train", matches=lambda s: suffix(s) in PICKLES, load=_load_sklearn,
    run=_run, frameworks=lambda: versions("scikit-learn", "skops"), tolerance=TREES, layout=layout,
    describe="a fitted scikit-learn estimator (.skops, .joblib, .pkl)"))
register_source(Source(
    kind="lightgbm", family="lightgbm", extra="boost", matches=lambda s: suffix(s) == ".txt", load=_load_lightgbm,
    run=_run, frameworks=lambda: versions("lightgbm", "onnxmltools"), tolerance=TREES, layout=layout,
    describe="a LightGBM model file (.txt)"))
register_source(Source(
    kind="xgboost", family="xgboost", extra="boost", matches=lambda s: suffix(s) in (".json", ".ubj"),
    load=_load_xgboost, run=_run, frameworks=lambda: versions("xgboost", "xgboost-cpu", "onnxmltools"),
    tolerance=TREES, layout=layout, describe="an XGBoost model file (.json, .ubj)"))
