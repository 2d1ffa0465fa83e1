"""The clinical gate every patch variant passes (``int8``, ``int8_nhwc``, ...): one function, one rule.

A variant ships only if its CLINICAL metrics on the held-out set stay within the spec's budget (``variant_budget``:
metric -> largest allowed loss vs the fp32 graph) and, for binary tasks, its sensitivity at the operating
threshold does not fall below the fp32 sensitivity's 95 % CI. A refused variant is reported, never shipped.
:func:`gated_variant` applies the gate to a builder's graph and writes the manifest entry and golden outputs of a
kept one; :func:`refused` is the report entry of a graph a builder could not make.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from medinfer.integrity import outputs_digest
from medinfer.manifest import Variant

from ...train.spec import Dataset, ModelSpec, Progress, quiet
from .. import parity
from . import VariantsBuilt

INT8_GOLDEN_ATOL = 1e-3  # int8 kernels differ between CPUs (VNNI vs AVX2 paths): a looser, stated tolerance


def scores(spec: ModelSpec, data: bytes, input_name: str, X: Any) -> np.ndarray:
    """The spec's scores of graph ``data`` on ``X`` (CPU, in the parity gate's batches)."""
    return spec.scores(parity.run_batched(parity.ort_session(data), input_name, X))


def _value(metrics: dict[str, Any], key: str) -> float | None:
    m = metrics["heldout"].get(key)
    return None if m is None else float(m["value"])


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


def refused(spec: ModelSpec, kind: str, reason: str, progress: Progress = quiet) -> VariantsBuilt:
    """A variant its builder could not make (the rewrite does not apply, a proof failed): reported, not shipped."""
    progress(f"[{spec.name}] {kind} variant REFUSED: {reason}")
    return {}, {}, {kind: {"shipped": False, "reason": reason}}, {}


def gated_variant(spec: ModelSpec, ds: Dataset, model_bytes: bytes, input_name: str, golden_x: Any,
                  threshold: float | None, data: bytes, *, kind: str, file: str, description: str,
                  golden_atol: float = INT8_GOLDEN_ATOL, precision: str = "int8",
                  progress: Progress = quiet) -> VariantsBuilt:
    """Gate graph ``data`` (variant ``kind``, written as ``file``) against the fp32 graph ``model_bytes`` on the
    held-out set; a kept variant gets its manifest entry (``golden_atol``: its readiness tolerance, at least the
    spec's) and golden outputs on ``golden_x``.

    Returns:
        (manifest variants, {file name: bytes}, report incl. a refused variant, {variant: ({}, golden outputs)}).
    """
    got = scores(spec, data, input_name, ds.X_test)
    problems, entry = clinical_gate(spec, ds, scores(spec, model_bytes, input_name, ds.X_test), got, threshold)
    if problems:
        progress(f"[{spec.name}] {kind} variant REFUSED: {'; '.join(problems)}")
        return {}, {}, {kind: {"shipped": False, "reason": "; ".join(problems), **entry}}, {}
    fetch = [spec.score_output]
    golden = dict(zip(fetch, parity.ort_session(data).run(fetch, {input_name: golden_x})))
    variant = Variant(
        file=file, precision=precision, description=description,
        accuracy_delta={k: round(v, 6) for k, v in entry["accuracy_delta"].items()},
        parity={"max_abs_diff_vs_fp32": entry["max_abs_diff_vs_fp32"],
                "decision_flips_vs_fp32": entry["decision_flips_vs_fp32"], "n": int(len(got))},
        golden_digest=outputs_digest(golden, tuple(golden)),
        golden_atol=max(spec.parity.atol, golden_atol))
    progress(f"[{spec.name}] {kind} variant kept: max diff {entry['max_abs_diff_vs_fp32']:.3g}, "
             f"{entry['decision_flips_vs_fp32']} decision flips, held-out loss vs fp32 (fp32 - {kind}; negative = "
             f"{kind} better) " + ", ".join(f"{k} {v:+.4f}" for k, v in entry["accuracy_delta"].items()))
    return {kind: variant}, {file: data}, {kind: {"shipped": True, **entry}}, {kind: ({}, golden)}
