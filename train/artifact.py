"""Training artifacts: the fitted native model, the held-out data and the training report, in one folder.

    artifacts/<name>/model.joblib | model.keras   native model
    artifacts/<name>/data.npz                     X_test, y_test, a calibration sample of X_train, edge inputs
    artifacts/<name>/train.json                   spec, metrics, provenance, split, versions, timings
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.errors import UsageError
from medinfer.manifest import DataSource
from medinfer.schema import parse, to_json

from . import registry
from .spec import Dataset, ModelSpec, OperatingPoint, Progress, quiet

CALIBRATION_SAMPLES = 256


@dataclass
class Artifact:
    spec: ModelSpec
    folder: Path
    model: Any
    dataset: Dataset
    report: dict[str, Any]
    point: OperatingPoint


def train(name: str, out: str | Path = "artifacts", *, sample: int | None = None, seed: int = 0,
          progress: Progress = quiet, **options: Any) -> Artifact:
    """Load the spec's data, fit, choose the operating point, evaluate on the held-out split and save the artifact.

    Raises:
        UnknownNameError / UsageError: an unknown spec, or an option it does not declare (``--set``).
    """
    spec = registry.get(name).configure(**options)
    start = time.perf_counter()
    progress(f"[{name}] loading data" + (f" (sample of {sample})" if sample else ""))
    dataset = spec.load_data(sample=sample, seed=seed, progress=progress)
    progress(f"[{name}] {dataset.n_train} training / {dataset.n_test} held-out samples")
    model = spec.fit(spec.build(dataset), dataset, progress)
    point = spec.operating_point(model, dataset)
    if point.threshold is not None:
        progress(f"[{name}] operating threshold {point.threshold:.4g}: {point.rationale}")
    fit_seconds = time.perf_counter() - start
    scores = spec.scores(spec.native_outputs(model, dataset.X_test))
    metrics = spec.evaluate(scores, dataset.y_test, dataset.X_test, point.threshold)
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    model_file = spec.save_native(model, folder)
    _save_data(folder / "data.npz", dataset, seed)
    _save_example(folder, dataset)
    report = {
        "spec": name,
        "spec_version": spec.version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_file": model_file,
        "frameworks": spec.frameworks(),
        "metrics": metrics,
        "seconds": round(fit_seconds, 2),
        "sample": sample,
        "seed": seed,
        "options": spec.option_values(),
        "operating_point": {"threshold": point.threshold, "rationale": point.rationale},
        "data": {
            "sources": [to_json(s) for s in dataset.sources],
            "split": dataset.split,
            "synthetic": dataset.synthetic,
            "description": dataset.description,
            "preprocessing": dataset.preprocessing,
            "feature_names": list(dataset.feature_names) if dataset.feature_names else None,
            "facts": dataset.facts,
            "n_train": dataset.n_train,
            "n_test": dataset.n_test,
        },
    }
    (folder / "train.json").write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    return Artifact(spec, folder, model, dataset, report, point)


def load(name: str, root: str | Path = "artifacts") -> Artifact:
    """Read back what ``train`` saved (for export)."""
    spec = registry.get(name)
    folder = Path(root) / name
    report_path = folder / "train.json"
    if not report_path.is_file():
        raise UsageError(f"no trained artifact for {name!r} in {folder}: run 'medinfer train {name}' first")
    report = json.loads(report_path.read_text())
    spec.configure(**report.get("options", {}))
    model = spec.load_native(folder)
    op = report.get("operating_point") or {}
    point = OperatingPoint(op.get("threshold"), op.get("rationale", ""))
    data = report["data"]
    with np.load(folder / "data.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    dataset = Dataset(
        X_train=arrays["X_calib"], y_train=arrays["y_calib"], X_test=arrays["X_test"], y_test=arrays["y_test"],
        sources=tuple(parse(DataSource, s, doc="train.json") for s in data["sources"]),
        split=data["split"], synthetic=data["synthetic"], description=data["description"],
        preprocessing=data["preprocessing"],
        feature_names=tuple(data["feature_names"]) if data["feature_names"] else None,
        facts=data["facts"], edge=arrays.get("edge"),
    )
    return Artifact(spec, folder, model, dataset, report, point)


def _save_data(path: Path, dataset: Dataset, seed: int) -> None:
    n = len(dataset.y_train)
    pick = np.sort(np.random.default_rng(seed).choice(n, size=min(n, CALIBRATION_SAMPLES), replace=False))
    arrays = {
        "X_test": _plain(dataset.X_test), "y_test": np.asarray(dataset.y_test),
        "X_calib": _plain(dataset.X_train)[pick], "y_calib": np.asarray(dataset.y_train)[pick],
    }
    if dataset.edge is not None:
        arrays["edge"] = _plain(dataset.edge)
    tmp = path.with_suffix(".part.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def _save_example(folder: Path, dataset: Dataset, n: int = 5) -> None:
    """A few held-out inputs as a file ``medinfer predict`` reads (.npy, or .json for text)."""
    x = _plain(dataset.X_test)[:n]
    if x.dtype.kind == "U":
        (folder / "example.json").write_text(json.dumps(x.reshape(-1).tolist(), ensure_ascii=False, indent=1))
    else:
        np.save(folder / "example.npy", x)


def _plain(x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object:  # text: store as unicode, loadable without pickle
        arr = arr.astype(str)
    return arr


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
