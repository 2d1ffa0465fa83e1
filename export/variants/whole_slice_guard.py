"""The domain guard of a whole-slice graph: the patch guard on every window, and one score for the slice, in the pass
that scores the windows (see :mod:`.whole_slice`).

Per window (``domain_score``, (K,), the score rows' order): the guard's parts read the patch statistics of
:mod:`medinfer.train.patch_stats`, which the slice graph computes for every window by average pooling
(:func:`medinfer.export.patch_stats_graph.window_stats`), so each window gets the patch graph's domain score. The
gate checks it against the fp32 patch graph's ``domain_score`` on the same windows.

Per slice (``domain_score_slice``, (1,)): the upper median of the scores of the windows that hold tissue (at least
``patch_stats.MIN_TISSUE`` of their pixels at or above -500 HU, like every training patch), or the largest window
score when none does. Above the manifest's domain threshold: at least half of the windows the model is meant to read
are out of the domain (a wrong rescale, another modality). A slice scored in several tiles gets one such score per
tile (``medinfer.tools.ct_slice.score_slice_with_domain`` takes the largest).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from medinfer.errors import InferenceError
from medinfer.manifest import TensorSpec
from medinfer.windows import CENTRES_OUTPUT, SLICE_DOMAIN_OUTPUT, STRIDE_INPUT, run_tiles, window_centres

from ...train import patch_stats
from ...train.domain import OUTPUT, DomainGuard
from ..domain_graph import _Builder, add_domain_output
from ..parity import DOMAIN_TOLERANCE
from ..patch_stats_graph import SOURCE_PREFIX, window_stats
from .whole_slice_graph import FcnError, Geometry

DOMAIN_OUTPUTS = (OUTPUT, SLICE_DOMAIN_OUTPUT)
TISSUE = patch_stats.NAMES.index("tissue_share")


def guard_outputs() -> tuple[TensorSpec, TensorSpec]:
    """The whole-slice variant's domain outputs, for its contract."""
    return (TensorSpec(DOMAIN_OUTPUTS[0], "float32", ("K",),
                       description="each window's domain score (the patch guard's on that window; in the domain when "
                                   "at most manifest.domain.threshold), in the score rows' order"),
            TensorSpec(DOMAIN_OUTPUTS[1], "float32", (1,),
                       description="the slice's domain score: the upper median of the windows that hold tissue (>= "
                                   f"{patch_stats.MIN_TISSUE:.0%} of pixels at or above -500 HU), the largest window "
                                   "score when none does; above manifest.domain.threshold: at least half of those "
                                   "windows are out of the domain"))


def add_slice_guard(data: bytes, guard: DomainGuard, input_name: str, geo: Geometry) -> bytes:
    """``data`` (a whole-slice graph) with the guard's outputs :data:`DOMAIN_OUTPUTS` added.

    Raises:
        FcnError: a part reads something the one pass does not compute per window (only the patch statistics).
    """
    import onnx

    onx = onnx.load_from_string(data)
    b = _Builder(onx)
    stats: str | None = None
    sources: dict[str, str] = {}
    for part in guard.parts:
        for src in (part.source, *part.more):
            mapped = guard.sources.get(src, src)
            if not mapped.startswith(SOURCE_PREFIX):
                raise FcnError(f"part {part.label!r} reads {mapped!r}, which the one pass does not compute per window "
                               "(only the patch statistics)")
            if stats is None:
                stats = window_stats(b, input_name, geo.patch, geo.cell, STRIDE_INPUT)
            sources[src] = stats
    if stats is None:
        raise FcnError("the guard has no parts")
    windows = add_domain_output(onx, DomainGuard(guard.parts, guard.method, guard.features, sources),
                                DOMAIN_OUTPUTS[0], rows="K", builder=b)
    _slice_score(b, windows, stats)
    onnx.checker.check_model(onx)
    return bytes(onx.SerializeToString())


