"""A whole CT slice in one convolutional pass, with a bundle's whole-slice variant (lung_nodule_cnn's ``slice``).

The variant (made at export by ``medinfer.export.variants.whole_slice_graph``) takes the slice in HU,
``(1, H, W, 1)``, and
``stride_cells`` (windows every ``cell * stride_cells`` px, ``cell`` = 8 for the seed CNN), and gives one score per
window plus the window centres. Its numbers equal patch-by-patch inference of the patch graph at the same centres
(its export gate checks that on held-out slices), so the sliding-window grid of :func:`~medinfer.windows.window_centres`
is scored by padding the slice with air exactly as :func:`~medinfer.windows.cut_patches` does, in tiles that keep
each call within the variant's ``max_elements`` (:func:`~medinfer.windows.run_tiles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cpu_class import chosen_variant
from ..decision import in_domain
from ..errors import InferenceError, InputError
from ..manifest import Manifest
from ..model import Model
from ..windows import CENTRES_OUTPUT, SLICE_DOMAIN_OUTPUT, STRIDE_INPUT, crop, run_tiles

__all__ = ["CENTRES_OUTPUT", "SLICE_DOMAIN_OUTPUT", "STRIDE_INPUT", "SliceGrid", "SliceScores", "describe",
           "guards_every_window", "is_one_pass", "run_tiles", "score_centre", "score_centre_window", "score_slice",
           "score_slice_with_domain", "slice_variant_of"]


def slice_variant_of(manifest: Manifest, variant: str | None) -> str | None:
    """The whole-slice variant computing the windows of ``variant`` (None: the default; ``"auto"``: the patch
    variant the manifest prefers for this CPU) in one pass, if shipped — and, for a bundle with a domain guard, only
    one whose graph gives each window's domain score too (:func:`guards_every_window`)."""
    wanted = chosen_variant(variant, manifest.profile.variant_by_cpu)
    return next((k for k, v in manifest.variants.items()
                 if v.windows_of == wanted and v.inputs is not None and guards_every_window(manifest, k)), None)


def guards_every_window(manifest: Manifest, variant: str) -> bool:
    """Whether ``variant``'s graph gives each window the bundle's domain score (always true without a guard): a
    whole-slice graph that answers without its guard is not taken (patch by patch instead)."""
    if manifest.domain is None:
        return True
    outputs = manifest.variants[variant].outputs
    return outputs is None or any(o.name == manifest.domain.output for o in outputs)


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
    threshold = model.manifest.domain.threshold if model.manifest.domain is not None else float("inf")
    slice_score = max(tiles) if tiles else None
    return SliceScores(scores, labels, window_domain, in_domain(window_domain, threshold), slice_score,
                       None if slice_score is None else bool(in_domain(np.array([slice_score]), threshold)[0]))


def score_centre(model: Model, hu: np.ndarray, centre: tuple[int, int], fill: float) -> tuple[np.ndarray, list[str]]:
    """One window centred at ``centre``, through the whole-slice variant (a window-sized input: one window)."""
    got = score_centre_window(model, hu, centre, fill)
    return got.scores, got.labels


def score_centre_window(model: Model, hu: np.ndarray, centre: tuple[int, int], fill: float) -> SliceScores:
    """:func:`score_centre` with the window's domain score and flag (None without the variant's guard output; the
    window is the whole input, so the slice's answer is the window's)."""
    grid = SliceGrid.of(model)
    tile = crop(hu, centre[0] - grid.offset, centre[1] - grid.offset, grid.patch, grid.patch, fill)
    pred = model.predict({grid.image: tile[None, :, :, None], STRIDE_INPUT: np.array([grid.cells[0]], np.int64)})
    scores = np.asarray(pred.scores, np.float64).reshape(-1)
    labels = [str(x) for x in (pred.labels if pred.labels is not None else [""])]
    if pred.domain_scores is None:
        return SliceScores(scores, labels, None, None, None, None)
    domain = np.asarray(pred.domain_scores, np.float32).reshape(-1)
    threshold = model.manifest.domain.threshold if model.manifest.domain is not None else float("inf")
    flags = in_domain(domain, threshold)
    return SliceScores(scores, labels, domain, flags, float(domain.max()), bool(flags.all()))


def describe(model: Model) -> dict[str, Any]:
    """What the result should say about the one pass (for ``DicomPrediction.extra``)."""
    grid = SliceGrid.of(model)
    return {"one_pass": {"variant": model.variant, "windows_of": model.manifest.variants[model.variant].windows_of,
                         "cell_px": grid.cell, "window_px": grid.patch}}
