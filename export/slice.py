"""The whole-slice variants of a CT patch classifier (``"slice"``, ``"slice_int8"`` in a spec's ``variants``).

Each is the patch graph rewritten as one convolutional pass over a whole slice (:mod:`.fcn`); ``slice_int8`` is
the same rewrite quantised like the ``int8`` variant (static QDQ, calibrated on the same training patches, the CT
windows folded into the input quantizer). Each ships only through its own parity gate: on held-out slices (the
spec's :meth:`~medinfer.train.spec.ModelSpec.parity_slices`, plus mosaics of held-out patches, whose windows
straddle patch borders) at every gate stride, its window scores are compared with patch-by-patch predictions of
the fp32 patch graph at the same centres (the DICOM path's grid, air outside the slice): max abs diff within the
variant's tolerance and no decision flips at the operating threshold. A variant that fails is reported and not
shipped (the patch path stays), and ``slice_int8`` needs the ``int8`` variant (same numbers, same clinical gate).

When the patch model has a domain guard, each whole-slice graph carries it too (:mod:`.slice_guard`): the guard's
score of every window (``domain_score``, (K,)) and of the slice (``domain_score_slice``, (1,)), in the same pass,
gated like the scores: per window against the fp32 patch graph's own ``domain_score`` at the same centres. A guard
the slice pass cannot compute refuses the variant (no graph that answers ships without its guard).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from medinfer.integrity import outputs_digest, variant_contract_digest
from medinfer.manifest import SessionProfile, TensorSpec, Variant
from medinfer.session import cpu_session
from medinfer.tools.ct_slice import CENTRES_OUTPUT, STRIDE_INPUT, run_tiles
from medinfer.tools.dicom import cut_patches, window_centres

from ..train.domain import DomainGuard
from ..train.spec import Dataset, ModelSpec, ParityTolerance, Progress, quiet
from . import parity
from .fcn import FcnError, Geometry, fcn_graph
from .optimize import fold_window_into_quantize, static_int8
from .slice_guard import DOMAIN_OUTPUTS, add_slice_guard, gate_guard, guard_outputs

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


def build_slice_variants(spec: ModelSpec, ds: Dataset, model_bytes: bytes, shipped: dict[str, Variant],
                         profile: SessionProfile, threshold: float | None,
                         progress: Progress = quiet, guard: DomainGuard | None = None
                         ) -> tuple[dict[str, Variant], dict[str, bytes], dict[str, Any],
                                    dict[str, dict[str, np.ndarray]]]:
    """Make and gate the whole-slice variants the spec asks for (each with ``guard``, the patch graph's domain guard,
    per window and per slice, when there is one).

    Returns:
        (manifest variants, {file: bytes}, report incl. refused variants, each shipped variant's golden inputs and
        outputs as ``{variant: {"in.<name>" | "out.<name>": array}}``).
    """
    wanted = [k for k in spec.variants if k in SLICE_KINDS]
    variants: dict[str, Variant] = {}
    out_files: dict[str, bytes] = {}
    report: dict[str, Any] = {}
    goldens: dict[str, dict[str, np.ndarray]] = {}
    if not wanted:
        return variants, out_files, report, goldens
    spec_in = spec.inputs(ds)[0]
    input_name, score_output = spec_in.name, spec.score_output
    try:
        probe, geo = fcn_graph(model_bytes, input_name=input_name, score_output=score_output)
    except FcnError as exc:
        for kind in wanted:
            report[kind] = {"shipped": False, "reason": f"no whole-slice graph: {exc}"}
        progress(f"[{spec.name}] slice variants REFUSED: {exc}")
        return variants, out_files, report, goldens
    del probe
    strides = [s for s in spec.slice_strides if s % geo.cell == 0]
    inputs, outputs = slice_contract(spec_in, spec.outputs() + spec.extra_outputs(), score_output, geo,
                                     spec.slice_cells, guarded=guard is not None)
    fill = _fill(spec_in)
    images = gate_images(spec, ds)
    reference = parity.ort_session(model_bytes)
    refs: dict[tuple[str, int], np.ndarray] = {}
    patches: dict[tuple[str, int], np.ndarray] = {}
    domain_refs: dict[tuple[str, int], np.ndarray] = {}
    progress(f"[{spec.name}] slice variants: reference patch-by-patch scores on {len(images)} held-out images at "
             f"strides {strides} px")
    for name, image in images.items():
        for stride in strides:
            centres = window_centres(image.shape, stride)
            patches[(name, stride)] = cut_patches(image, centres, geo.patch, fill)
            ref = parity.run_batched(reference, input_name, patches[(name, stride)], 64)
            refs[(name, stride)] = ref[score_output]
            if guard is not None:
                domain_refs[(name, stride)] = ref[DOMAIN_OUTPUTS[0]]
    golden_image = _mosaic(np.asarray(ds.X_test[:GOLDEN_SIDE ** 2], np.float32), GOLDEN_SIDE) \
        if len(ds.X_test) >= GOLDEN_SIDE ** 2 else next(iter(images.values()))
    golden_k = spec.slice_cells[0] + 1 if spec.slice_cells[1] > spec.slice_cells[0] else spec.slice_cells[0]
    for kind in wanted:
        of = "default" if kind == "slice" else "int8"
        if of not in shipped:
            report[kind] = {"shipped": False, "reason": f"the {of!r} variant it computes in one pass was not shipped"}
            progress(f"[{spec.name}] {kind} variant REFUSED: no {of} variant")
            continue
        draft = Variant(file=f"model.{kind.replace('_', '.')}.onnx", precision="fp32" if kind == "slice" else "int8",
                        inputs=inputs, outputs=outputs, windows_of=of, max_elements=spec.slice_max_elements)
        meta = {"medinfer.variant_contract_sha256": variant_contract_digest(draft)}
        data, _ = fcn_graph(model_bytes, input_name=input_name, score_output=score_output, metadata=meta)
        if kind == "slice_int8":
            progress(f"[{spec.name}] slice_int8: static int8 of the whole-slice graph, calibrated like int8")
            data = static_int8(data, np.asarray(ds.X_train), input_name,
                               exclude_name_prefixes=spec.int8_exclude_prefixes,
                               extra_feeds={STRIDE_INPUT: np.array([1], np.int64)})
            if spec.int8_fold_window:
                data = fold_window_into_quantize(data, *spec.int8_fold_window)
        if guard is not None:  # added last: the guard stays fp32 and is never quantized
            try:
                data = add_slice_guard(data, guard, input_name, geo)
            except FcnError as exc:
                report[kind] = {"shipped": False, "reason": f"its domain guard: {exc}"}
                progress(f"[{spec.name}] {kind} variant REFUSED: {exc}")
                continue
        tol = spec.parity if kind == "slice" else ParityTolerance(atol=spec.slice_int8_atol, rtol=0.0,
                                                                  max_decision_flips=spec.parity.max_decision_flips)
        session = cpu_session(data, dataclasses.replace(profile, large_batch={}, large_batch_from=0))
        sets, failures = {}, []
        for (name, stride), ref in refs.items():
            image = images[name]
            got, _ = run_tiles(image, window_centres(image.shape, stride), stride, geo.patch, geo.offset,
                               spec.slice_max_elements, fill, _slice_run(session, input_name, stride // geo.cell,
                                                                         score_output), kind)
            sub, fails = parity.compare(spec, {score_output: ref}, {score_output: got.astype(np.float32)[:, None]},
                                        f"{name} @ {stride} px", threshold, tol)
            sets[f"{name} @ {stride} px"] = sub
            failures += fails
        if guard is not None:
            guard_sets, guard_failures = gate_guard(session, input_name, images, strides, geo, spec.slice_max_elements,
                                                   fill, domain_refs, patches, kind)
            for key, sub in guard_sets.items():
                sets[key].update(sub)
            failures += guard_failures
        worst = max((v.get(f"{score_output}_max_abs_diff", 0.0) for v in sets.values()), default=0.0)
        flips = sum(v.get("decision_flips", 0) for v in sets.values())
        entry = {"tolerance": {"atol": tol.atol, "max_decision_flips": tol.max_decision_flips},
                 "reference": "patch-by-patch, fp32 patch graph, same centres", "strides_px": strides,
                 "windows": int(sum(len(r) for r in refs.values())), "max_abs_diff": worst, "decision_flips": flips,
                 "sets": sets}
        if failures:
            report[kind] = {"shipped": False, "reason": "; ".join(failures[:3]), **entry}
            progress(f"[{spec.name}] {kind} variant REFUSED by its gate: {failures[0]}")
            continue
        feeds = {input_name: golden_image[None, :, :, None], STRIDE_INPUT: np.array([golden_k], np.int64)}
        golden = dict(zip([o.name for o in outputs], session.run([o.name for o in outputs], feeds)))
        variants[kind] = dataclasses.replace(
            draft, description=f"the {of} graph over a whole slice in one convolutional pass (windows every "
            f"{geo.cell} x stride_cells px)" + ("; static QDQ int8 as the int8 variant" if of == "int8" else ""),
            parity=entry, golden_digest=outputs_digest(golden, tuple(golden)),
            golden_atol=spec.parity.atol if kind == "slice" else (shipped[of].golden_atol or spec.parity.atol))
        out_files[draft.file] = data
        goldens[kind] = {**{f"in.{k}": v for k, v in feeds.items()}, **{f"out.{k}": v for k, v in golden.items()}}
        report[kind] = {"shipped": True, **entry}
        progress(f"[{spec.name}] {kind} variant kept: max diff {worst:.3g} vs patch-by-patch fp32 over "
                 f"{entry['windows']} windows, {flips} decision flips")
    return variants, out_files, report, goldens
