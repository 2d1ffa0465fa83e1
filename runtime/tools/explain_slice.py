"""A whole CT slice explained (``medinfer predict SLICE.dcm --explain``).

A whole slice is explained by its heat map itself (the window scores, from the one-pass slice variant or patch by
patch) with an occlusion refinement around each finding: the patch at each window at or above the threshold (the
strongest first, at most ``findings``, none within half a patch of a stronger one) is explained by the patch model
(:meth:`medinfer.Model.explain`, occlusion) and its map of score drops is pasted onto the slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..model import Model
    from .dicom import DicomPrediction

FINDINGS = 5
TOP = 3


@dataclass
class SliceExplanation:
    """A slice's findings, each with its occlusion refinement, and the refinement map on the slice (H, W)."""

    findings: list[dict[str, Any]]
    refinement: np.ndarray
    method: str = "occlusion"

    def to_dict(self) -> dict[str, Any]:
        return {"method": f"heat map + {self.method} refinement around each finding", "findings": self.findings}


def patch_model_of(model: Model, bundle: str | Path) -> Model:
    """The patch model a slice's windows come from: ``model`` itself, or (a one-pass slice variant) the variant
    whose windows it computes, loaded from the same bundle."""
    windows_of = model.manifest.variants[model.variant].windows_of
    if windows_of is None:
        return model
    from ..loader import load

    return load(bundle, variant=windows_of)


def explain_slice(patch_model: Model, result: DicomPrediction, *, findings: int = FINDINGS,
                  top: int = TOP) -> SliceExplanation:
    """Refine ``result``'s heat map around each finding by occlusion of its patch (see the module docstring).

    Raises:
        UsageError: the bundle has no explanation (see :meth:`medinfer.Model.explain`).
    """
    from .dicom import cut_patches

    hu = result.image.hu
    size = result.patch
    threshold = result.threshold if result.threshold is not None else 0.5
    chosen: list[int] = []
    # findings are the windows the model may report: answered and inside the applicability domain
    scores = np.where(result.confident, np.nan_to_num(result.scores, nan=-np.inf), -np.inf)
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < threshold or len(chosen) >= findings:
            break
        if all(np.abs(result.centres[i] - result.centres[j]).max() >= size // 2 for j in chosen):
            chosen.append(int(i))
    refinement = np.zeros(hu.shape, dtype=np.float32)
    out: list[dict[str, Any]] = []
    if chosen:
        spec = patch_model.manifest.inputs[0]  # cut as the prediction cut them: clipped, air outside the slice
        lo, hi = (spec.facts or {}).get("dicom", {}).get("clip_hu") or (spec.range or (-1024.0, 3071.0))
        patches = cut_patches(np.clip(hu, lo, hi), result.centres[chosen], size, float(lo))
        explanation = patch_model.explain(patches)
        half = size // 2
        for k, i in enumerate(chosen):
            r, c = (int(v) for v in result.centres[i])
            r0, c0 = r - half, c - half
            _paste(refinement, explanation.maps[k] if explanation.maps is not None else None, r0, c0)
            out.append({"row": r, "col": c, "score": float(result.scores[i]),
                        "top": [[_in_slice(name, r0, c0), round(v, 5)] for name, v in explanation.top(k, top)]})
    return SliceExplanation(out, refinement)


def _paste(target: np.ndarray, patch_map: np.ndarray | None, r0: int, c0: int) -> None:
    """Paste a patch's map at (r0, c0) onto the slice (the larger drop where two overlap; clipped at the edges)."""
    if patch_map is None:
        return
    h, w = patch_map.shape
    rs, cs = max(r0, 0), max(c0, 0)
    re_, ce = min(r0 + h, target.shape[0]), min(c0 + w, target.shape[1])
    if rs < re_ and cs < ce:
        view = target[rs:re_, cs:ce]
        np.maximum(view, patch_map[rs - r0:re_ - r0, cs - c0:ce - c0], out=view)


def _in_slice(name: str, r0: int, c0: int) -> str:
    """A patch cell's name ("rows 30-39, cols 40-49") in slice pixel coordinates."""
    try:
        rows, cols = (part.split(" ")[1] for part in name.split(", "))
        (a, b), (c, d) = (int(v) for v in rows.split("-")), (int(v) for v in cols.split("-"))
    except (ValueError, IndexError):
        return name
    return f"rows {a + r0}-{b + r0}, cols {c + c0}-{d + c0}"


def write_explanation_overlay(result: DicomPrediction, explained: SliceExplanation, path: str | Path) -> None:
    """The slice with the occlusion refinement (the drop of the score when a square is covered, 0..1) in the
    overlay's colour scale, a colour bar and a caption naming the findings.

    Raises:
        OutputError: the file cannot be written (:func:`medinfer.writing.write_atomic`).
    """
    from ..writing import write_atomic
    from .dicom import OVERLAY_WINDOW, png_bytes
    from .overlay import figure

    field = np.clip(explained.refinement, 0.0, 1.0)
    spots = "; ".join(f"({f['row']},{f['col']}) {f['score']:.3f}" for f in explained.findings) or "none"
    caption = [f"{result.model or 'model'}: {Path(result.image.path).name}: why (occlusion around each finding)",
               f"findings at or above the threshold: {spots}"]
    rgb = figure(np.asarray(result.image.hu, np.float32), np.zeros((1, 2), np.int64), np.zeros(1), field,
                 threshold=None, window=OVERLAY_WINDOW, score_name=f"drop of {result.score_name}", caption=caption)
    write_atomic(path, png_bytes(rgb), "the explanation overlay")


def explanation_overlay_path(overlay: str | Path) -> Path:
    """``heat.png`` -> ``heat.explain.png`` (beside the heat-map overlay)."""
    p = Path(overlay)
    return p.with_name(f"{p.stem}.explain{p.suffix or '.png'}")
