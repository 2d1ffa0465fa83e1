"""The perturbations explanations and their fidelity curves are made of (numpy only): occluded image copies, masked
time steps, removed words, features set to their baseline. One copy of each rule, used on the device
(:mod:`medinfer.explain`), by the export's gate and fidelity measurement, and by the benchmarks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np


def window_starts(size: int, window: int, stride: int) -> np.ndarray:
    """Top (or left) corners of occlusion windows along one axis of ``size`` px: every ``stride`` px, the last one
    flush with the far edge so that every pixel is covered."""
    if window >= size:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return np.asarray(starts, dtype=np.int64)


def cell_edges(size: int, cell: int) -> np.ndarray:
    """Edges of the disjoint cells (``cell`` px, the last one possibly smaller) along one axis."""
    return np.unique(np.append(np.arange(0, size, cell), size)).astype(np.int64)


def cell_names(height: int, width: int, cell: int) -> tuple[str, ...]:
    """One name per disjoint cell, row-major: ``"rows 0-9, cols 10-19"`` (pixel ranges, inclusive)."""
    rows, cols = cell_edges(height, cell), cell_edges(width, cell)
    return tuple(f"rows {rows[i]}-{rows[i + 1] - 1}, cols {cols[j]}-{cols[j + 1] - 1}"
                 for i in range(len(rows) - 1) for j in range(len(cols) - 1))


def occluded(image: np.ndarray, window: int, stride: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Copies of one image (H, W, C) with one ``window`` x ``window`` square set to ``fill`` each.

    Returns:
        (copies (K, H, W, C), corners (K, 2) row, col of each square), row-major over the windows.
    """
    h, w = image.shape[:2]
    rows, cols = window_starts(h, window, stride), window_starts(w, window, stride)
    corners = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    copies = np.repeat(image[None], len(corners), axis=0)
    for k, (r, c) in enumerate(corners):
        copies[k, r:r + window, c:c + window] = fill
    return copies, corners


def occlusion_map(drops: np.ndarray, corners: np.ndarray, shape: tuple[int, int], window: int) -> np.ndarray:
    """Per pixel, the mean score drop over the occlusion windows that cover it (H, W)."""
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.float64)
    for drop, (r, c) in zip(drops, corners):
        total[r:r + window, c:c + window] += drop
        count[r:r + window, c:c + window] += 1.0
    return (total / np.maximum(count, 1.0)).astype(np.float32)


def cell_means(heat: np.ndarray, cell: int) -> np.ndarray:
    """The mean of a (H, W) map over each disjoint cell, row-major (the occlusion attribution per cell)."""
    rows, cols = cell_edges(heat.shape[0], cell), cell_edges(heat.shape[1], cell)
    return np.array([heat[rows[i]:rows[i + 1], cols[j]:cols[j + 1]].mean()
                     for i in range(len(rows) - 1) for j in range(len(cols) - 1)], dtype=np.float32)


def fill_cells(image: np.ndarray, masks: np.ndarray, cell: int, fill: float) -> np.ndarray:
    """Copies of one image (H, W, C), the cells marked in each row of ``masks`` (K, cells) set to ``fill``."""
    h, w = image.shape[:2]
    rows, cols = cell_edges(h, cell), cell_edges(w, cell)
    n_cols = len(cols) - 1
    out = np.repeat(image[None], len(masks), axis=0)
    for k, mask in enumerate(np.asarray(masks, bool)):
        for index in np.flatnonzero(mask):
            i, j = divmod(int(index), n_cols)
            out[k, rows[i]:rows[i + 1], cols[j]:cols[j + 1]] = fill
    return out


def mask_steps(series: np.ndarray, masks: np.ndarray, events: Sequence[int], mean: np.ndarray) -> np.ndarray:
    """Copies of one sequence (T, F) with the time steps marked in each row of ``masks`` (K, T) masked.

    A masked step takes the feature values of the nearest earlier step that is not masked (carry forward; a leading
    run of masked steps takes the first step that is not); features in ``events`` (amounts given during a step:
    a bolus, a meal) become 0 instead, so that a masked step repeats no event. When every step is masked, each
    takes ``mean`` (the training mean), events 0.
    """
    masks = np.asarray(masks, bool)
    out = np.repeat(series[None], len(masks), axis=0)
    steps = np.arange(series.shape[0])
    events = list(events)
    for k, mask in enumerate(masks):
        kept = steps[~mask]
        if kept.size == 0:
            out[k] = mean
        else:
            # the nearest kept step at or before each step; before the first kept step, the first kept step
            source = kept[np.clip(np.searchsorted(kept, steps, side="right") - 1, 0, None)]
            out[k] = series[source]
        if events:
            out[k][np.ix_(mask, events)] = 0.0
    return out


def mask_groups(series: np.ndarray, groups: Sequence[Sequence[int]], mean: np.ndarray) -> np.ndarray:
    """Copies of one sequence (T, F), the features of one group each set to the training ``mean`` at every step."""
    out = np.repeat(series[None], len(groups), axis=0)
    for k, features in enumerate(groups):
        out[k][:, list(features)] = np.asarray(mean)[list(features)]
    return out


def set_features(row: np.ndarray, masks: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Copies of one feature vector (F,), the features marked in each row of ``masks`` (K, F) at ``baseline``."""
    masks = np.asarray(masks, bool)
    return np.where(masks, np.asarray(baseline, row.dtype)[None], row[None]).astype(row.dtype)


def drop_words(text: str, removed: set[str] | frozenset[str], pattern: str) -> str:
    """``text`` lowercased with every token in ``removed`` replaced by a space (tokens: ``pattern`` on the
    lowercased text, as the graph's tokenizer finds them); the other tokens keep their order and counts."""
    return re.sub(pattern, lambda m: " " if m.group(0) in removed else m.group(0), text.lower())


def tokens_of(text: str, pattern: str) -> set[str]:
    """The distinct tokens of ``text`` (lowercased, ``pattern``)."""
    return set(re.findall(pattern, text.lower()))