def _slice_score(b: Any, windows: str, stats: str) -> None:
    from onnx import TensorProto

    tissue = b.node("Reshape", [b.node("Gather", [stats, b.const([TISSUE], "tissue_col", np.int64)], "tissue",
                                       axis=1), b.const([-1], "flat", np.int64)], "tissue_share")
    holds = b.node("GreaterOrEqual", [tissue, b.const(patch_stats.MIN_TISSUE, "min_tissue")], "holds_tissue")
    masked = b.node("Where", [holds, windows, b.const(-1.0, "minus_one")], "masked")
    count = b.reduce("ReduceSum", b.node("Cast", [holds], "holds_int", to=TensorProto.INT64), 0)
    k = b.node("Reshape", [b.node("Add", [b.node("Div", [count, b.const(2, "two", np.int64)], "half"),
                                          b.const(1, "one_int", np.int64)], "upper"),
                           b.const([1], "one_dim", np.int64)], "k")
    top, unused = b.name("top"), b.name("top_index")
    b.graph.node.append(b.helper.make_node("TopK", [masked, k], [top, unused], name=top, axis=0, largest=1,
                                           sorted=1))
    median = b.reduce("ReduceMin", top, 0, keepdims=1)
    largest = b.reduce("ReduceMax", windows, 0, keepdims=1)
    any_tissue = b.node("Greater", [count, b.const(0, "zero_int", np.int64)], "any_tissue")
    b.graph.node.append(b.helper.make_node("Where", [any_tissue, median, largest], [DOMAIN_OUTPUTS[1]],
                                           name=DOMAIN_OUTPUTS[1]))
    b.graph.output.append(b.helper.make_tensor_value_info(DOMAIN_OUTPUTS[1], TensorProto.FLOAT, [1]))


def slice_score(window_scores: np.ndarray, tissue_share: np.ndarray) -> float:
    """The native reference of ``domain_score_slice`` for windows with these scores and tissue shares."""
    scores = np.asarray(window_scores, np.float64)
    holds = np.asarray(tissue_share) >= patch_stats.MIN_TISSUE
    if not holds.any():
        return float(scores.max())
    chosen = np.sort(scores[holds])[::-1]
    return float(chosen[len(chosen) // 2])


def _domain_run(session: Any, input_name: str, k: np.ndarray, slices: list[float]) -> Any:
    """A ``run_tiles`` callback giving each tile's window domain scores (and keeping its slice score)."""

    def run(tile: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
        got = session.run([CENTRES_OUTPUT, *DOMAIN_OUTPUTS], {input_name: tile[None, :, :, None], STRIDE_INPUT: k})
        if len(got[1]) != len(got[0]):
            raise InferenceError(f"'{OUTPUT}' has {len(got[1])} rows for {len(got[0])} windows")
        slices.append(float(got[2][0]))
        return got[1], got[0], None

    return run


def gate_guard(session: Any, input_name: str, images: dict[str, np.ndarray], strides: list[int], geo: Geometry,
               max_elements: int, fill: float, references: dict[tuple[str, int], np.ndarray],
               patches: dict[tuple[str, int], np.ndarray], kind: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Compare the variant's window and slice domain scores with the fp32 patch graph's on the same windows.

    Returns:
        ({set name: report fields}, failures).
    """
    tol = DOMAIN_TOLERANCE
    sets: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for (name, stride), ref in references.items():
        image = images[name]
        slices: list[float] = []
        run = _domain_run(session, input_name, np.array([stride // geo.cell], np.int64), slices)
        where = f"{name} @ {stride} px"
        try:
            got, _ = run_tiles(image, window_centres(image.shape, stride), stride, geo.patch, geo.offset,
                               max_elements, fill, run, kind)
        except InferenceError as exc:
            failures.append(f"{where}: {exc}")
            sets[where] = {}
            continue
        diff = np.abs(got - np.asarray(ref, np.float64).reshape(-1))
        bad = int(np.sum(~(diff <= tol.atol + tol.rtol * np.abs(ref.reshape(-1)))))
        entry: dict[str, Any] = {f"{OUTPUT}_max_abs_diff": float(diff.max(initial=0.0))}
        if bad:
            failures.append(f"{where}: '{OUTPUT}' per window differs from the patch graph's by up to "
                            f"{entry[f'{OUTPUT}_max_abs_diff']:.3g} on {bad} of {len(diff)} windows")
        if len(slices) == 1:  # one tile: the slice score covers every window
            want = slice_score(ref.reshape(-1), patch_stats.features(patches[(name, stride)])[:, TISSUE])
            entry[f"{DOMAIN_OUTPUTS[1]}_abs_diff"] = abs(slices[0] - want)
            if not abs(slices[0] - want) <= tol.atol + tol.rtol * abs(want):
                failures.append(f"{where}: '{DOMAIN_OUTPUTS[1]}' is {slices[0]:.6g}, the windows' upper median "
                                f"{want:.6g}")
        sets[where] = entry
    return sets, failures
