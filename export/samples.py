"""The held-out parity sample shipped in a bundle (``parity.npz``, manifest ``parity_sample``).

The golden file holds 4 inputs for the readiness self-test; comparing an accelerator with the CPU needs more, and
real held-out data: a seeded sample of the very set the export's parity gate compared, with the outputs the fp32
graph (and each variant's graph) gives on onnxruntime's CPU provider. Its size is bounded by rows and by bytes
(a CT patch is 40 kB, a descriptor row 1 kB), so a bundle stays small.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from medinfer.build_records import ParitySample
from medinfer.samples import INDEX, pair_arrays

from ..train.spec import ModelSpec
from . import parity
from .feeds import feeds, n_rows, nbytes, take

FILE = "parity.npz"
MAX_ROWS = 64
MAX_BYTES = 640 << 10  # inputs; 16 CNN patches of 100 x 100 float32
MIN_ROWS = 4
SEED = 14


def sample_indices(X: Any, *, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES, seed: int = SEED) -> np.ndarray:
    """Sorted row indices of a seeded sample of ``X``: at most ``max_rows`` rows and about ``max_bytes`` of input
    as stored (text as fixed-width unicode), never fewer than ``MIN_ROWS`` (or all rows when there are fewer)."""
    n = n_rows(X)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    per_row = max(1, nbytes(X) // n)
    k = min(n, max_rows, max(MIN_ROWS, max_bytes // per_row))
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False)).astype(np.int64)


def build_sample(spec: ModelSpec, X_test: Any, input_name: str, graphs: dict[str, bytes],
                 seed: int = SEED) -> tuple[dict[str, np.ndarray], ParitySample]:
    """The arrays of ``parity.npz`` and its manifest entry.

    Args:
        X_test: the held-out inputs the parity gate compared.
        graphs: ``{"default": fp32 graph, variant: its graph, ...}``, each run on the CPU (the gate's settings).

    Returns:
        ({npz key: array}, ParitySample) with keys ``in.<input>``, ``index``, ``out.<output>`` and
        ``out@<variant>.<output>``.
    """
    idx = sample_indices(X_test, seed=seed)
    X = take(X_test, idx)
    arrays: dict[str, np.ndarray] = {**pair_arrays(feeds(input_name, X), {}), INDEX: idx}
    names: tuple[str, ...] = ()
    for variant, data in graphs.items():
        outs = parity.run_batched(parity.ort_session(data), input_name, X)
        arrays.update(pair_arrays({}, outs, variant))
        names = names or tuple(outs)
    entry = ParitySample(file=FILE, n=int(len(idx)), of=n_rows(X_test), seed=seed, outputs=names,
                         atol=spec.parity.atol, rtol=spec.parity.rtol,
                         source="a seeded sample of the held-out set the export's parity gate compared; outputs of "
                                "each graph on onnxruntime's CPU provider (1 thread) at export")
    return arrays, entry

