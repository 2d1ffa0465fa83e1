"""The applicability domain in the DICOM results: the SR's coded verdict of the slice (inside / outside / no result)
and of each reported window, its statements, and the Parametric Map's second frame (1 where a window is inside the
domain). The concepts are in a local code system (designator ``99MEDINFER``): no standard terminology has them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .dicom import DicomPrediction

LOCAL_SCHEME = "99MEDINFER"  # a private coding scheme (DICOM: designators starting with "99" are local)


#: The applicability domain in the SR (a local code system: no standard terminology has these concepts).
DOMAIN_CONCEPT = ("APPDOMAIN", "Applicability domain of the model")
DOMAIN_VALUES = {"inside": ("INDOMAIN", "Inside the applicability domain"),
                 "outside": ("OUTDOMAIN", "Outside the applicability domain"),
                 "no_result": ("NORESULT", "No result: outside the applicability domain")}


def domain_code(kind: str) -> Any:
    """The coded concept (``"concept"``) or one of its values (``"inside"``, ``"outside"``, ``"no_result"``)."""
    from pydicom.sr.coding import Code

    value, meaning = DOMAIN_VALUES.get(kind, DOMAIN_CONCEPT)
    return Code(value, LOCAL_SCHEME, meaning)


def domain_evaluation(hd: Any, inside: bool) -> Any:
    """A reported window's qualitative evaluation: inside or outside the applicability domain."""
    return hd.sr.QualitativeEvaluation(name=domain_code("concept"), value=domain_code("inside" if inside
                                                                                        else "outside"))


def slice_verdict(result: DicomPrediction) -> str:
    """The slice's verdict: ``no_result`` (refused), ``outside`` (flagged) or ``inside``."""
    if result.refusal is not None:
        return "no_result"
    return "inside" if result.slice_in_domain is not False else "outside"


def domain_statements(result: DicomPrediction) -> list[str]:
    """What the SR says of the guard: the slice's verdict with its calibration check, flagged and refused windows."""
    from .dicom_render import domain_lines

    guard = result.guard
    if guard is None:
        return []
    cal = guard.calibration
    head = (f"Applicability domain: the slice is {'inside' if guard.slice_in_domain else 'OUTSIDE'} "
            f"(calibration check: {cal.reason()}; soft-tissue share {cal.tissue_share:.1%}, darkest 5% at "
            f"{cal.dark_hu:.0f} HU)")
    if guard.slice_score is not None:
        head += (f"; the slice's domain score (the upper median of its tissue windows') is {guard.slice_score:.4g}"
                 + ("" if guard.slice_score_in_domain else ", above the threshold"))
    if guard.threshold is not None:
        head += f"; each window's domain score is compared with the threshold {guard.threshold:.4g}"
    return [head, *domain_lines(result)]


def domain_map(result: DicomPrediction) -> np.ndarray:
    """Each window's applicability-domain flag (1 inside, 0 outside) painted like the heat map: the Parametric
    Map's second frame."""
    from .overlay import heat_map

    inside = result.confident.astype(np.float32)
    return heat_map(result.image.hu.shape, result.centres, inside, result.cell or result.patch or 1)
