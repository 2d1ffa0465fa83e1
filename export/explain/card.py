"""The model card's explanation section, rendered from the manifest's ``explanation``."""

from __future__ import annotations

from typing import Any

from medinfer.manifest import Manifest

from .plot import PLOT

METHOD_WORDS = {
    "linear": "exact per-feature contributions of the linear model, by an explanation graph beside the model's",
    "saabas": "Saabas path contributions of the forest's trees, by an explanation graph (a tree ensemble with one "
              "target per feature) on the model's very splits",
    "occlusion": "occlusion: the model's own graph on a batch of copies with one square covered each",
    "masking": "masking: the model's own graph on a batch of copies with one time step or feature group masked each",
}


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else "—"


def section(m: Manifest) -> list[str]:
    """Markdown lines: what explains the answers, what it can and cannot tell, its gate and measured fidelity."""
    e = m.explanation
    lines = ["## Why this answer (explanations)", ""]
    if e is None:
        return lines + ["This bundle carries no explanation.", ""]
    lines += [f"- Method: **{e.method}** — {METHOD_WORDS.get(e.method, e.method)}; explains the {e.explains} "
              f"({e.units})" + ("; exact: the bias + the contributions = the explained value" if e.exact else ""),
              f"- Baseline: {e.baseline}"]
    if e.can_tell:
        lines.append(f"- It can tell: {e.can_tell}.")
    if e.cannot_tell:
        lines.append(f"- It cannot tell: {e.cannot_tell}.")
    gate = e.parity
    checks = ", ".join(f"{k} max abs diff {_num(v.get('max_abs_diff'))} (atol {v.get('tolerance', {}).get('atol')})"
                       for k, v in gate.items() if isinstance(v, dict))
    if checks:
        lines.append(f"- Export gate (fail-closed) against {gate.get('reference', 'the native model')}: {checks}")
    lines.append("- On a device: `model.explain(x)`, `model.predict(x, explain=True)`, `medinfer predict BUNDLE "
                 "INPUT --explain`")
    f = e.fidelity
    if f:
        area = f.get("area") or {}
        ci = f.get("gain_ci95") or [None, None]
        lines += ["", f"Fidelity on {f.get('n')} held-out samples ({f.get('rows', '')}): features removed in "
                  "attribution order (most positive first) vs random orders; y = the model's score "
                  f"({f.get('units')}).", "",
                  "| curve | attribution order | random order |", "|---|---|---|",
                  f"| deletion area (lower is better) | {_num(area.get('deletion'))} | "
                  f"{_num(area.get('deletion_random'))} |",
                  f"| insertion area (higher is better) | {_num(area.get('insertion'))} | "
                  f"{_num(area.get('insertion_random'))} |", "",
                  f"Area between the curves: **{_num(f.get('gain'))}** (95 % CI {_num(ci[0])} to {_num(ci[1])}); "
                  f"attribution order beats random order on {_num(100 * (f.get('share_better') or 0))} % of the "
                  "samples.", ""]
        if PLOT in m.files:
            lines += [f"![Explanation fidelity: deletion and insertion curves]({PLOT})", ""]
    return lines + [""]
