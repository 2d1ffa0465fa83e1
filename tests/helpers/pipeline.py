"""Train-and-export helpers for tests that fit a spec on an in-memory dataset (no data fetch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .fields import SYNTHETIC

__all__ = ["SYNTHETIC", "fit_and_export", "fit_artifact"]


def fit_artifact(spec: Any, ds: Any, folder: Path, model: Any = None) -> Any:
    """Fit (``model``, or ``spec.build``), choose the operating point and evaluate exactly as ``medinfer train``
    does, on an in-memory dataset."""
    from medinfer.train.artifact import Artifact

    model = spec.fit(spec.build(ds) if model is None else model, ds)
    point = spec.operating_point(model, ds)
    scores = spec.scores(spec.native_outputs(model, ds.X_test))
    metrics = spec.evaluate(scores, ds.y_test, ds.X_test, point.threshold)
    report = {"metrics": metrics, "frameworks": spec.frameworks()}
    return Artifact(spec, Path(folder), model, ds, report, point)


def fit_and_export(spec: Any, ds: Any, folder: Path, model: Any = None) -> tuple[Any, Path]:
    """``fit_artifact`` then the real export (converter, parity gate, bundle); returns (artifact, bundle path)."""
    from medinfer.export.bundle import export

    art = fit_artifact(spec, ds, folder, model)
    return art, export(art, Path(folder) / "bundles")
