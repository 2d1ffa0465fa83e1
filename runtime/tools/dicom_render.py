"""How a scored CT slice is shown: the PNG overlay (``--overlay``, also the DICOM Secondary Capture's figure) and
the readable summary of ``medinfer predict scan.dcm``, each with the domain guard's verdict (windows outside the
applicability domain, a slice whose calibration is not plausible, windows and slices that got no result)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .overlay import OVERLAY_WINDOW, figure, png_bytes

if TYPE_CHECKING:
    from .dicom import DicomPrediction


def write_overlay(result: DicomPrediction, path: str | Path, clip: tuple[float, float] | None = None) -> None:
    """Draw ``result``'s heat map over its slice into a PNG at ``path``; sets ``result.overlay``.

    The figure is :func:`overlay_figure` (small slices enlarged to about 512 px).

    Raises:
        OutputError: the file cannot be written (the message names the path and why; nothing partial is left and a
            FIFO, folder or device at the path is refused, never opened).
    """
    from ..writing import write_atomic

    write_atomic(path, png_bytes(overlay_figure(result, clip)), "the overlay")
    result.overlay = str(path)


def overlay_figure(result: DicomPrediction, clip: tuple[float, float] | None = None, *, min_size: int = 512,
                   file_name: bool = True) -> np.ndarray:
    """The overlay of the PNG (``--overlay``) and of the DICOM Secondary Capture (``--dicom-sc``), as (H, W, 3)
    uint8: the slice in a lung window, the window scores in a colour scale (linear between window centres), the
    region at or above the threshold outlined, a colour bar with the threshold marked, and a caption naming the
    model, the windows and (``file_name``) the file (:func:`medinfer.tools.overlay.figure`).

    Args:
        clip: the HU range the slice is clipped to before windowing (default: the one the model saw).
        min_size: small slices are enlarged by an integer factor until their longer side reaches this; 1 keeps
            the source's resolution (one figure pixel per slice pixel: the Secondary Capture's pixel spacing).
        file_name: name the file in the caption (the Secondary Capture leaves it out: a file name may identify
            a patient, and its BurnedInAnnotation is NO).
    """

    hu = np.clip(result.image.hu, *(clip or result.clip))
    img = result.image
    scores = np.nan_to_num(result.scores, nan=0.0)  # a window without a result is painted as 0
    above = int(np.sum(result.confident & (scores >= result.threshold))) if result.threshold is not None else 0
    windows = (f"{len(result.scores)} windows of {result.patch} px, stride {result.cell}" if len(result.scores) > 1
               else f"one {result.patch} px window at {tuple(int(v) for v in result.centres[0])}")
    where = f"{Path(img.path).name}, " if file_name else ""
    caption = [f"{result.model or 'model'}: {where}frame {img.frame + 1}/{img.n_frames}",
               f"{windows}; max {float(scores.max()):.3f}"
               + (f"; {above} >= threshold {result.threshold:.3g} (outlined)" if result.threshold is not None else "")]
    caption += domain_lines(result, short=True)
    return figure(hu, result.centres, scores, result.heat(), threshold=result.threshold,
                  window=OVERLAY_WINDOW, score_name=result.score_name, caption=caption, min_size=min_size)


def domain_lines(result: DicomPrediction, short: bool = False) -> list[str]:
    """What the domain guard said of the slice, in words (empty when everything is inside)."""
    guard = result.guard
    if guard is None:
        return []
    if guard.refusal is not None:
        return ["NO RESULT: the slice is outside the model's applicability domain" +
                ("" if short else f" ({guard.slice_reason()})")]
    lines = []
    if not guard.slice_in_domain:
        lines.append("OUT OF DOMAIN: the slice is not a CT the model can read; every window is flagged and no "
                     "finding is reported" + ("" if short else f" ({guard.slice_reason()})"))
    else:
        outside, refused = int((~guard.in_domain).sum()), int(guard.refused.sum())
        if refused:
            lines.append(f"{refused} window(s) outside the applicability domain got no result")
        elif outside:
            lines.append(f"{outside} window(s) outside the applicability domain (flagged; no finding reported "
                         "there)")
        if not guard.guarded and not short:
            lines.append("the graph that scored the windows has no window guard: only the slice-level calibration "
                         "check applies")
    return lines


def format_result(result: DicomPrediction, top: int = 10) -> str:
    """A readable summary: the slice facts, then the highest-scoring windows."""
    img = result.image
    lines = [
        f"{img.path}: {img.modality} {img.hu.shape[0]}x{img.hu.shape[1]}, frame {img.frame + 1}/{img.n_frames}, "
        f"HU {img.hu.min():.0f}..{img.hu.max():.0f} (RescaleSlope {img.slope:g}, RescaleIntercept "
        f"{img.intercept:g})" + (f"; {result.clipped_pixels} pixels clipped to the model's HU range"
                                 if result.clipped_pixels else ""),
    ]
    scores = np.nan_to_num(result.scores, nan=-np.inf)
    order = np.argsort(-scores)[:top]
    confident = result.confident
    above = int(np.sum(confident & (scores >= result.threshold))) if result.threshold is not None else 0
    lines.append(f"{len(result.scores)} window(s) scored; {above} at or above the threshold "
                 f"{result.threshold if result.threshold is not None else '-'}"
                 + (" and inside the applicability domain" if result.guard is not None else ""))
    lines += domain_lines(result)
    inside, domain = result.in_domain, result.domain_scores
    width = max([len(x) for x in result.labels] + [9]) if result.labels else 9
    lines.append(f"  {'row':>5} {'col':>5}  {'label':<{width}}  score " + ("  in domain" if inside is not None
                                                                             else ""))
    for i in order:
        r, c = result.centres[i]
        answered = bool(result.answered[i])
        label = result.labels[i] if answered else "NO RESULT"
        score = f"{result.scores[i]:.4f}" if answered else "     -"
        flag = "" if inside is None else ("  yes" if inside[i] else "  NO") + \
            (f" ({domain[i]:.3g})" if domain is not None else "")
        lines.append(f"  {r:>5} {c:>5}  {label:<{width}}  {score}{flag}")
    if result.overlay:
        lines.append(f"heat-map overlay written to {result.overlay}")
    return "\n".join(lines)
