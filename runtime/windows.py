"""Sliding windows over a 2-D image, the one geometry of patch-by-patch and one-pass scoring.

The window grid (:func:`window_centres`), the air-padded patches at its centres (:func:`cut_patches`), and the
one-pass loop of a whole-slice variant over tiles within its per-call bound (:func:`run_tiles`, with the variant's
extra input and output names): shared by the device's DICOM path (``medinfer.tools.dicom`` / ``.ct_slice``) and
the exporter's gate of the whole-slice variants, so both score exactly the same windows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InferenceError, InputError

STRIDE_INPUT = "stride_cells"  # a whole-slice variant's second input: windows every cell * stride_cells px
CENTRES_OUTPUT = "centres"  # and its extra output: each window's centre (row, col)


def window_centres(shape: tuple[int, int], stride: int) -> np.ndarray:
    """Centres (row, col) of a sliding window grid that covers the whole slice."""
    rows = np.arange(stride // 2, shape[0], stride)
    cols = np.arange(stride // 2, shape[1], stride)
    return np.array([(r, c) for r in rows for c in cols], dtype=np.int64)


def cut_patches(hu: np.ndarray, centres: np.ndarray, size: int, fill: float) -> np.ndarray:
    """(n, size, size, 1) patches centred at ``centres``; outside the slice is filled with ``fill`` (air)."""
    half = size // 2
    padded = np.pad(hu, size, constant_values=fill)
    out = np.empty((len(centres), size, size, 1), dtype=np.float32)
    for i, (r, c) in enumerate(centres):
        r0, c0 = int(r) - half + size, int(c) - half + size
        out[i, :, :, 0] = padded[r0:r0 + size, c0:c0 + size]
    return out


def run_tiles(hu: np.ndarray, centres: np.ndarray, stride: int, patch: int, offset: int, bound: int | None,
              fill: float, run: Any, owner: str = "the slice variant",
              extra: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The windows of a row-major centre grid of ``stride``, scored by ``run(tile) -> (scores, centres, labels)``
    on air-padded tiles of at most ``bound`` pixels (the whole grid when it fits): the one-pass loop shared by the
    DICOM path and the export's gate. ``run`` may return a fourth element, ``{name: one value per window}`` (e.g.
    the variant's per-window ``domain_score``): those are assembled like the scores into ``extra[name]`` (one
    value per centre, in the centres' order) when ``extra`` is given.

    Raises:
        InputError: ``centres`` is not a row-major grid of ``stride``.
        InferenceError: ``run`` put its windows elsewhere than the grid.
    """
    rows, cols = np.unique(centres[:, 0]), np.unique(centres[:, 1])
    full = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    if not np.array_equal(full, centres) or np.any(np.diff(rows) != stride) or np.any(np.diff(cols) != stride):
        raise InputError(f"the window centres are not a row-major grid of stride {stride}: score them patch by patch "
                         "(--patchwise)")
    top, left = int(rows[0]) - offset, int(cols[0]) - offset  # the first window's corner, in slice coordinates
    per_tile = max(1, (int(np.sqrt(bound or 1 << 62)) - patch) // stride + 1)  # windows per tile side
    scores = np.empty((len(rows), len(cols)), np.float64)
    labels: np.ndarray | None = None
    for i0 in range(0, len(rows), per_tile):
        for j0 in range(0, len(cols), per_tile):
            n_i, n_j = min(per_tile, len(rows) - i0), min(per_tile, len(cols) - j0)
            r0, c0 = top + i0 * stride, left + j0 * stride
            tile = crop(hu, r0, c0, (n_i - 1) * stride + patch, (n_j - 1) * stride + patch, fill)
            got_scores, got_centres, got_labels, *more = run(tile)
            got = np.asarray(got_centres) + [r0, c0]
            want = full.reshape(len(rows), len(cols), 2)[i0:i0 + n_i, j0:j0 + n_j].reshape(-1, 2)
            if got.shape != want.shape or not np.array_equal(got, want):
                raise InferenceError(f"{owner} placed its windows at {got[:3].tolist()}..., not at "
                                     f"{want[:3].tolist()}...: the bundle's slice geometry is broken")
            scores[i0:i0 + n_i, j0:j0 + n_j] = np.asarray(got_scores, np.float64).reshape(n_i, n_j)
            for name, values in (more[0] if more and extra is not None else {}).items():
                grid = extra.setdefault(name, np.full((len(rows), len(cols)), np.nan))  # type: ignore[union-attr]
                grid[i0:i0 + n_i, j0:j0 + n_j] = np.asarray(values, np.float64).reshape(n_i, n_j)
            if got_labels is not None:
                if labels is None:
                    labels = np.empty((len(rows), len(cols)), dtype=object)
                labels[i0:i0 + n_i, j0:j0 + n_j] = np.asarray(got_labels, dtype=object).reshape(n_i, n_j)
    if extra is not None:
        extra.update({name: grid.reshape(-1) for name, grid in extra.items()})
    return scores.reshape(-1), labels.reshape(-1) if labels is not None else None


def crop(hu: np.ndarray, r0: int, c0: int, height: int, width: int, fill: float) -> np.ndarray:
    """``hu[r0:r0+height, c0:c0+width]`` with ``fill`` wherever that lies outside the slice."""
    out = np.full((height, width), fill, dtype=np.float32)
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + height, hu.shape[0]), min(c0 + width, hu.shape[1])
    if rs < re and cs < ce:
        out[rs - r0:re - r0, cs - c0:ce - c0] = hu[rs:re, cs:ce]
    return out
