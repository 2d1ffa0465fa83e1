"""Per-window statistics of an image in Hounsfield units, for the CT domain guard (the native reference, float64).

Every statistic is the MEAN of a per-pixel map over the window (the value, the absolute difference to the pixel
``LAG`` or 1 pixel to the right / below, whether the value lies below an HU edge), so that a whole slice gets the
statistics of every window in one pass by average pooling, which equals computing them patch by patch
(``medinfer.export.patch_stats_graph`` builds both forms; the export gate checks them against each other and
against this module).

The statistics (:data:`NAMES`): the mean HU / 1000; log(1 + the mean absolute difference at ``LAG`` px), how much
structure the window holds; log(1 + the mean absolute difference of neighbours), its fine texture; the difference of
the two (roughness: real CT is smooth at 1 px against 8 px, noise and shuffled pixels are not); and the share of
pixels in each HU band between :data:`EDGES` (air, lung, ..., bone: the histogram's shape, which inverted contrast
and other modalities' values do not have).
"""

from __future__ import annotations

from typing import Any

import numpy as np

LAG = 8  # px: the structure scale (the convolution trunk's cell)
# HU band edges: air | lung | partial volume | fat | soft tissue | dense | bone | metal or enamel (rare in real CT;
# a wrong rescale slope or intercept pushes bone there)
EDGES = (-900.0, -500.0, -200.0, -30.0, 100.0, 400.0, 2000.0)
NAMES = ("mean_hu_per_1000", f"log_structure_{LAG}px", "log_texture_1px", "roughness",
         *(f"share_{a}_{b}" for a, b in zip(("-inf",) + tuple(f"{e:g}" for e in EDGES),
                                            tuple(f"{e:g}" for e in EDGES) + ("inf",))), "tissue_share")
RAW = 5 + len(EDGES)  # pooled per-pixel means: value, 4 absolute differences, one "below an edge" share per edge
# A window holds tissue when at least MIN_TISSUE of its pixels are at or above EDGES[1] = -500 HU (training patches
# all do: medinfer.train.datasets.lesions.MIN_TISSUE); the last statistic is that share.
MIN_TISSUE = 0.15


def raw_moments(X: Any) -> np.ndarray:
    """The pooled per-pixel means (N, RAW) of images (N, H, W[, 1]): E[x], E|x(+LAG col) - x|, E|x(+LAG row) - x|,
    E|x(+1 col) - x|, E|x(+1 row) - x|, E[x < edge] for each edge."""
    x = np.asarray(X, dtype=np.float64)
    x = x.reshape(x.shape[:3])
    return np.column_stack([
        x.mean(axis=(1, 2)),
        np.abs(x[:, :, LAG:] - x[:, :, :-LAG]).mean(axis=(1, 2)),
        np.abs(x[:, LAG:] - x[:, :-LAG]).mean(axis=(1, 2)),
        np.abs(x[:, :, 1:] - x[:, :, :-1]).mean(axis=(1, 2)),
        np.abs(x[:, 1:] - x[:, :-1]).mean(axis=(1, 2)),
        *((x < e).mean(axis=(1, 2)) for e in EDGES),
    ])


def derive(raw: np.ndarray) -> np.ndarray:
    """The statistics (N, len(NAMES)) from :func:`raw_moments`."""
    r = np.asarray(raw, dtype=np.float64)
    structure = np.log1p((r[:, 1] + r[:, 2]) / 2)
    texture = np.log1p((r[:, 3] + r[:, 4]) / 2)
    below = r[:, 5:]
    bands = np.column_stack([below[:, 0], np.diff(below, axis=1), 1.0 - below[:, -1]])
    return np.column_stack([r[:, 0] / 1000.0, structure, texture, texture - structure, bands, 1.0 - below[:, 1]])


def features(X: Any) -> np.ndarray:
    """The statistics of each image of ``X`` (N, P, P[, 1]) as a whole."""
    return derive(raw_moments(X))
