"""Programmed corruptions of real held-out samples, for the shifted sets the domain guards are judged on (each spec's
``domain_shifts``; every set made here is labelled ``synthetic`` there)."""

from __future__ import annotations

import numpy as np

from .datasets import glucose


def random_patches(image: np.ndarray, n: int, rng: np.random.Generator, patch: int, fill: float) -> np.ndarray:
    """``n`` random ``patch`` x ``patch`` patches of ``image`` (padded with ``fill`` when smaller), as (n, P, P, 1)."""
    h, w = image.shape
    padded = np.pad(image, ((0, max(0, patch - h)), (0, max(0, patch - w))), constant_values=fill)
    h, w = padded.shape
    out = np.empty((n, patch, patch, 1), np.float32)
    for i in range(n):
        r, c = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
        out[i, :, :, 0] = padded[r:r + patch, c:c + patch]
    return out


def smooth(x: np.ndarray, radius: int) -> np.ndarray:
    """A box blur of (N, H, W, 1) images over (2 radius + 1) px, rescaled to zero mean and unit SD per image."""
    out = np.asarray(x, np.float64)
    for axis in (1, 2):
        out = sum(np.roll(out, k, axis=axis) for k in range(-radius, radius + 1)) / (2 * radius + 1)
    return (out - out.mean(axis=(1, 2, 3), keepdims=True)) / (out.std(axis=(1, 2, 3), keepdims=True) + 1e-9)


def with_cgm(X: np.ndarray, cgm: np.ndarray) -> np.ndarray:
    """Glucose windows with another CGM trace, and the features derived from it (rate, 30-min delta) recomputed."""
    out = X.copy()
    change = cgm - X[:, :, 0]
    out[:, :, 0] = cgm
    out[:, 1:, 1] = np.diff(cgm, axis=1) / glucose.STEP_MIN
    k = 30 // glucose.STEP_MIN
    out[:, :, 2] = X[:, :, 2] + change  # the reading 30 min earlier keeps its value ...
    out[:, k:, 2] -= change[:, :-k]  # ... unless it is in the window and changed too
    return out.astype(np.float32)
