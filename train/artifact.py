"""Training artifacts: the fitted native model, the held-out data and the training report, in one folder.

    artifacts/<name>/model.joblib | model.keras   native model
    artifacts/<name>/data.npz                     X_test, y_test, a calibration sample of X_train, edge inputs
    artifacts/<name>/train.json                   spec, metrics, provenance, split, versions, timings
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.errors import UsageError
from medinfer.manifest import DataSource
from medinfer.schema import parse, to_json
from medinfer.timestamps import build_time

from . import registry
from .domain import DomainGuard, Part, evaluate
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
    domain: DomainGuard | None = None
    domain_arrays: dict[str, np.ndarray] | None = None


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
    fitted = spec.fit(spec.build(dataset), dataset, progress)
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    model_file = spec.save_native(fitted, folder)
    # Everything below (threshold, metrics, domain guard) and the export that follows use the model as saved, not
    # the object the fit left in memory: a fitted array can be a strided view (TruncatedSVD's components_) or
    # Fortran-ordered, which the saved copy is not, and BLAS sums the two layouts in another order, so an export
    # right after training and one from the saved artifact would record other float32 parity figures (seen on an
    # Intel Xeon: 8.94e-08 vs 5.96e-08). One object for both makes the two exports the same bytes.
    model = spec.load_native(folder)
    point = spec.operating_point(model, dataset)
    if point.threshold is not None:
        progress(f"[{name}] operating threshold {point.threshold:.4g}: {point.rationale}")
    fit_seconds = time.perf_counter() - start
    scores = spec.scores(spec.native_outputs(model, dataset.X_test))
    metrics = spec.evaluate(scores, dataset.y_test, dataset.X_test, point.threshold)
    guard, domain_report, arrays = fit_domain(spec, model, dataset, point, scores, seed, progress)
    _save_data(folder / "data.npz", dataset, seed)
    _save_example(folder, dataset)
    report = {
        "spec": name,
        "spec_version": spec.version,
        "created": build_time(),  # SOURCE_DATE_EPOCH when set
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
    if guard is not None:
        report["domain"] = {**domain_report, "parts": _save_domain(folder / "domain.npz", guard, arrays)}
    (folder / "train.json").write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    return Artifact(spec, folder, model, dataset, report, point, guard, arrays)


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
    guard, domain_arrays = None, None
    if report.get("domain"):
        guard, domain_arrays = _load_domain(folder / "domain.npz", report["domain"], spec.domain_features(model))
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
    return Artifact(spec, folder, model, dataset, report, point, guard, domain_arrays)


def fit_domain(spec: ModelSpec, model: Any, dataset: Dataset, point: OperatingPoint, test_scores: np.ndarray,
               seed: int = 0, progress: Progress = quiet) -> tuple[DomainGuard | None, dict[str, Any],
                                                                  dict[str, np.ndarray]]:
    """Fit the spec's domain guard on the training split, calibrate its scales and threshold on in-domain data it
    never saw, and evaluate it on held-out in-domain data that chose nothing and on the spec's shifted sets.

    Calibration data: the validation part, else a seeded half of the held-out split (the other half evaluates).
    Returns (guard or None, the manifest's domain fields, arrays for the card's figure).

    Raises:
        ValueError: a plausibility rule of the spec is broken by training data (its limit is wrong).
    """
    parts = spec.domain_parts(model, dataset)
    if not parts:
        return None, {}, {}
    progress(f"[{spec.name}] fitting the applicability-domain guard ({len(parts)} parts) on the training split")
    guard = DomainGuard(parts, spec.domain_method, spec.domain_features(model))
    guard.check_rules(dataset.X_train)
    n = dataset.n_test
    # The parts were fitted on the training split; their scales (each part's 99th percentile) come from in-domain
    # data the model never saw, like the threshold: training data look closer than new in-domain data do.
    if dataset.validation is not None:
        X_cal, X_eval, idx = dataset.X_val, dataset.X_test, np.arange(n)
        calibration = "the validation part (never trained on)"
    else:
        cal_idx, idx, calibration = _calibration_half(dataset, seed)
        X_cal, X_eval = _take(dataset.X_test, cal_idx), _take(dataset.X_test, idx)
    cal = guard.calibrate(X_cal).score(X_cal)
    y = np.asarray(dataset.y_test)[idx]
    s = np.asarray(test_scores)[idx]
    errors = np.abs(s - y) if spec.task == "regression" else (spec.decisions(s, point.threshold) != y)
    progress(f"[{spec.name}] evaluating the guard on shifted data")
    shifts = spec.domain_shifts(model, dataset, guard)
    report, arrays = evaluate(guard, shifts, cal, X_eval, np.asarray(errors, dtype=np.float64),
                              spec.domain_coverage, calibration)
    refused = ", ".join(f"{k} {v['refused']:.0%}" for k, v in report["evaluation"]["shifts"].items())
    progress(f"[{spec.name}] domain threshold {report['threshold']:.4g}: accepts "
             f"{report['evaluation']['acceptance']:.1%} of held-out in-domain data; refuses {refused}")
    return guard, report, arrays


def _calibration_half(dataset: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Held-out indices to calibrate on and to evaluate on: half of the groups (e.g. patients) when the held-out
    part has two or more, else a seeded half of the samples."""
    n, rng = dataset.n_test, np.random.default_rng(seed + 7)
    groups = dataset.groups.get("test")
    if groups is not None and len(groups) == n and len(np.unique(groups)) >= 2:
        names = np.unique(groups)
        picked = rng.permutation(names)[: len(names) // 2]
        cal = np.isin(groups, picked)
        what = str(dataset.split.get("group", "groups"))
        return (np.flatnonzero(cal), np.flatnonzero(~cal),
                f"the held-out samples of {len(picked)} of the {len(names)} held-out {what} (the other {what} "
                "measure acceptance and the curves)")
    order = rng.permutation(n)
    return (np.sort(order[: n // 2]), np.sort(order[n // 2:]),
            "a seeded half of the held-out split (the other half measures acceptance and the curves)")


def _take(X: Any, idx: np.ndarray) -> Any:
    """The samples at ``idx`` of one input's array, or of each input of a {name: array} mapping (several inputs)."""
    if isinstance(X, dict):
        return {k: np.asarray(v)[idx] for k, v in X.items()}
    return np.asarray(X)[idx]


def _save_domain(path: Path, guard: DomainGuard, arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    blobs: dict[str, np.ndarray] = {f"eval.{k}": v for k, v in arrays.items()}
    meta = []
    for i, part in enumerate(guard.parts):
        meta.append({"kind": part.kind, "source": part.source, "scale": part.scale, "label": part.label,
                     "params": sorted(part.params), "rule": part.rule, "more": list(part.more),
                     "min_scale": part.min_scale})
        blobs.update({f"part{i}.{k}": v for k, v in part.params.items()})
    np.savez(path, **blobs)
    return meta


def _load_domain(path: Path, report: dict[str, Any], features: Any) -> tuple[DomainGuard, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as npz:
        blobs = {k: npz[k] for k in npz.files}
    parts = [Part(m["kind"], m["source"], {k: blobs[f"part{i}.{k}"] for k in m["params"]}, float(m["scale"]),
                  m["label"], float(m.get("min_scale", 0.0)), bool(m.get("rule", False)), tuple(m.get("more", ())))
             for i, m in enumerate(report["parts"])]
    arrays = {k[5:]: v for k, v in blobs.items() if k.startswith("eval.")}
    return DomainGuard(parts, report.get("method", ""), features), arrays


def calibration_indices(n: int, seed: int = 0) -> np.ndarray:
    """The training rows an artifact keeps for int8 calibration (sorted; all of them when there are at most
    :data:`CALIBRATION_SAMPLES`). Applied to rows it already picked, it picks them all again: so an export right
    after training and one from the saved artifact calibrate on the same samples."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, CALIBRATION_SAMPLES), replace=False))


def _save_data(path: Path, dataset: Dataset, seed: int) -> None:
    n = len(dataset.y_train)
    pick = calibration_indices(n, seed)
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
