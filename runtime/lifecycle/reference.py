"""The frozen reference set of ``medinfer diff`` and the metrics computed on it (numpy only).

A reference file is an ``.npz`` (read without pickle) holding the inputs as ``in.<input name>`` (the layout of a
bundle's golden and parity files), ``<input name>`` or ``x`` (a one-input model); optionally ``y`` (the true
labels: label names or label indices; values for regression) and ``group`` (one subgroup name per sample, e.g. a
site, a sex or an age band). Without a reference file, ``diff`` uses the parent bundle's own parity sample and
golden inputs (no labels: decisions, domain and probes only).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer import samples
from medinfer.errors import UsageError

MAX_REFERENCE_BYTES = 2 << 30


@dataclass
class Reference:
    """Inputs by name, optional truth ``y`` and ``group``, and where they came from."""

    inputs: dict[str, np.ndarray]
    y: np.ndarray | None
    group: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))


def read_reference(path: str | Path, model: medinfer.Model) -> Reference:
    """Read a reference ``.npz`` for ``model``'s inputs (see the module docstring).

    Raises:
        UsageError: not a regular ``.npz`` file of at most 2 GiB, an input missing, lengths that disagree.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise UsageError(f"--reference {path} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_REFERENCE_BYTES:
        raise UsageError(f"--reference {path} must be a regular .npz file of at most 2 GiB")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"--reference {path} is not a readable .npz without pickled objects ({exc})") from None
    inputs: dict[str, np.ndarray] = {}
    for name in model.input_names:
        keys = (samples.key(samples.INPUT, name), name, *(("x",) if len(model.input_names) == 1 else ()))
        for k in keys:
            if k in arrays:
                inputs[name] = arrays[k]
                break
        else:
            raise UsageError(f"--reference {path} holds no input {name!r} (keys {', '.join(map(repr, keys))}; "
                             f"found {', '.join(sorted(arrays)) or 'none'})")
    ref = Reference(inputs, arrays.get("y"), arrays.get("group"), str(path))
    for what, arr in (("y", ref.y), ("group", ref.group), *inputs.items()):
        if arr is not None and (arr.ndim == 0 or len(arr) != len(ref)):
            raise UsageError(f"--reference {path}: '{what}' has {0 if arr.ndim == 0 else len(arr)} rows, the inputs "
                             f"{len(ref)}")
    if len(ref) == 0:
        raise UsageError(f"--reference {path} holds no samples")
    return ref


def bundle_reference(model: medinfer.Model) -> Reference | None:
    """The parent's own parity sample and golden inputs (no labels), or None when it ships neither usable."""
    parts: list[dict[str, np.ndarray]] = []
    sample = model.parity_sample()
    if sample is not None:
        parts.append(sample[0])
    golden, _ = model.golden()
    if golden:
        parts.append(golden)
    parts = [p for p in parts if set(p) == set(model.input_names)]
    if not parts:
        return None
    try:
        inputs = {n: np.concatenate([p[n] for p in parts]) for n in model.input_names}
    except ValueError:  # different trailing shapes (e.g. sequences of several lengths): the first part only
        inputs = dict(parts[0])
    return Reference(inputs, None, None, f"{model.name}'s parity sample and golden inputs (no labels)")


def label_indices(y: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """True labels as indices into ``labels`` (names or integer indices accepted).

    Raises:
        UsageError: a label that is not one of ``labels`` (or an index out of range).
    """
    if y.dtype.kind in "iu":
        if y.size and (y.min() < 0 or y.max() >= len(labels)):
            raise UsageError(f"reference labels must be indices of the {len(labels)} labels (from 0), got "
                             f"{y.min()}..{y.max()}")
        return y.astype(np.int64)
    names = [str(v) for v in y.tolist()]
    unknown = sorted(set(names) - set(labels))
    if unknown:
        raise UsageError(f"reference labels {unknown[:5]} are not among the model's labels {list(labels)}")
    index = {name: i for i, name in enumerate(labels)}
    return np.array([index[n] for n in names], dtype=np.int64)


# metrics: fn(y, output) where output is the positive-class score (binary), class probabilities (multiclass) or
# predicted values (regression); ``threshold`` and ``positive`` come from the model being scored
def auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties counted half); NaN with one class only."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    conf = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(axis=0) + conf.sum(axis=1)
    return float(np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0).mean())


MetricFn = Callable[[np.ndarray, np.ndarray], float]


def metric_function(name: str, task: str, threshold: float, n_labels: int) -> MetricFn | None:
    """The function computing metric ``name`` for ``task`` on (truth, model output), or None when unknown."""
    def rate(yy: np.ndarray, mask: np.ndarray) -> float:
        return float(mask.mean()) if mask.size else float("nan")

    if task == "binary_classification":
        table: dict[str, MetricFn] = {
            "roc_auc": auc,
            "accuracy": lambda y, s: float(np.mean((s >= threshold).astype(int) == y)),
            "sensitivity": lambda y, s: rate(y, s[y == 1] >= threshold),
            "specificity": lambda y, s: rate(y, s[y == 0] < threshold),
        }
    elif task == "multiclass_classification":
        table = {"accuracy": lambda y, p: float(np.mean(np.argmax(p, axis=1) == y)),
                 "macro_f1": lambda y, p: _macro_f1(y, np.argmax(p, axis=1), n_labels)}
    else:
        table = {"rmse": lambda y, p: float(np.sqrt(np.mean((y - p) ** 2))),
                 "mae": lambda y, p: float(np.mean(np.abs(y - p)))}
    return table.get(name)


PRIMARY = {"binary_classification": "roc_auc", "multiclass_classification": "accuracy", "regression": "mae"}


def paired_bootstrap(fn_old: MetricFn, fn_new: MetricFn, y: np.ndarray, out_old: np.ndarray, out_new: np.ndarray,
                     *, n_boot: int, confidence: float, seed: int = 0) -> dict[str, Any]:
    """Both models' metric and the percentile-bootstrap CI of ``new - old``, resampling the SAME samples for both.

    Returns:
        ``{"old", "new", "delta", "ci": [low, high] or None, "n", "resamples"}`` (resamples where the metric is
        undefined, e.g. one class only for AUC, are skipped; fewer than half usable gives no CI).
    """
    old, new = fn_old(y, out_old), fn_new(y, out_new)
    rng = np.random.default_rng(seed)
    n = len(y)
    deltas = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        d = fn_new(y[idx], out_new[idx]) - fn_old(y[idx], out_old[idx])
        if np.isfinite(d):
            deltas.append(d)
    ci = None
    if len(deltas) >= n_boot // 2:
        tail = (1.0 - confidence) / 2 * 100
        lo, hi = np.percentile(deltas, [tail, 100 - tail])
        ci = [float(lo), float(hi)]
    return {"old": old, "new": new, "delta": new - old, "ci": ci, "n": n, "resamples": len(deltas)}
