"""The reference-set half of ``medinfer diff``: both models run on the same inputs (see :mod:`.diff`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.change import METRIC_RULES, MetricCriterion, Pccp
from medinfer.decision import positive_index
from medinfer.errors import MedinferError

from .diff import Finding
from .reference import (
    PRIMARY,
    Reference,
    bundle_reference,
    label_indices,
    metric_function,
    paired_bootstrap,
    read_reference,
)

CHUNK = 512


@dataclass
class Outputs:
    """One model's answers on the reference: per sample its score row, label (classification), whether it is in
    the domain (None without a guard), and whether it was answered at all."""

    scores: np.ndarray
    labels: np.ndarray | None
    in_domain: np.ndarray | None
    domain_scores: np.ndarray | None
    answered: np.ndarray


def run(model: medinfer.Model, inputs: dict[str, np.ndarray]) -> Outputs:
    """Predict every sample (in chunks; a refused chunk sample by sample, a refused sample has no answer)."""
    n = len(next(iter(inputs.values())))
    rows: list[tuple[np.ndarray, Any, Any, Any] | None] = []
    for start in range(0, n, CHUNK):
        part = {k: v[start:start + CHUNK] for k, v in inputs.items()}
        try:
            rows += _rows(model.predict(part))
        except MedinferError:
            for i in range(len(next(iter(part.values())))):
                try:
                    rows += _rows(model.predict({k: v[i:i + 1] for k, v in part.items()}))
                except MedinferError:
                    rows.append(None)
    answered = np.array([r is not None for r in rows])
    width = next((np.shape(r[0]) for r in rows if r is not None), ())
    scores = np.array([r[0] if r is not None else np.full(width, np.nan) for r in rows], dtype=np.float64)
    has_labels = model.manifest.labels is not None
    labels = np.array([str(r[1]) if r is not None else "" for r in rows], dtype=object) if has_labels else None
    guarded = model.manifest.domain is not None
    in_domain = np.array([bool(r[2]) if r is not None else False for r in rows]) if guarded else None
    dscores = np.array([float(r[3]) if r is not None else np.nan for r in rows]) if guarded else None
    return Outputs(scores, labels, in_domain, dscores, answered)


def _rows(pred: medinfer.Prediction) -> list[tuple[np.ndarray, Any, Any, Any]]:
    scores = np.asarray(pred.scores, dtype=np.float64)
    labels, inside, dscores = pred.labels, pred.in_domain, pred.domain_scores
    return [(scores[i], None if labels is None else labels[i], None if inside is None else inside[i],
             None if dscores is None else dscores[i]) for i in range(len(pred))]


def reference_findings(old: medinfer.Model, new: medinfer.Model, plan: Pccp, reference: str | Path | None,
                       probes: int, comparable: bool) -> tuple[str | None, list[Finding]]:
    """Findings on the reference inputs (and probes); ``comparable`` False (a contract change) skips them."""
    if not comparable:
        return None, [Finding("reference", None, "not run: the contracts differ, so the models' answers cannot be "
                                                 "compared sample by sample")]
    ref = read_reference(reference, old) if reference is not None else bundle_reference(old)
    if ref is None:
        return None, [Finding("reference", None, "no reference inputs: the parent ships no parity sample or golden "
                                                 "inputs; give --reference DATA.npz")]
    a, b = run(old, ref.inputs), run(new, ref.inputs)
    found = [_answers(a, b), _changes(old, a, b, plan)]
    found += _domain(a, b, plan)
    found += _probes(old, new, plan, probes)
    if ref.y is not None:
        found += _metrics(old, new, ref, a, b, plan)
    return f"{ref.source} ({len(ref)} samples)", [f for f in found if f is not None]


def _answers(a: Outputs, b: Outputs) -> Finding:
    lost = int((a.answered & ~b.answered).sum())
    return Finding("answers", lost == 0, f"the candidate refuses {lost} reference sample(s) the parent answered"
                   if lost else f"both answer the same {int(a.answered.sum())} of {len(a.answered)} samples",
                   {"old_answered": int(a.answered.sum()), "new_answered": int(b.answered.sum())})


def _changes(old: medinfer.Model, a: Outputs, b: Outputs, plan: Pccp) -> Finding | None:
    both = a.answered & b.answered
    if a.labels is not None and b.labels is not None:
        flips = int((a.labels[both] != b.labels[both]).sum())
        rate = flips / max(int(both.sum()), 1)
        return Finding("decision flips", rate <= plan.max_flip_rate,
                       f"{flips} of {int(both.sum())} decisions differ ({rate:.2%}; plan allows "
                       f"{plan.max_flip_rate:.2%})", {"flips": flips, "rate": rate})
    change = float(np.mean(np.abs(b.scores[both] - a.scores[both]))) if both.any() else 0.0
    limit = plan.max_mean_abs_change
    return Finding("mean change", None if limit is None else change <= limit,
                   f"mean |new - old| = {change:.4g}" + (f" (plan allows {limit:.4g})" if limit is not None else
                                                          " (no limit declared)"), {"mean_abs_change": change})


def _domain(a: Outputs, b: Outputs, plan: Pccp) -> list[Finding]:
    if a.in_domain is None or b.in_domain is None or a.domain_scores is None or b.domain_scores is None:
        return []
    both = a.answered & b.answered
    acc_a, acc_b = float(a.in_domain[both].mean()), float(b.in_domain[both].mean())
    drop = acc_a - acc_b
    return [Finding("domain acceptance", drop <= plan.max_domain_acceptance_drop,
                    f"in-domain share of the reference {acc_a:.2%} -> {acc_b:.2%} (plan allows a drop of "
                    f"{plan.max_domain_acceptance_drop:.2%})",
                    {"old": acc_a, "new": acc_b, "old_median_score": float(np.nanmedian(a.domain_scores[both])),
                     "new_median_score": float(np.nanmedian(b.domain_scores[both]))})]


def probe_inputs(model: medinfer.Model, n: int, seed: int = 0) -> dict[str, np.ndarray] | None:
    """``n`` samples uniform within each input's declared range (None when an input has no numeric range)."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in model.manifest.inputs:
        if spec.range is None or spec.dtype not in ("float32", "float64", "float16"):
            return None
        shape = [n] + [d if isinstance(d, int) else 8 for d in spec.shape[1:]]
        out[spec.name] = rng.uniform(spec.range[0], spec.range[1], size=shape).astype(spec.dtype)
    return out


