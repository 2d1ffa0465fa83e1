"""Simulated lung nodules inserted into real CT patches (the lesion-insertion technique).

Every patch is a real 100 x 100 region of a real CT slice in Hounsfield units. Positives get ONE simulated
nodule centred within ``CENTRE_RADIUS`` pixels of the patch centre: a lobulated ellipse 5-20 mm across with a
soft edge, solid (-100..+100 HU) or sub-solid (-700..-300 HU) — whichever differs by >= 150 HU from the tissue
it replaces — blended with partial-volume opacity 0.5-1.0 plus CT-like noise. Both classes get the same
distractors with the same probabilities: vessel-like curved tubes (1-4 px wide, -50..+150 HU) and small vessel
cross-sections (<= 3 mm), so the label is carried by the nodule alone. Patches are drawn only where the slice
holds tissue and are randomly flipped/rotated.

These are SIMULATED lesions on real CT background: no patch shows a real nodule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from medinfer.errors import DatasetError

from .ct import HU_MAX, HU_MIN, Slice

PATCH = 100
CENTRE_RADIUS = 20  # px: a positive's nodule centre lies within this distance of the patch centre
NODULE_MM = (5.0, 20.0)
VESSEL_DOT_MM = (1.5, 3.0)
MIN_CONTRAST = 150.0  # HU between a nodule and the tissue it replaces
MIN_TISSUE = 0.15  # fraction of a patch's pixels above -500 HU (skips patches of air only)


@dataclass(frozen=True)
class Patches:
    X: np.ndarray  # (N, 100, 100, 1) float32 HU
    y: np.ndarray  # (N,) int64: 1 = simulated nodule present
    diameter_mm: np.ndarray  # (N,) 0 for negatives
    origin: list[str]  # "source[index]@row,col" of each background patch
    masks: np.ndarray | None = None  # (N, 100, 100) uint8: the nodule's pixels (its profile > 0.5), when asked for

    def __len__(self) -> int:
        return len(self.y)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    rr, cc = np.mgrid[0:PATCH, 0:PATCH].astype(np.float32)
    return rr, cc


def _blend(patch: np.ndarray, weight: np.ndarray, hu: float | np.ndarray) -> np.ndarray:
    return patch * (1.0 - weight) + weight * hu


def add_nodule(patch: np.ndarray, rng: np.random.Generator, spacing_mm: float, mask: np.ndarray | None = None) -> float:
    """Insert one simulated nodule near the centre of ``patch`` (in place); returns its diameter in mm. ``mask``
    (same shape, written in place) receives the nodule's pixels (its soft profile above one half): segmentation
    labels, drawn without any further random numbers (the same patches with or without masks)."""
    rr, cc = _grid()
    diameter = float(rng.uniform(*NODULE_MM))
    radius = float(np.clip(diameter / 2.0 / spacing_mm, 2.5, 22.0))
    angle0 = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(0, CENTRE_RADIUS)
    r0, c0 = PATCH / 2 + dist * np.sin(angle0), PATCH / 2 + dist * np.cos(angle0)
    aspect, rot = rng.uniform(0.7, 1.0), rng.uniform(0, np.pi)
    dr, dc = rr - r0, cc - c0
    u = dr * np.cos(rot) + dc * np.sin(rot)
    v = (-dr * np.sin(rot) + dc * np.cos(rot)) / aspect
    rho, theta = np.hypot(u, v), np.arctan2(v, u)
    lobes, amp, phase = rng.integers(3, 8), rng.uniform(0.0, 0.25), rng.uniform(0, 2 * np.pi)
    edge = radius * (1.0 + amp * np.sin(lobes * theta + phase))
    softness = rng.uniform(0.5, 2.0)
    profile = 1.0 / (1.0 + np.exp(-(edge - rho) / softness))
    # Visible by construction: the nodule's density differs from the tissue it replaces by >= MIN_CONTRAST HU
    # (a solid nodule in soft tissue would be invisible, so there it is drawn sub-solid instead, and vice versa).
    local = float(np.median(patch[profile > 0.5])) if (profile > 0.5).any() else float(patch[50, 50])
    solid = rng.random() < 0.75
    hu = _nodule_hu(rng, solid)
    if abs(hu - local) < MIN_CONTRAST:
        other = _nodule_hu(rng, not solid)
        hu = other if abs(other - local) > abs(hu - local) else hu
    opacity = rng.uniform(0.5, 1.0)
    noise = rng.normal(0.0, rng.uniform(8.0, 25.0), patch.shape).astype(np.float32)
    patch[:] = _blend(patch, (opacity * profile).astype(np.float32), hu + noise)
    if mask is not None:
        mask[:] = profile > 0.5
    return diameter


def _nodule_hu(rng: np.random.Generator, solid: bool) -> float:
    return float(rng.uniform(-100, 100) if solid else rng.uniform(-700, -300))


def add_vessel(patch: np.ndarray, rng: np.random.Generator) -> None:
    """A curved tube (quadratic Bezier) crossing the patch, 1-4 px wide, soft-tissue/contrast density."""
    rr, cc = _grid()
    p0, p2 = rng.uniform(0, PATCH, 2), rng.uniform(0, PATCH, 2)
    p1 = rng.uniform(PATCH * 0.2, PATCH * 0.8, 2)
    t = np.linspace(0, 1, 60)[:, None]
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # (60, 2)
    d2 = np.min((rr[None] - curve[:, 0, None, None]) ** 2 + (cc[None] - curve[:, 1, None, None]) ** 2, axis=0)
    width = rng.uniform(1.0, 4.0) / 2.0
    profile = 1.0 / (1.0 + np.exp(-(width - np.sqrt(d2)) / 0.6))
    patch[:] = _blend(patch, (rng.uniform(0.5, 1.0) * profile).astype(np.float32), rng.uniform(-50, 150))


def add_vessel_dot(patch: np.ndarray, rng: np.random.Generator, spacing_mm: float) -> None:
    """A small round vessel cross-section (<= 3 mm) anywhere in the patch."""
    rr, cc = _grid()
    r0, c0 = rng.uniform(10, PATCH - 10, 2)
    radius = max(0.8, rng.uniform(*VESSEL_DOT_MM) / 2.0 / spacing_mm)
    profile = 1.0 / (1.0 + np.exp(-(radius - np.hypot(rr - r0, cc - c0)) / 0.6))
    patch[:] = _blend(patch, (rng.uniform(0.5, 1.0) * profile).astype(np.float32), rng.uniform(0, 150))


def _background(slices: list[Slice], rng: np.random.Generator) -> tuple[np.ndarray, Slice, str]:
    weights = np.array([s.hu.size for s in slices], dtype=np.float64)
    for _ in range(200):
        sl = slices[rng.choice(len(slices), p=weights / weights.sum())]
        h, w = sl.hu.shape
        if h < PATCH or w < PATCH:
            continue
        r, c = int(rng.integers(0, h - PATCH + 1)), int(rng.integers(0, w - PATCH + 1))
        patch = sl.hu[r:r + PATCH, c:c + PATCH]
        if np.mean(patch > -500) >= MIN_TISSUE:
            patch = np.rot90(patch, int(rng.integers(0, 4)))
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            return np.array(patch, dtype=np.float32), sl, f"{sl.key}@{r},{c}"
    raise DatasetError(f"no {PATCH}x{PATCH} patch with >= {MIN_TISSUE:.0%} tissue in {[s.key for s in slices][:5]}")


def make_patches(slices: list[Slice], n: int, rng: np.random.Generator, positive_fraction: float = 0.5,
                 progress: Any = None, masks: bool = False) -> Patches:
    """``n`` labelled patches (simulated nodules on real CT background) drawn from ``slices``; ``masks``: also each
    nodule's pixels (segmentation labels; the patches are the same either way).

    Raises:
        DatasetError: no slice holds a patch with enough tissue.
    """
    X = np.empty((n, PATCH, PATCH, 1), dtype=np.float32)
    y = (rng.random(n) < positive_fraction).astype(np.int64)
    diameters = np.zeros(n, dtype=np.float32)
    drawn = np.zeros((n, PATCH, PATCH), dtype=np.uint8) if masks else None
    origin: list[str] = []
    for i in range(n):
        patch, sl, where = _background(slices, rng)
        if rng.random() < 0.6:
            for _ in range(int(rng.integers(1, 4))):
                add_vessel(patch, rng)
        if rng.random() < 0.4:
            for _ in range(int(rng.integers(1, 3))):
                add_vessel_dot(patch, rng, sl.spacing_mm)
        if y[i]:
            diameters[i] = add_nodule(patch, rng, sl.spacing_mm, None if drawn is None else drawn[i])
        X[i, :, :, 0] = np.clip(patch, HU_MIN, HU_MAX)
        origin.append(where)
        if progress is not None:
            progress.update(1)
    return Patches(X, y, diameters, origin, drawn)
