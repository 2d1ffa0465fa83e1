"""The whole-slice variants of a CT patch classifier (``"slice"``, ``"slice_int8"`` in a spec's ``variants``).

Each is the patch graph rewritten as one convolutional pass over a whole slice (:mod:`.fcn`); ``slice_int8`` is
the same rewrite quantised like the ``int8`` variant (static QDQ, calibrated on the same training patches, the CT
windows folded into the input quantizer). Each ships only through its own parity gate: on held-out slices (the
spec's :meth:`~medinfer.train.spec.ModelSpec.parity_slices`, plus mosaics of held-out patches, whose windows
straddle patch borders) at every gate stride, its window scores are compared with patch-by-patch predictions of
the fp32 patch graph at the same centres (the DICOM path's grid, air outside the slice): max abs diff within the
variant's tolerance and no decision flips at the operating threshold. A variant that fails is reported and not
shipped (the patch path stays), and ``slice_int8`` needs the ``int8`` variant (same numbers, same clinical gate).

When the patch model has a domain guard (``VariantJob.guard``), each whole-slice graph carries it too
(:mod:`.whole_slice_guard`): the guard's score of every window (``domain_score``, (K,)) and of the slice
(``domain_score_slice``, (1,)), in the same pass, gated like the scores: per window against the fp32 patch graph's
own ``domain_score`` at the same centres. A guard the slice pass cannot compute refuses the variant (no graph that
answers ships without its guard).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from medinfer.integrity import outputs_digest, variant_contract_digest
from medinfer.manifest import TensorSpec, Variant
from medinfer.samples import Pair
from medinfer.session import cpu_session, session_for_batch
from medinfer.windows import CENTRES_OUTPUT, STRIDE_INPUT, cut_patches, run_tiles, window_centres

from ...train.spec import Dataset, ModelSpec, ParityTolerance, Progress
from ...train.variants import Int8, WholeSlice
from .. import parity
from ..optimize import fold_window_into_quantize, static_int8
from . import VariantJob, VariantsBuilt, register_variant, settings
from .whole_slice_graph import FcnError, Geometry, fcn_graph
from .whole_slice_guard import DOMAIN_OUTPUTS, add_slice_guard, gate_guard, guard_outputs

SLICE_KINDS = ("slice", "slice_int8")
MOSAIC = 3  # held-out patches per mosaic side
GOLDEN_SIDE = 2  # golden patches per side of the golden slice


def _mosaic(patches: np.ndarray, side: int) -> np.ndarray:
    """``side x side`` patches (N, P, P, 1) tiled into one (side*P, side*P) image."""
    p = patches.shape[1]
    rows = [np.concatenate([patches[r * side + c, :, :, 0] for c in range(side)], axis=1) for r in range(side)]
    return np.concatenate(rows, axis=0).reshape(side * p, side * p).astype(np.float32)


def gate_images(spec: ModelSpec, ds: Dataset) -> dict[str, np.ndarray]:
    """Held-out slices (the spec's) and mosaics of held-out patches, by name."""
    images = {f"slice {k}": np.asarray(v, np.float32) for k, v in spec.parity_slices(ds).items()}
    X = np.asarray(ds.X_test, np.float32)
    for m in range(min(2, len(X) // MOSAIC ** 2)):
        images[f"mosaic of held-out patches {m * MOSAIC ** 2}..{(m + 1) * MOSAIC ** 2 - 1}"] = \
            _mosaic(X[m * MOSAIC ** 2:(m + 1) * MOSAIC ** 2], MOSAIC)
    return images


def _fill(spec_in: TensorSpec) -> float:
    dicom = (spec_in.facts or {}).get("dicom", {})
    lo = (dicom.get("clip_hu") or spec_in.range or (-1024.0, 3071.0))[0]
    return float(lo)


def slice_contract(spec_in: TensorSpec, outputs: tuple[TensorSpec, ...], score_output: str, geo: Geometry,
                   cells: tuple[int, int], guarded: bool = False
                   ) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The whole-slice variant's inputs and outputs, derived from the patch model's (and the guard's per window and
    per slice when ``guarded``)."""
    facts = {**(spec_in.facts or {}), "patch": [geo.patch, geo.patch], "cell": geo.cell, "window_offset": geo.offset}
    image = dataclasses.replace(
        spec_in, shape=(1, "H", "W", spec_in.shape[-1]), facts=facts,
        description=f"a whole image in {spec_in.units or 'the patch units'}: windows of {geo.patch}x{geo.patch} px "
                    f"every {geo.cell} x stride_cells px, each fully inside it (pad the image to score its borders)")
    stride = TensorSpec(STRIDE_INPUT, "int64", (1,), range=(float(cells[0]), float(cells[1])), units="cells",
                        description=f"window stride in cells of {geo.cell} px (the convolution stages' stride)")
    score = next(o for o in outputs if o.name == score_output)
    scores = dataclasses.replace(score, shape=("K", 1), description=f"{score.description}; one row per window, "
                                 "row-major over the window grid")
    centres = TensorSpec(CENTRES_OUTPUT, "int64", ("K", 2), units="px",
                         description="each window's centre (row, col) in input pixels")
    return (image, stride), (scores, centres, *(guard_outputs() if guarded else ()))


def _slice_run(session: Any, input_name: str, k: int, score_output: str) -> Any:
    feed_k = np.array([k], np.int64)

    def run(tile: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
        got = dict(zip([score_output, CENTRES_OUTPUT],
                       session.run([score_output, CENTRES_OUTPUT], {input_name: tile[None, :, :, None],
                                                                    STRIDE_INPUT: feed_k})))
        return got[score_output].reshape(-1), got[CENTRES_OUTPUT], None
    return run


@dataclass
class _Gate:
    """What every whole-slice variant is gated on: held-out images, the strides, and the fp32 patch graph's
    patch-by-patch scores at each image's window centres (the reference), computed once for all kinds; with a
    guard, the patches and the patch graph's domain scores too."""

    images: dict[str, np.ndarray]
    strides: list[int]
    refs: dict[tuple[str, int], np.ndarray]
    fill: float
    patches: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    domain_refs: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)


def _reference(spec: ModelSpec, ds: Dataset, model_bytes: bytes, input_name: str, geo: Geometry,
               options: WholeSlice, progress: Progress, guarded: bool = False) -> _Gate:
    strides = [s for s in options.strides if s % geo.cell == 0]
    fill = _fill(spec.inputs(ds)[0])
    images = gate_images(spec, ds)
    reference = parity.ort_session(model_bytes)
    progress(f"[{spec.name}] slice variants: reference patch-by-patch scores on {len(images)} held-out images at "
             f"strides {strides} px")
    gate = _Gate(images, strides, {}, fill)
    for name, image in images.items():
        for stride in strides:
            patches = cut_patches(image, window_centres(image.shape, stride), geo.patch, fill)
            ref = parity.run_batched(reference, input_name, patches, 64)
            gate.refs[(name, stride)] = ref[spec.score_output]
            if guarded:
                gate.patches[(name, stride)], gate.domain_refs[(name, stride)] = patches, ref[DOMAIN_OUTPUTS[0]]
    return gate


def _graph(job: VariantJob, kind: str, draft: Variant, geo: Geometry) -> bytes:
    """The whole-slice graph of ``kind``: the rewrite, quantised like ``int8`` for ``slice_int8``, with the domain
    guard when the patch graph has one.

    Raises:
        FcnError: the guard reads something the one pass does not compute per window.
    """
    spec, meta = job.spec, {"medinfer.variant_contract_sha256": variant_contract_digest(draft)}
    data, _ = fcn_graph(job.graph, input_name=job.input_name, score_output=spec.score_output, metadata=meta)
    if kind == "slice_int8":
        int8 = settings(spec, "int8", Int8())
        job.progress(f"[{spec.name}] slice_int8: static int8 of the whole-slice graph, calibrated like int8")
        data = static_int8(data, np.asarray(job.dataset.X_train), job.input_name,
                           exclude_name_prefixes=int8.exclude_prefixes,
                           extra_feeds={STRIDE_INPUT: np.array([1], np.int64)})
        if int8.fold_window:
            data = fold_window_into_quantize(data, *int8.fold_window)
    if job.guard is not None:  # added last: the guard stays fp32 and is never quantized
        data = add_slice_guard(data, job.guard, job.input_name, geo)
    return data


def _gate_one(job: VariantJob, kind: str, session: Any, geo: Geometry, gate: _Gate, options: WholeSlice
              ) -> tuple[dict[str, Any], list[str]]:
    """Every gate image at every stride through ``session``, compared with the reference: (entry, failures)."""
    spec = job.spec
    tol = spec.parity if kind == "slice" else ParityTolerance(atol=options.int8_atol, rtol=0.0,
                                                              max_decision_flips=spec.parity.max_decision_flips)
    sets, failures = {}, []
    for (name, stride), ref in gate.refs.items():
        image = gate.images[name]
        got, _ = run_tiles(image, window_centres(image.shape, stride), stride, geo.patch, geo.offset,
                           options.max_elements, gate.fill, _slice_run(session, job.input_name, stride // geo.cell,
                                                                       spec.score_output), kind)
        score = {spec.score_output: got.astype(np.float32)[:, None]}
        sub, fails = parity.compare(spec, {spec.score_output: ref}, score, f"{name} @ {stride} px", job.threshold, tol)
        sets[f"{name} @ {stride} px"] = sub
        failures += fails
    if job.guard is not None:
        guard_sets, guard_failures = gate_guard(session, job.input_name, gate.images, gate.strides, geo,
                                                options.max_elements, gate.fill, gate.domain_refs, gate.patches, kind)
        for key, sub in guard_sets.items():
            sets[key].update(sub)
        failures += guard_failures
    entry = {"tolerance": {"atol": tol.atol, "max_decision_flips": tol.max_decision_flips},
             "reference": "patch-by-patch, fp32 patch graph, same centres", "strides_px": gate.strides,
             "windows": int(sum(len(r) for r in gate.refs.values())),
             "max_abs_diff": max((v.get(f"{spec.score_output}_max_abs_diff", 0.0) for v in sets.values()), default=0.0),
             "decision_flips": sum(v.get("decision_flips", 0) for v in sets.values()), "sets": sets}
    return entry, failures


@register_variant(*SLICE_KINDS)
def build_slice_variants(job: VariantJob, kinds: list[str]) -> VariantsBuilt:
    """Make and gate the whole-slice variants ``kinds`` (see the module docstring); each needs the variant whose
    windows it computes (``default`` / ``int8``) among ``job.shipped``.

    Returns:
        (manifest variants, {file: bytes}, report incl. refused variants, {variant: (its golden inputs, outputs)}).
    """
    spec, ds, progress = job.spec, job.dataset, job.progress
    variants: dict[str, Variant] = {}
    out_files: dict[str, bytes] = {}
    report: dict[str, Any] = {}
    goldens: dict[str, Pair] = {}
    options = settings(spec, "slice", WholeSlice())
    spec_in = spec.inputs(ds)[0]
    try:
        _, geo = fcn_graph(job.graph, input_name=job.input_name, score_output=spec.score_output)
    except FcnError as exc:
        progress(f"[{spec.name}] slice variants REFUSED: {exc}")
        return {}, {}, {kind: {"shipped": False, "reason": f"no whole-slice graph: {exc}"} for kind in kinds}, {}
    inputs, outputs = slice_contract(spec_in, spec.outputs() + spec.extra_outputs(), spec.score_output, geo,
                                     options.cells, guarded=job.guard is not None)
    gate = _reference(spec, ds, job.graph, job.input_name, geo, options, progress, guarded=job.guard is not None)
    for kind in kinds:
        of = "default" if kind == "slice" else "int8"
        if of not in job.shipped:
            report[kind] = {"shipped": False, "reason": f"the {of!r} variant it computes in one pass was not shipped"}
            progress(f"[{spec.name}] {kind} variant REFUSED: no {of} variant")
            continue
        draft = Variant(file=f"model.{kind.replace('_', '.')}.onnx", precision="fp32" if kind == "slice" else "int8",
                        inputs=inputs, outputs=outputs, windows_of=of, max_elements=options.max_elements)
        try:
            data = _graph(job, kind, draft, geo)
        except FcnError as exc:
            report[kind] = {"shipped": False, "reason": f"its domain guard: {exc}"}
            progress(f"[{spec.name}] {kind} variant REFUSED: {exc}")
            continue
        session = cpu_session(data, session_for_batch(job.profile, 1).profile)  # one slice per run: batch 1
        entry, failures = _gate_one(job, kind, session, geo, gate, options)
        if failures:
            report[kind] = {"shipped": False, "reason": "; ".join(failures[:3]), **entry}
            progress(f"[{spec.name}] {kind} variant REFUSED by its gate: {failures[0]}")
            continue
        feeds, golden = _golden(job, gate, session, outputs, options)
        variants[kind] = dataclasses.replace(
            draft, description=f"the {of} graph over a whole slice in one convolutional pass (windows every "
            f"{geo.cell} x stride_cells px)" + ("; static QDQ int8 as the int8 variant" if of == "int8" else ""),
            parity=entry, golden_digest=outputs_digest(golden, tuple(golden)),
            golden_atol=spec.parity.atol if kind == "slice" else (job.shipped[of].golden_atol or spec.parity.atol))
        out_files[draft.file], goldens[kind], report[kind] = data, (feeds, golden), {"shipped": True, **entry}
        progress(f"[{spec.name}] {kind} variant kept: max diff {entry['max_abs_diff']:.3g} vs patch-by-patch fp32 "
                 f"over {entry['windows']} windows, {entry['decision_flips']} decision flips")
    return variants, out_files, report, goldens


def _golden(job: VariantJob, gate: _Gate, session: Any, outputs: tuple[TensorSpec, ...],
            options: WholeSlice) -> Pair:
    """The golden slice (a mosaic of the golden patches, else a gate image) at a stride inside the cell range, and
    what the variant's graph answers for it: its scores and centres (the domain guard's outputs are gated at export
    with the guard's own tolerance and, like the patch graph's ``domain_score``, are not golden outputs: the device's
    self-test compares goldens within the score's tolerance)."""
    X = job.dataset.X_test
    image = _mosaic(np.asarray(X[:GOLDEN_SIDE ** 2], np.float32), GOLDEN_SIDE) if len(X) >= GOLDEN_SIDE ** 2 \
        else next(iter(gate.images.values()))
    low, high = options.cells
    feeds = {job.input_name: image[None, :, :, None], STRIDE_INPUT: np.array([low + 1 if high > low else low],
                                                                             np.int64)}
    names = [o.name for o in outputs if o.name not in DOMAIN_OUTPUTS]
    return feeds, dict(zip(names, session.run(names, feeds)))