def _probes(old: medinfer.Model, new: medinfer.Model, plan: Pccp, n: int) -> list[Finding]:
    if old.manifest.domain is None or new.manifest.domain is None or n <= 0:
        return []
    x = probe_inputs(old, n)
    if x is None:
        return []
    a, b = run(old, x), run(new, x)
    if a.in_domain is None or b.in_domain is None:
        return []
    rej_a, rej_b = float((~a.in_domain[a.answered]).mean()), float((~b.in_domain[b.answered]).mean())
    drop = rej_a - rej_b
    return [Finding("out-of-range probes", drop <= plan.max_probe_rejection_drop,
                    f"{n} probes uniform in the declared input ranges: rejected {rej_a:.0%} -> {rej_b:.0%} (plan "
                    f"allows the guard to reject {plan.max_probe_rejection_drop:.0%} fewer)",
                    {"old_rejected": rej_a, "new_rejected": rej_b})]


def _truth(model: medinfer.Model, y: np.ndarray) -> np.ndarray:
    m = model.manifest
    if m.task == "regression":
        return y.astype(np.float64)
    idx = label_indices(y, m.labels or ())
    if m.task == "binary_classification":
        return (idx == positive_index(m.labels, m.decision.positive_label)).astype(np.int64)
    return idx


def _fn(model: medinfer.Model, name: str) -> Any:
    m = model.manifest
    t = m.decision.threshold if m.decision.threshold is not None else 0.5
    return metric_function(name, m.task, t, len(m.labels or ()))


def _criteria(old: medinfer.Model, plan: Pccp) -> list[MetricCriterion]:
    task = old.manifest.task
    usable = [c for c in plan.metrics if _fn(old, c.metric) is not None]
    if not usable:
        name = PRIMARY[task]
        usable = [MetricCriterion(name, *METRIC_RULES[name])]
    return usable


def _metrics(old: medinfer.Model, new: medinfer.Model, ref: Reference, a: Outputs, b: Outputs,
             plan: Pccp) -> list[Finding]:
    assert ref.y is not None
    y = _truth(old, ref.y)
    both = a.answered & b.answered
    found = []
    criteria = _criteria(old, plan)
    for c in criteria:
        r = paired_bootstrap(_fn(old, c.metric), _fn(new, c.metric), y[both], a.scores[both], b.scores[both],
                             n_boot=plan.n_boot, confidence=plan.confidence)
        allowed = c.allowed_drop(r["old"])
        sign = 1.0 if c.direction == "higher" else -1.0
        worst = None if r["ci"] is None else min(sign * r["ci"][0], sign * r["ci"][1])
        ok = None if worst is None or not np.isfinite(r["old"]) else worst >= -allowed - 1e-12
        ci = "no CI (too few usable resamples)" if r["ci"] is None else \
            f"{plan.confidence:.0%} CI of new - old [{r['ci'][0]:.4g}, {r['ci'][1]:.4g}]"
        found.append(Finding(f"reference {c.metric}", ok, f"{r['old']:.4g} -> {r['new']:.4g}, {ci}; non-inferior "
                             f"when the worse end is within {allowed:.4g} ({c.direction} is better)", r))
    if ref.group is not None:
        found += _subgroups(old, new, ref, y, a, b, plan, criteria[0])
    return found


def _subgroups(old: medinfer.Model, new: medinfer.Model, ref: Reference, y: np.ndarray, a: Outputs, b: Outputs,
               plan: Pccp, c: MetricCriterion) -> list[Finding]:
    assert ref.group is not None
    groups = np.array([str(g) for g in ref.group.tolist()], dtype=object)
    both = a.answered & b.answered
    found = []
    sign = 1.0 if c.direction == "higher" else -1.0
    for g in sorted(set(groups.tolist())):
        mask = (groups == g) & both
        n = int(mask.sum())
        v_old, v_new = _fn(old, c.metric)(y[mask], a.scores[mask]), _fn(new, c.metric)(y[mask], b.scores[mask])
        delta = sign * (v_new - v_old)
        allowed = plan.subgroup_margin * abs(v_old) if c.relative else plan.subgroup_margin
        judged = n >= plan.subgroup_min_n and np.isfinite(delta)
        found.append(Finding(f"subgroup {g!s}: {c.metric}", (delta >= -allowed - 1e-12) if judged else None,
                             f"{v_old:.4g} -> {v_new:.4g} on {n} samples"
                             + (f" (plan allows {allowed:.4g} worse)" if judged else
                                f" (not judged: fewer than {plan.subgroup_min_n} samples or undefined)"),
                             {"n": n, "old": v_old, "new": v_new}))
    return found
