"""Render ``model_card.md`` from the manifest (the manifest is the single source of truth)."""

from __future__ import annotations

from typing import Any

from medinfer.manifest import Manifest
from medinfer.tools.licences import commercial_summary, commercial_use

from .explain.card import section as explanation_section


def _metric(m: Any) -> str:
    ci = f" (95 % CI {m.ci95[0]:.3f}–{m.ci95[1]:.3f})" if m.ci95 else ""
    return f"{m.value:.3f}{ci}"


_KIND_WORDS = {"gross": "gross faults", "subtle": "subtle shifts of population"}


def _kind_goals(ev: dict[str, Any]) -> str:
    """The refused-share goal of each kind of shift the manifest evaluated, largest first (from its own goals)."""
    goals, shifts = ev.get("goals") or {}, ev.get("shifts") or {}
    kinds = {s.get("kind", ""): goals[n]["refused_goal"] for n, s in shifts.items()
             if "refused_goal" in goals.get(n, {})}
    return ", ".join(f"{_KIND_WORDS.get(k, k)} ≥ {v:.0%}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))


def _domain(m: Manifest) -> list[str]:
    d = m.domain
    lines = ["## When the model should not answer (applicability domain)", ""]
    if d is None:
        return lines + ["No domain guard: this bundle answers every input within its declared ranges.", ""]
    ev = d.evaluation
    cal = d.calibration
    kind_goals = _kind_goals(ev)
    confidence = f", {cal['confidence']:.0%} confidence from {cal.get('n')} samples" if "confidence" in cal else ""
    lines += [f"The graph also outputs `{d.output}` per sample ({d.method}). A sample is in the domain when it is "
              f"at most **{d.threshold:.4g}**, the threshold chosen to accept at least {d.coverage:.0%} of new "
              f"in-domain data ({cal.get('data', '')}{confidence}); on held-out in-domain samples that chose nothing "
              f"it accepts **{ev.get('acceptance', float('nan')):.1%}**"
              + ("" if ev.get("acceptance_goal_met", True) else
                 f" (**below the {d.coverage:.0%} goal**: new in-domain data vary more than the calibration data, "
                 "which are too few to place the threshold with more confidence)")
              + ". `load(..., out_of_domain=\"no_result\")` gives no answer outside; the default flags "
              "(`Prediction.in_domain`).", "",
              "Shifted data, each judged by the share the guard REFUSES at that threshold"
              + (f" (goals: {kind_goals})" if kind_goals else "") + ". *Design* sets were used while choosing the "
              "guard's parts; *evaluation* sets belong to families held out until the guard was fixed. "
              "*Synthetic*: a programmed corruption of real held-out samples.", "",
              "| shifted data | role | kind | synthetic | n | refused | AUROC | goal |",
              "|---|---|---|---|---|---|---|---|"]
    goals = ev.get("goals", {})
    missed = []
    for name, s in (ev.get("shifts") or {}).items():
        goal = goals.get(name, {})
        refused = s.get("refused", s.get("rejected"))
        want = (f"≥ {goal['refused_goal']:.0%} refused" if "refused_goal" in goal else f"≥ {goal.get('goal', '')}") + (
            f", AUROC ≥ {goal['auroc_goal']:g}" if goal.get("auroc_goal") is not None else "")
        lines.append(f"| {name}: {s.get('description', '')} | {s.get('role', '')} | {s.get('kind', '')} | "
                     f"{'yes' if s.get('synthetic') else 'no'} | {s.get('n', '')} | "
                     f"{refused if refused is None else f'{refused:.0%}'} | {s.get('auroc', float('nan')):.3f} | "
                     f"{want} ({'met' if goal.get('met') else '**not met**'}) |")
        if not goal.get("met"):
            missed.append(name)
    if missed:
        shifts = ev.get("shifts") or {}
        lines += ["", "Goals not met, and why: the guard reads only what its parts measure (the method above); at a "
                  f"threshold that keeps {d.coverage:.0%} of in-domain data, part of these sets scores like real data "
                  "and is answered (flagged no more often than the table says)."]
        lines += [f"- {name}: {shifts[name]['note']}" for name in missed if shifts.get(name, {}).get("note")]
    curve = ev.get("selective") or []
    if curve:
        lines += ["", "Selective prediction (error among the answered, lowest domain scores answered first): "
                  + ", ".join(f"{c['coverage']:.0%} → {c['error']:.3g}" for c in curve[::2])]
    return lines + [""]


def render(m: Manifest) -> str:
    """Markdown model card for regulators and integrators, rendered from the manifest."""
    c = m.card
    lines = [f"# Model card — {m.name} {m.version}", "", c.summary, ""]
    if m.data.synthetic:
        lines += ["> **SYNTHETIC DATA.** " + m.data.description, ""]
    lines += ["## Intended use", "", c.intended_use, ""]
    if c.out_of_scope:
        lines += ["## Out of scope", ""] + [f"- {x}" for x in c.out_of_scope] + [""]
    lines += ["## Inputs and outputs", "", "| tensor | dtype | shape | range | units |", "|---|---|---|---|---|"]
    for t in m.inputs:
        rng = f"[{t.range[0]:g}, {t.range[1]:g}]" if t.range else ""
        lines.append(f"| in: `{t.name}` | {t.dtype} | {list(t.shape)} | {rng} | {t.units or ''} |")
    for t in m.outputs:
        lines.append(f"| out: `{t.name}` | {t.dtype} | {list(t.shape)} | | {t.units or ''} |")
    lines.append("")
    for t in m.inputs:
        if t.description:
            lines.append(f"- `{t.name}`: {t.description}")
        if t.names is not None:
            more = f", … ({len(t.names)} in all, in manifest order)" if len(t.names) > 8 else ""
            shown = ", ".join(t.names[:8]) + more
            lines.append(f"  - features: {shown}")
    if m.labels:
        lines.append(f"- labels: {', '.join(m.labels)}")
    if m.decision.threshold is not None:
        lines.append(f"- operating point: '{m.decision.positive_label}' when score >= {m.decision.threshold:g}"
                     + (f" ({m.decision.rationale})" if m.decision.rationale else ""))
    lines += ["", "## Training data", "", m.data.description, ""]
    lines += ["| source | package | file | licence | commercial use |", "|---|---|---|---|---|"]
    for s in m.data.sources:
        use = commercial_use(s.licence)
        lines.append(f"| {s.name} | {s.package}=={s.version} | `{s.file}` | {s.licence} | {use} |")
    lines += ["", f"- **Commercial use of this model:** {commercial_summary([s.licence for s in m.data.sources])} "
              "(the table in docs/data-licences.md; an engineering reading of the licences, not legal advice)", ""]
    for s in dict.fromkeys(s.citation for s in m.data.sources):  # first-seen order: a set's follows the hash seed
        lines.append(f"- Citation: {s}")
    if m.data.preprocessing:
        lines.append(f"- Preprocessing: {m.data.preprocessing}")
    split = ", ".join(f"{k}={v}" for k, v in m.data.split.items() if not isinstance(v, (list, dict)))
    lines += [f"- Split: {split}", ""]
    lines += ["## Held-out performance", "", f"{m.metrics.n_test} held-out samples; {m.metrics.method}.", "",
              "| metric | model | " + (f"baseline: {m.metrics.baseline.name} |" if m.metrics.baseline else "|"),
              "|---|---|---|"]
    for k, v in m.metrics.heldout.items():
        base = m.metrics.baseline.heldout.get(k) if m.metrics.baseline else None
        lines.append(f"| {k} | {_metric(v)} | {_metric(base) if base else ''} |")
    lines.append("")
    for title, path in c.plots.items():
        lines += [f"![{title}]({path})", ""]
    lines += _domain(m)
    lines += explanation_section(m)
    lines += ["## Export parity (fail-closed gate)", ""]
    p = m.parity
    lines.append(f"- {p.n_samples} inputs compared (held-out set + edge cases); max abs diff "
                 f"{p.max_abs_diff:.3g}; decision flips {p.decision_flips}; tolerance {p.tolerance}")
    for key, v in m.variants.items():
        if key != "default":
            if v.windows_of is not None:  # a whole-slice graph: its gate compared it with patch-by-patch fp32
                guard = [s["domain_score_max_abs_diff"] for s in (v.parity.get("sets") or {}).values()
                         if "domain_score_max_abs_diff" in s]
                lines.append(f"- variant `{key}` ({v.precision}): the `{v.windows_of}` graph over a whole slice in one "
                             f"pass; vs patch-by-patch fp32 on held-out slices: max abs diff "
                             f"{v.parity.get('max_abs_diff', float('nan')):.3g}, {v.parity.get('decision_flips')} "
                             f"decision flips over {v.parity.get('windows')} windows"
                             + (f"; its domain guard per window (`domain_score`, and `domain_score_slice` per slice) "
                                f"within {max(guard):.3g} of the patch graph's" if guard else ""))
            else:
                lines.append(f"- variant `{key}` ({v.precision}): accuracy delta {v.accuracy_delta}")
    lines.append("")
    if c.limitations:
        lines += ["## Limitations", ""] + [f"- {x}" for x in c.limitations] + [""]
    if c.ethical_considerations:
        lines += ["## Ethical considerations", ""] + [f"- {x}" for x in c.ethical_considerations] + [""]
    lines += ["## Provenance", "",
              # no time here (it is manifest.json's `created`): a rebuild of the same model gives the same card
              f"- Built by medinfer {m.producer.medinfer} (build time: manifest.json `created`); onnx "
              f"{m.producer.onnx}, onnxruntime {m.producer.onnxruntime}, opset {m.producer.opset}",
              f"- Frameworks: {m.producer.frameworks}; converter: {m.producer.converter}",
              *([f"- Runs on onnxruntime >= {m.requires.onnxruntime} (IR version {m.requires.ir_version}, opsets "
                 f"{m.requires.opsets}); `load()` refuses an older one"] if m.requires else []),
              "- Every file is pinned by sha256 in manifest.json; `medinfer verify` checks them and runs the "
              "golden self-test.", ""]
    return "\n".join(lines + _change_control(m))


def _change_control(m: Manifest) -> list[str]:
    """The lineage (parent, change log, release) and the plan a successor is held to (``medinfer diff``)."""
    lines = []
    if m.lineage is not None:
        lines += ["## Change log", "", f"- Release {m.lineage.release}"
                  + (f"; parent: version {m.lineage.parent_version}, manifest sha256 `{m.lineage.parent_sha256}`"
                     if m.lineage.parent_sha256 else "; no parent recorded")]
        lines += [f"- {e.version} (release {e.release}): {e.summary}" for e in m.lineage.changes] + [""]
    if m.pccp is not None:
        p = m.pccp
        lines += ["## Change control plan (acceptance criteria for a successor)", "",
                  *[f"- {c.metric}: not worse than this bundle by more than {c.margin:g}"
                    f"{' (relative)' if c.relative else ''} ({c.direction} is better)" for c in p.metrics],
                  f"- decision flips on the reference set <= {p.max_flip_rate:.1%}; threshold change <= "
                  f"{p.max_threshold_change:g}; per subgroup <= {p.subgroup_margin:g} worse (n >= {p.subgroup_min_n})",
                  f"- domain guard kept; in-domain acceptance drop <= {p.max_domain_acceptance_drop:.1%}; out-of-range "
                  f"probe rejection drop <= {p.max_probe_rejection_drop:.1%}",
                  "- no change of the input/output contract or labels; checked by `medinfer diff`", ""]
    return lines
