"""The graph form of :mod:`medinfer.train.patch_stats`: per-window HU statistics, for a batch of patches (each patch
one window) or for every window of a whole slice in one pass (separable average pooling with the window's size and
the convolution cell as stride, then every ``stride_cells``-th window), which computes the very same means.

Both forms end in the same nodes (:func:`derive`), so a guard read from them gives the patch graph's domain score
for every window of the slice; the export gate checks that on held-out slices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..train.patch_stats import EDGES, LAG, NAMES, RAW

SOURCE_PREFIX = "@patch_stats:"  # a guard source "@patch_stats:<hu input>": the statistics of each input patch
_END = np.iinfo(np.int64).max


def _maps(b: Any, hu: str) -> list[tuple[str, tuple[int, int]]]:
    """Per-pixel maps (N, C, h, w) in raw_moments order, each with how much smaller than the image it is."""
    x = b.node("Transpose", [b.source(hu)], "nchw", perm=[0, 3, 1, 2])

    def shifted(axis: int, lag: int) -> str:
        ax = b.const([axis], "ax", np.int64)
        later = b.node("Slice", [x, b.const([lag], "lag", np.int64), b.const([_END], "end", np.int64), ax], "later")
        earlier = b.node("Slice", [x, b.const([0], "s0", np.int64), b.const([-lag], "mlag", np.int64), ax],
                         "earlier")
        return b.node("Abs", [b.node("Sub", [later, earlier], "step")], "abs_step")

    edges = b.const(np.asarray(EDGES).reshape(1, -1, 1, 1), "edges")  # every edge at once: (N, edges, h, w)
    below = b.node("Cast", [b.node("Less", [x, edges], "below")], "belowf", to=1)
    return [(x, (0, 0)), (shifted(3, LAG), (0, LAG)), (shifted(2, LAG), (LAG, 0)), (shifted(3, 1), (0, 1)),
            (shifted(2, 1), (1, 0)), (below, (0, 0))]


def _derive(b: Any, raw: str) -> str:
    """(M, RAW) raw means -> (M, len(NAMES)) statistics, as in :func:`medinfer.train.patch_stats.derive`."""
    pair = np.zeros((RAW, 2))
    pair[[1, 2], 0] = 0.5
    pair[[3, 4], 1] = 0.5
    logs = b.node("Log", [b.node("Add", [b.node("MatMul", [raw, b.const(pair, "pairs")], "mean_steps"),
                                         b.const(1.0, "one")], "one_plus")], "log_steps")
    three = b.node("MatMul", [logs, b.const([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]], "rough")], "texture")
    edges = len(EDGES)
    # the linear statistics: mean / 1000, the edges + 1 band shares and the tissue share
    lin = np.zeros((RAW, edges + 3))
    offset = np.zeros(edges + 3)
    lin[0, 0] = 1e-3
    lin[5, 1] = 1.0
    for i in range(1, edges):
        lin[5 + i, 1 + i], lin[4 + i, 1 + i] = 1.0, -1.0
    lin[4 + edges, 1 + edges], offset[1 + edges] = -1.0, 1.0
    lin[6, 2 + edges], offset[2 + edges] = -1.0, 1.0  # 1 - share below EDGES[1]
    linear = b.node("Add", [b.node("MatMul", [raw, b.const(lin, "linear")], "linear0"), b.const(offset, "offset")],
                    "linear")
    # [mean, bands..., tissue, structure, texture, roughness] -> NAMES order
    dst = [0, *range(4, 4 + edges + 1), 4 + edges + 1, 1, 2, 3]
    order = np.zeros((len(dst), len(NAMES)))
    order[np.arange(len(dst)), dst] = 1.0
    both = b.node("Concat", [linear, three], "stats_unordered", axis=1)
    return b.node("MatMul", [both, b.const(order, "order")], "hu_stats")


def patch_stats(b: Any, hu: str) -> str:
    """The statistics (N, len(NAMES)) of each patch of the (N, P, P, 1) input ``hu``."""
    pooled = [b.reduce("ReduceMean", m, [2, 3]) for m, _ in _maps(b, hu)]
    return _derive(b, b.node("Concat", pooled, "raw_moments", axis=1))


def window_stats(b: Any, hu: str, patch: int, cell: int, stride_cells: str) -> str:
    """The statistics (K, len(NAMES)) of every ``patch`` x ``patch`` window of the (1, H, W, 1) image ``hu`` at
    offsets that are multiples of ``cell`` * ``stride_cells`` px (row-major, the whole-slice graph's window order)."""
    pooled = []
    for m, (dh, dw) in _maps(b, hu):
        rows = b.node("AveragePool", [m], "pool_rows", kernel_shape=[patch - dh, 1], strides=[cell, 1])
        pooled.append(b.node("AveragePool", [rows], "pool_cols", kernel_shape=[1, patch - dw], strides=[1, cell]))
    grid = b.node("Concat", pooled, "raw_grid", axis=1)  # (1, RAW, rows, cols) at every cell
    steps = b.node("Concat", [stride_cells, stride_cells], "steps", axis=0)
    picked = b.node("Slice", [grid, b.const([0, 0], "s00", np.int64), b.const([_END, _END], "ends", np.int64),
                              b.const([2, 3], "axes23", np.int64), steps], "windows")
    rows = b.node("Reshape", [b.node("Transpose", [picked], "nhwc", perm=[0, 2, 3, 1]),
                              b.const([-1, RAW], "rows", np.int64)], "raw_moments")
    return _derive(b, rows)


def resolve(b: Any, name: str) -> str | None:
    """The tensor for a derived guard source (``@patch_stats:<input>``), built once per graph; None otherwise."""
    if not name.startswith(SOURCE_PREFIX):
        return None
    cache: dict[str, str] = b.__dict__.setdefault("_derived", {})
    if name not in cache:
        cache[name] = patch_stats(b, name[len(SOURCE_PREFIX):])
    return cache[name]
