"""The ``int8`` variant: static QDQ int8 of the validated graph (uint8 activations, per-channel int8 weights).

It ships only if its CLINICAL metrics on the held-out set stay within the spec's budget (``variant_budget``:
metric -> largest allowed loss vs the fp32 graph) and, for binary tasks, its sensitivity at the operating
threshold does not fall below the fp32 sensitivity's 95 % CI. A refused variant is reported, never shipped.
Settings: the spec's ``variant_settings["int8"]`` (:class:`medinfer.train.variants.Int8`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from medinfer.integrity import outputs_digest
from medinfer.manifest import Variant

from ...train.artifact import calibration_indices
from ...train.spec import Dataset, ModelSpec, Progress, quiet
from ...train.variants import Int8
from .. import parity
from ..canonical import canonical_bytes
from ..optimize import fold_window_into_quantize, static_int8
from . import VariantJob, VariantsBuilt, register_variant, settings

INT8_GOLDEN_ATOL = 1e-3
FILE = "model.int8.onnx"


def _scores(spec: ModelSpec, data: bytes, input_name: str, X: Any) -> np.ndarray:
    return spec.scores(parity.run_batched(parity.ort_session(data), input_name, X))


def _value(metrics: dict[str, Any], key: str) -> float | None:
    m = metrics["heldout"].get(key)
    return None if m is None else float(m["value"])


@register_variant("int8")
def _build(job: VariantJob, kinds: list[str]) -> VariantsBuilt:
    return build_int8(job.spec, job.dataset, job.graph, job.input_name, job.golden_x, job.threshold, job.progress,
                      seed=job.seed)


def quantize(spec: ModelSpec, ds: Dataset, model_bytes: bytes, input_name: str, seed: int = 0,
             progress: Progress = quiet) -> bytes:
    """The static int8 graph, calibrated on the training rows an artifact keeps (:func:`calibration_indices` with
    the training ``seed``: exporting right after training and exporting the saved artifact give the same bytes).

    Raises:
        ValueError: the spec's input window cannot be folded into the quantizer.
    """
    options = settings(spec, "int8", Int8())
    calibration = np.asarray(ds.X_train)[calibration_indices(len(ds.X_train), seed)]
    progress(f"[{spec.name}] static int8 (QDQ, per-channel) calibrated on {len(calibration)} training samples")
    data = static_int8(model_bytes, calibration, input_name, exclude_name_prefixes=options.exclude_prefixes
                       + ("domain_",))
    if options.fold_window:
        data = fold_window_into_quantize(data, *options.fold_window)
    return canonical_bytes(data, spec.name)  # the quantizer keeps set-ordered fields: same model, same bytes


def clinical_gate(spec: ModelSpec, ds: Dataset, base: np.ndarray, scores: np.ndarray,
                  threshold: float | None) -> tuple[list[str], dict[str, Any]]:
    """The variant's held-out metrics against the fp32 graph's: (problems, report entry)."""
    base_metrics = spec.evaluate(base, ds.y_test, ds.X_test, threshold)
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
    flips = int(np.sum(spec.decisions(scores, threshold) != spec.decisions(base, threshold))) \
        if spec.task != "regression" else 0
    diff = float(np.max(np.abs(scores.astype(np.float64) - base), initial=0.0))
    return problems, {"accuracy_delta": delta, "max_abs_diff_vs_fp32": diff, "decision_flips_vs_fp32": flips,
                      "metrics": {k: v["value"] for k, v in metrics["heldout"].items()}}


def build_int8(spec: ModelSpec, ds: Dataset, model_bytes: bytes, input_name: str, golden_x: Any,
               threshold: float | None, progress: Progress = quiet, seed: int = 0) -> VariantsBuilt:
    """Make the int8 variant and gate it on clinical metrics (see the module docstring).

    Returns:
        (manifest variants, {file name: bytes}, report incl. a refused variant, {variant: ({}, golden outputs)}).
    """
    try:
        data = quantize(spec, ds, model_bytes, input_name, seed, progress)
    except ValueError as exc:
        progress(f"[{spec.name}] int8 variant REFUSED: window folding failed: {exc}")
        return {}, {}, {"int8": {"shipped": False, "reason": f"window folding failed: {exc}"}}, {}
    scores = _scores(spec, data, input_name, ds.X_test)
    problems, entry = clinical_gate(spec, ds, _scores(spec, model_bytes, input_name, ds.X_test), scores, threshold)
    if problems:
        progress(f"[{spec.name}] int8 variant REFUSED: {'; '.join(problems)}")
        return {}, {}, {"int8": {"shipped": False, "reason": "; ".join(problems), **entry}}, {}
    fetch = [spec.score_output]
    golden = dict(zip(fetch, parity.ort_session(data).run(fetch, {input_name: golden_x})))
    folded = bool(settings(spec, "int8", Int8()).fold_window)
    variant = Variant(
        file=FILE, precision="int8", description="static QDQ int8 (uint8 activations, per-channel int8 weights), "
        "calibrated on training samples" + ("; input windows folded into one per-channel QuantizeLinear"
                                            if folded else ""),
        accuracy_delta={k: round(v, 6) for k, v in entry["accuracy_delta"].items()},
        parity={"max_abs_diff_vs_fp32": entry["max_abs_diff_vs_fp32"],
                "decision_flips_vs_fp32": entry["decision_flips_vs_fp32"], "n": int(len(scores))},
        golden_digest=outputs_digest(golden, tuple(golden)),
        # int8 kernels differ between CPUs (VNNI vs AVX2 paths): a looser, stated tolerance for readiness
        golden_atol=max(spec.parity.atol, INT8_GOLDEN_ATOL))
    progress(f"[{spec.name}] int8 variant kept: max diff {entry['max_abs_diff_vs_fp32']:.3g}, "
             f"{entry['decision_flips_vs_fp32']} decision flips, held-out loss vs fp32 (fp32 - int8; negative = int8 "
             "better) " + ", ".join(f"{k} {v:+.4f}" for k, v in entry["accuracy_delta"].items()))
    return {"int8": variant}, {FILE: data}, {"int8": {"shipped": True, **entry}}, {"int8": ({}, golden)}
