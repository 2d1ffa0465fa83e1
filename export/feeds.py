"""Model inputs as the export pipeline carries them: one array (a one-input model, the five specs) or a mapping of
input name -> array (a model with several inputs, e.g. one brought with ``medinfer bundle``). Every stage that
slices, samples or feeds inputs goes through these helpers, so a multi-input model takes the same path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def is_multi(X: Any) -> bool:
    """Whether ``X`` holds several named inputs."""
    return isinstance(X, Mapping)


def n_rows(X: Any) -> int:
    """The number of samples (the batch axis) of ``X``.

    Raises:
        ValueError: named inputs whose batch axes differ.
    """
    if not is_multi(X):
        return len(X)
    sizes = {name: len(v) for name, v in X.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the inputs hold different numbers of samples: {sizes}")
    return next(iter(sizes.values()), 0)


def rows(X: Any, start: int, stop: int) -> Any:
    """Samples ``start:stop`` of ``X``."""
    return {k: v[start:stop] for k, v in X.items()} if is_multi(X) else X[start:stop]


def packed(arrays: dict[str, Any]) -> Any:
    """The form the pipeline carries inputs in: a one-input model's array itself, a mapping for several."""
    if len(arrays) == 1:
        (only,) = arrays.values()
        return only
    return dict(arrays)


def take(X: Any, idx: np.ndarray) -> Any:
    """The samples at ``idx`` (plain numpy arrays; object text as it is)."""
    if is_multi(X):
        return {k: np.asarray(v)[idx] for k, v in X.items()}
    return np.asarray(X)[idx]


def tile(X: Any, n: int) -> Any:
    """``n`` samples made by repeating ``X`` (timing feeds at a batch size larger than the sample)."""
    def one(x: Any) -> np.ndarray:
        x = np.asarray(x)
        return np.concatenate([x] * -(-n // len(x)))[:n]

    return {k: one(v) for k, v in X.items()} if is_multi(X) else one(X)


def feeds(input_name: str, X: Any) -> dict[str, Any]:
    """What ``session.run`` takes: ``{input_name: X}`` for one input, the mapping itself for several (fixed-width
    unicode text as the object array onnxruntime's string tensors take)."""
    def plain(x: Any) -> Any:
        arr = np.asarray(x)
        return arr.astype(object) if arr.dtype.kind == "U" else x

    return {k: plain(v) for k, v in X.items()} if is_multi(X) else {input_name: plain(X)}


def nbytes(X: Any) -> int:
    """Bytes of ``X`` as stored (text as fixed-width unicode)."""
    def one(x: Any) -> int:
        arr = np.asarray(x)
        return int((arr.astype(str) if arr.dtype == object else arr).nbytes)

    return sum(one(v) for v in X.values()) if is_multi(X) else one(X)
