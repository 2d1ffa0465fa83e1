"""Explanations as text where results go: the CLI's lines, a FHIR note, DICOM SR statements (no image library,
no DICOM import: FHIR output uses it too)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..explain import Explanation


def lines(explanation: Explanation, k: int = 5, names: Any = None) -> list[str]:
    """Readable lines: the method, then per sample its top ``k`` attributions with their signs (each sample shown
    as ``#<its name>``: ``names[i]``, default its position)."""
    head = (f"why ({explanation.method}, {explanation.explains} in {explanation.units}; "
            f"{'exact' if explanation.exact else 'baseline: ' + explanation.baseline}):")
    out = [head]
    for i in range(len(explanation)):
        parts = ", ".join(f"{name} {value:+.4g}" for name, value in explanation.top(i, k)) or "no attribution"
        base = f" = {explanation.bias[i]:+.4g} (bias) + contributions" if explanation.bias is not None else ""
        target = f" [{explanation.classes[i]}]" if explanation.classes is not None else ""
        out.append(f"  #{names[i] if names is not None else i}{target} {explanation.output[i]:.4g}{base}: {parts}")
        if explanation.groups:
            out.append("      masking each group: " + ", ".join(f"{g} {float(v[i]):+.4g}"
                                                             for g, v in explanation.groups.items()))
    return out


def note(explanation: Explanation, i: int, k: int = 5) -> str:
    """One sample's explanation as one sentence (a FHIR ``note``, an SR comment)."""
    parts = ", ".join(f"{name} {value:+.4g}" for name, value in explanation.top(i, k)) or "no attribution"
    target = f" for '{explanation.classes[i]}'" if explanation.classes is not None else ""
    return (f"Why (computed on the device by the model bundle's {explanation.method} explanation of the "
            f"{explanation.explains}{target}, {explanation.units}): {parts}"
            + (" (exact contributions)" if explanation.exact else f"; baseline: {explanation.baseline}"))


def slice_lines(explained: dict[str, Any]) -> list[str]:
    """Readable lines of a slice's explanation (``SliceExplanation.to_dict()``): each finding and the regions its
    score depends on most."""
    out = [f"why ({explained.get('method', 'occlusion')}; drop of the score when a square is covered):"]
    findings = explained.get("findings", [])
    if not findings:
        out.append("  no window at or above the threshold: nothing to refine")
    for f in findings:
        parts = ", ".join(f"{name} {value:+.4g}" for name, value in f["top"])
        out.append(f"  finding at row {f['row']}, col {f['col']} ({f['score']:.3f}): {parts}")
    return out


def sr_statements(explained: dict[str, Any]) -> list[str]:
    """The DICOM SR comments of a slice's explanation (:meth:`SliceExplanation.to_dict`), one per finding."""
    return [f"Why (computed on the device: {explained.get('method', 'occlusion')}): the score of the window centred "
            f"at row {f['row']}, col {f['col']} ({f['score']:.3f}) drops most when these regions are covered: "
            + ", ".join(f"{name} (drop {value:+.3g})" for name, value in f["top"])
            for f in explained.get("findings", [])]
