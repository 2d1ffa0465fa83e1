"""A whole CT slice in one convolutional pass, with a bundle's whole-slice variant (lung_nodule_cnn's ``slice``).

The variant (made at export by ``medinfer.export.fcn``) takes the slice in HU, ``(1, H, W, 1)``, and
``stride_cells`` (windows every ``cell * stride_cells`` px, ``cell`` = 8 for the seed CNN), and gives one score per
window plus the window centres. Its numbers equal patch-by-patch inference of the patch graph at the same centres
(its export gate checks that on held-out slices), so the sliding-window grid of :func:`~medinfer.tools.dicom
.window_centres` is scored by padding the slice with air exactly as :func:`~medinfer.tools.dicom.cut_patches` does,
in tiles that keep each call within the variant's ``max_elements``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InferenceError, InputError
from ..manifest import Manifest
from ..model import Model

STRIDE_INPUT = "stride_cells"
CENTRES_OUTPUT = "centres"
SLICE_DOMAIN_OUTPUT = "domain_score_slice"  # the variant's slice-level domain score (per call, i.e. per tile)


def slice_variant_of(manifest: Manifest, variant: str | None) -> str | None:
    """The whole-slice variant computing the windows of ``variant`` (None: the default) in one pass, if shipped."""
    wanted = variant or "default"
    return next((k for k, v in manifest.variants.items() if v.windows_of == wanted and v.inputs is not None), None)


def is_one_pass(model: Model) -> bool:
    """True when ``model`` runs a whole-slice variant (inputs ``hu`` + ``stride_cells``)."""
    return model.manifest.variants[model.variant].windows_of is not None and STRIDE_INPUT in model.input_names


@dataclass(frozen=True)
class SliceGrid:
    """The one-pass geometry a whole-slice variant declares in its HU input's facts."""

    image: str  # the HU input's name
    patch: int  # window size, px
    cell: int  # px per cell of the final feature map: strides are multiples of it
    offset: int  # a window's centre from its top-left corner, px
    cells: tuple[int, int]  # the allowed stride_cells range

    @staticmethod
    def of(model: Model) -> SliceGrid:
        checks = {c.name: c for c in model.input_checks}
        hu = next(c.spec for c in checks.values() if c.name != STRIDE_INPUT)
        facts = hu.facts or {}
        stride_range = checks[STRIDE_INPUT].spec.range or (1, 1)
        patch = int((facts.get("patch") or [0])[0])
        return SliceGrid(hu.name, patch, int(facts.get("cell", 8)), int(facts.get("window_offset", patch // 2)),
                         (int(stride_range[0]), int(stride_range[1])))

    def stride_cells(self, stride: int, owner: str) -> int:
        """``stride`` px as cells.

        Raises:
            InputError: not a multiple of the cell, or outside the variant's range (the message says how to fix it).
        """
        lo, hi = self.cells
        if stride % self.cell or not lo <= stride // self.cell <= hi:
            allowed = ", ".join(str(self.cell * k) for k in range(lo, hi + 1))
            raise InputError(
                f"--stride {stride}: {owner}'s one-pass slice variant scores windows every {allowed} px (multiples "
                f"of its {self.cell} px convolution cell); use one of these, or --patchwise for any stride"
            )
        return stride // self.cell


@dataclass(frozen=True)
class SliceScores:
    """A whole slice scored in one pass: per window (the grid's row-major order) the score and label, and, when the
    variant carries the domain guard, each window's domain score and flag and the slice's (``slice_domain_score``:
    the largest of its tiles' ``domain_score_slice``; one tile for a slice within the variant's ``max_elements``)."""

    scores: np.ndarray
    labels: list[str]
    domain_scores: np.ndarray | None
    in_domain: np.ndarray | None
    slice_domain_score: float | None
    slice_in_domain: bool | None


def score_slice(model: Model, hu: np.ndarray, centres: np.ndarray, stride: int,
                fill: float) -> tuple[np.ndarray, list[str]]:
    """Scores and labels of the windows centred at ``centres`` (the :func:`window_centres` grid of ``stride``) of
    the clipped HU slice ``hu``, in one pass per tile. Outside the slice is ``fill`` (air), as patch-by-patch.

    Raises:
        InputError: the stride does not fit the variant (see :meth:`SliceGrid.stride_cells`), or the centres are
            not such a grid.
        InferenceError: the variant's centres differ from the grid asked for (a broken bundle).
    """
    result = score_slice_with_domain(model, hu, centres, stride, fill)
    return result.scores, result.labels


def score_slice_with_domain(model: Model, hu: np.ndarray, centres: np.ndarray, stride: int,
                            fill: float) -> SliceScores:
    """:func:`score_slice`, with the domain guard's answers when the variant has them (see :class:`SliceScores`).

    Raises:
        InputError / InferenceError: as :func:`score_slice`; InferenceError also when the variant's domain scores
            do not give one row per window.
    """
    grid = SliceGrid.of(model)
    feed_k = np.array([grid.stride_cells(stride, model.name)], np.int64)
    tiles: list[float] = []
    domain: list[np.ndarray] = []

    def run(tile: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any, np.ndarray]:
        pred = model.predict({grid.image: tile[None, :, :, None], STRIDE_INPUT: feed_k})
        scores = np.asarray(pred.scores)
        if pred.domain_scores is not None:
            if len(pred.domain_scores) != len(scores):
                raise InferenceError(f"{model.name} ({model.variant}) gave {len(pred.domain_scores)} domain scores for "
                                     f"{len(scores)} windows: the bundle's slice guard is broken")
            domain.append(np.asarray(pred.domain_scores))
            if SLICE_DOMAIN_OUTPUT in pred.outputs:
                tiles.append(float(np.asarray(pred.outputs[SLICE_DOMAIN_OUTPUT]).reshape(-1)[0]))
        values = np.asarray(pred.domain_scores) if pred.domain_scores is not None else np.full(len(scores), np.nan)
        return scores, np.asarray(pred.outputs[CENTRES_OUTPUT]), pred.labels, values

    bound = model.manifest.variants[model.variant].max_elements
    scores, cells, values = run_tiles(hu, centres, stride, grid.patch, grid.offset, bound, fill, run,
                                      f"{model.name} ({model.variant})", with_values=True)
    labels = [str(x) for x in cells] if cells is not None else [""] * len(scores)
    if not domain:
        return SliceScores(scores, labels, None, None, None, None)
    window_domain = values.astype(np.float32)
    threshold = np.float32(model.manifest.domain.threshold) if model.manifest.domain is not None else np.inf
    slice_score = max(tiles) if tiles else None
    return SliceScores(scores, labels, window_domain, window_domain <= threshold, slice_score,
                       None if slice_score is None else bool(np.float32(slice_score) <= threshold))


def run_tiles(hu: np.ndarray, centres: np.ndarray, stride: int, patch: int, offset: int, bound: int | None,
              fill: float, run: Any, owner: str = "the slice variant", with_values: bool = False) -> Any:
    """The windows of a row-major centre grid of ``stride``, scored by ``run(tile) -> (scores, centres, labels)``
    on air-padded tiles of at most ``bound`` pixels (the whole grid when it fits): the one-pass loop shared by the
    DICOM path and the export's gate. Returns (scores, labels), and, ``with_values``, (scores, labels, values) where
    ``run`` also returns one more float per window (e.g. its domain score) as a fourth item.

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
    values = np.full((len(rows), len(cols)), np.nan)
    labels: np.ndarray | None = None
    for i0 in range(0, len(rows), per_tile):
        for j0 in range(0, len(cols), per_tile):
            n_i, n_j = min(per_tile, len(rows) - i0), min(per_tile, len(cols) - j0)
            r0, c0 = top + i0 * stride, left + j0 * stride
            tile = _crop(hu, r0, c0, (n_i - 1) * stride + patch, (n_j - 1) * stride + patch, fill)
            got_scores, got_centres, got_labels, *more = run(tile)
            got = np.asarray(got_centres) + [r0, c0]
            want = full.reshape(len(rows), len(cols), 2)[i0:i0 + n_i, j0:j0 + n_j].reshape(-1, 2)
            if got.shape != want.shape or not np.array_equal(got, want):
                raise InferenceError(f"{owner} placed its windows at {got[:3].tolist()}..., not at "
                                     f"{want[:3].tolist()}...: the bundle's slice geometry is broken")
            scores[i0:i0 + n_i, j0:j0 + n_j] = np.asarray(got_scores, np.float64).reshape(n_i, n_j)
            if more:
                values[i0:i0 + n_i, j0:j0 + n_j] = np.asarray(more[0], np.float64).reshape(n_i, n_j)
            if got_labels is not None:
                if labels is None:
                    labels = np.empty((len(rows), len(cols)), dtype=object)
                labels[i0:i0 + n_i, j0:j0 + n_j] = np.asarray(got_labels, dtype=object).reshape(n_i, n_j)
    out_labels = labels.reshape(-1) if labels is not None else None
    return (scores.reshape(-1), out_labels, values.reshape(-1)) if with_values else (scores.reshape(-1), out_labels)


def score_centre(model: Model, hu: np.ndarray, centre: tuple[int, int], fill: float) -> tuple[np.ndarray, list[str]]:
    """One window centred at ``centre``, through the whole-slice variant (a window-sized input: one window)."""
    grid = SliceGrid.of(model)
    tile = _crop(hu, centre[0] - grid.offset, centre[1] - grid.offset, grid.patch, grid.patch, fill)
    pred = model.predict({grid.image: tile[None, :, :, None], STRIDE_INPUT: np.array([grid.cells[0]], np.int64)})
    return np.asarray(pred.scores, np.float64).reshape(-1), [str(x) for x in (pred.labels if pred.labels is not None
                                                                               else [""])]


def _crop(hu: np.ndarray, r0: int, c0: int, height: int, width: int, fill: float) -> np.ndarray:
    """``hu[r0:r0+height, c0:c0+width]`` with ``fill`` wherever that lies outside the slice."""
    out = np.full((height, width), fill, dtype=np.float32)
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + height, hu.shape[0]), min(c0 + width, hu.shape[1])
    if rs < re and cs < ce:
        out[rs - r0:re - r0, cs - c0:ce - c0] = hu[rs:re, cs:ce]
    return out


def describe(model: Model) -> dict[str, Any]:
    """What the result should say about the one pass (for ``DicomPrediction.extra``)."""
    grid = SliceGrid.of(model)
    return {"one_pass": {"variant": model.variant, "windows_of": model.manifest.variants[model.variant].windows_of,
                         "cell_px": grid.cell, "window_px": grid.patch}}
