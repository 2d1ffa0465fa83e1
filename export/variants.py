"""Faster variants of a validated graph (static int8, ...) for the bundle (the session profile: profiles.py).

A variant ships only if its CLINICAL metrics on the held-out set stay within the spec's budget (``variant_budget``:
metric -> largest allowed loss vs the fp32 graph) and, for binary tasks, its sensitivity at the operating
threshold does not fall below the fp32 sensitivity's 95 % CI. A refused variant is reported, never shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from medinfer.integrity import outputs_digest
from medinfer.manifest import Variant

from ..train.artifact import calibration_indices
from ..train.spec import Dataset, ModelSpec, Progress, quiet
from . import parity
from .canonical import canonical_bytes
from .optimize import fold_window_into_quantize, static_int8

INT8_GOLDEN_ATOL = 1e-3


def _scores(spec: ModelSpec, session: Any, input_name: str, X: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    outs = parity.run_batched(session, input_name, X)
    return spec.scores(outs), outs


def _value(metrics: dict[str, Any], key: str) -> float | None:
    m = metrics["heldout"].get(key)
    return None if m is None else float(m["value"])


#: ``builder(spec, fp32 graph, input name, calibration samples, progress) -> (graph, description, golden atol)``;
#: raises ValueError when the rewrite cannot be made (the variant is then refused and reported).
VariantBuilder = Callable[[ModelSpec, bytes, str, np.ndarray, Progress], tuple[bytes, str, float]]
_BUILDERS: dict[str, VariantBuilder] = {}


def register_variant(kind: str, builder: VariantBuilder) -> None:
    """Register the builder of a variant kind a spec may list in ``variants`` (a kind is never overwritten)."""
    if kind in _BUILDERS and _BUILDERS[kind] is not builder:
        raise ValueError(f"a builder for variant kind {kind!r} is already registered")
    _BUILDERS[kind] = builder


def builders() -> dict[str, VariantBuilder]:
    """Every registered variant builder by kind (the modules that register one are imported here)."""
    from . import int8_nhwc_variant  # noqa: F401 - registers "int8_nhwc"

    return dict(_BUILDERS)


def static_int8_variant(spec: ModelSpec, model_bytes: bytes, input_name: str, calibration: np.ndarray,
                        progress: Progress) -> tuple[bytes, str, float]:
    """Static QDQ int8 (uint8 activations, per-channel int8 weights) calibrated on the training rows an artifact
    keeps, the input windows folded into the quantizer where the spec asks."""
    progress(f"[{spec.name}] static int8 (QDQ, per-channel) calibrated on {len(calibration)} training samples")
    data = static_int8(model_bytes, calibration, input_name,
                       exclude_name_prefixes=spec.int8_exclude_prefixes + ("domain_",))
    fold = spec.int8_fold_window
    if fold:
        try:
            data = fold_window_into_quantize(data, *fold)
        except ValueError as exc:
            raise ValueError(f"window folding failed: {exc}") from exc
    return data, ("static QDQ int8 (uint8 activations, per-channel int8 weights), calibrated on training samples"
                  + ("; input windows folded into one per-channel QuantizeLinear" if fold else "")), INT8_GOLDEN_ATOL


register_variant("int8", static_int8_variant)


VariantsBuilt = tuple[dict[str, Variant], dict[str, bytes], dict[str, Any], dict[str, dict[str, np.ndarray]]]


def build_variants(spec: ModelSpec, ds: Dataset, model_bytes: bytes, input_name: str, golden_x: Any,
                   threshold: float | None, progress: Progress = quiet, seed: int = 0) -> VariantsBuilt:
    """Make every variant the spec asks for; gate each on clinical metrics.

    Static int8 is calibrated on the training rows an artifact keeps (:func:`calibration_indices` with the training
    ``seed``), so exporting right after training and exporting the saved artifact give the same variant.

    Returns:
        (manifest variants, {file name: bytes}, report incl. refused variants, {variant: golden outputs}).
    """
    variants: dict[str, Variant] = {}
    files: dict[str, bytes] = {}
    report: dict[str, Any] = {}
    goldens: dict[str, dict[str, np.ndarray]] = {}
    wanted = spec.variants
    if not wanted:
        return variants, files, report, goldens
    base_session = parity.ort_session(model_bytes)
    base_scores, _ = _scores(spec, base_session, input_name, ds.X_test)
    base_metrics = spec.evaluate(base_scores, ds.y_test, ds.X_test, threshold)
    calibration = np.asarray(ds.X_train)[calibration_indices(len(ds.X_train), seed)]
    for kind in wanted:
        if kind in ("slice", "slice_int8"):
            continue  # the whole-slice graphs: export/slice.py, after the patch variants they compute
        builder = builders().get(kind)
        if builder is None:
            report[kind] = {"shipped": False, "reason": f"unknown variant kind {kind!r}"}
            continue
        try:
            data, description, golden_atol = builder(spec, model_bytes, input_name, calibration, progress)
        except ValueError as exc:  # a rewrite that cannot prove itself is refused, never shipped
            report[kind] = {"shipped": False, "reason": str(exc)}
            progress(f"[{spec.name}] {kind} variant REFUSED: {exc}")
            continue
        data = canonical_bytes(data, spec.name)  # the quantizer keeps set-ordered fields: same model, same bytes
        session = parity.ort_session(data)
        scores, _ = _scores(spec, session, input_name, ds.X_test)
        metrics = spec.evaluate(scores, ds.y_test, ds.X_test, threshold)
        delta = {k: _value(base_metrics, k) - _value(metrics, k)  # type: ignore[operator]
                 for k in base_metrics["heldout"] if _value(metrics, k) is not None}
        problems = [f"{k} loses {delta[k]:.4f} (budget {budget})"
                    for k, budget in spec.variant_budget.items() if k in delta and delta[k] > budget]
        sens = base_metrics["heldout"].get("sensitivity")
        if spec.task == "binary_classification" and sens and sens.get("ci95"):
            v_sens = _value(metrics, "sensitivity") or 0.0
            if v_sens < sens["ci95"][0]:
                problems.append(f"sensitivity {v_sens:.3f} below the fp32 CI lower bound {sens['ci95'][0]:.3f}")
        flips = int(np.sum(spec.decisions(scores, threshold) != spec.decisions(base_scores, threshold))) \
            if spec.task != "regression" else 0
        diff = float(np.max(np.abs(scores.astype(np.float64) - base_scores), initial=0.0))
        entry = {"accuracy_delta": delta, "max_abs_diff_vs_fp32": diff, "decision_flips_vs_fp32": flips,
                 "metrics": {k: v["value"] for k, v in metrics["heldout"].items()}}
        if problems:
            report[kind] = {"shipped": False, "reason": "; ".join(problems), **entry}
            progress(f"[{spec.name}] {kind} variant REFUSED: {'; '.join(problems)}")
            continue
        fetch = [spec.score_output]
        golden = dict(zip(fetch, session.run(fetch, {input_name: golden_x})))
        name = f"model.{kind}.onnx"
        files[name] = data
        goldens[kind] = golden
        variants[kind] = Variant(
            file=name, precision="int8", description=description,
            accuracy_delta={k: round(v, 6) for k, v in delta.items()},
            parity={"max_abs_diff_vs_fp32": diff, "decision_flips_vs_fp32": flips, "n": int(len(scores))},
            golden_digest=outputs_digest(golden, tuple(golden)),
            # int8 kernels differ between CPUs (VNNI vs AVX2 paths): a looser, stated tolerance for readiness
            golden_atol=max(spec.parity.atol, golden_atol),
        )
        report[kind] = {"shipped": True, **entry}
        progress(f"[{spec.name}] {kind} variant kept: max diff {diff:.3g}, {flips} decision flips, held-out "
                 "loss vs fp32 (fp32 - int8; negative = int8 better) "
                 + ", ".join(f"{k} {v:+.4f}" for k, v in delta.items()))
    return variants, files, report, goldens
