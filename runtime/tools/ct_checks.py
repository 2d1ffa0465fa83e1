"""Is this slice calibrated in Hounsfield units? A plausibility rule of the DICOM reader, on the whole slice.

A wrong RescaleIntercept shifts every pixel and a wrong RescaleSlope stretches them all; another modality's values
(an MR passed as CT) or stored values read without their rescale have no HU scale at all. Each window alone may
still look like something a CT holds, so the window guard cannot always tell; the slice as a whole can, because the
HU scale is fixed by physics (air -1000, water 0) and every CT slice of a body holds tissue near water and something
darker (fat, lung or air). The rule, on the pixels that are not padding (declared by PixelPaddingValue /
PixelPaddingRangeLimit, or below the scale's physical floor, the reconstruction's outside):

- fat, water and soft tissue, [-200, 200] HU, make up at least :data:`MIN_TISSUE_SHARE` of the slice;
- the darkest :data:`DARK_QUANTILE` of the slice lies at or below :data:`DARK_HU` (fat, lung or air);
- at most :data:`MAX_ABOVE_SHARE` of all pixels lie above the model's HU range (undeclared padding of a high value,
  a stretched scale).

A slice that fails is outside the model's domain as a whole: every window is flagged, or the slice gets no result
(``--out-of-domain no_result``). The air and soft-tissue peaks are reported with the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TISSUE_BAND = (-200.0, 200.0)  # fat (-120 .. -90), water (0), soft tissue and blood (20 .. 80), fluid
MIN_TISSUE_SHARE = 0.05
DARK_QUANTILE, DARK_HU = 0.05, -100.0  # something darker than water: fat, lung parenchyma (-850) or air (-1000)
MAX_ABOVE_SHARE = 0.05
PHYSICAL_FLOOR = -1100.0  # nothing in a body or the air around it is below air's -1000 (noise included)
AIR_BAND = (-1100.0, -900.0)


@dataclass(frozen=True)
class CalibrationCheck:
    """The verdict of the slice-level rule, with what it measured."""

    plausible: bool
    reasons: tuple[str, ...]
    tissue_share: float
    dark_hu: float
    above_share: float
    padding_pixels: int
    air_peak: float | None
    tissue_peak: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"plausible": self.plausible, "reasons": list(self.reasons),
                "tissue_share": round(self.tissue_share, 4), "dark_hu": round(self.dark_hu, 1),
                "above_range_share": round(self.above_share, 4), "padding_pixels": self.padding_pixels,
                "air_peak_hu": self.air_peak, "soft_tissue_peak_hu": self.tissue_peak}

    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "calibrated"


def _peak(values: np.ndarray, band: tuple[float, float], min_share: float, total: int) -> float | None:
    inside = values[(values >= band[0]) & (values <= band[1])]
    if total == 0 or inside.size < min_share * total:
        return None
    counts, edges = np.histogram(inside, bins=np.arange(band[0], band[1] + 10.0, 10.0))
    k = int(np.argmax(counts))
    return float((edges[k] + edges[k + 1]) / 2)


def check_calibration(hu: np.ndarray, padding: np.ndarray | None, high: float) -> CalibrationCheck:
    """The slice-level rule (module docstring) on the unclipped HU of one slice.

    Args:
        hu: the slice in HU, before any clipping.
        padding: True where the file declares padding (PixelPaddingValue), or None.
        high: the top of the model's HU range.
    """
    total = hu.size
    above_share = float(np.count_nonzero(hu > high)) / total if total else 0.0
    keep = hu >= PHYSICAL_FLOOR
    if padding is not None:
        keep &= ~padding
    values = hu[keep].astype(np.float64)
    reasons: list[str] = []
    if values.size == 0:
        return CalibrationCheck(False, ("every pixel is padding or below air's -1000 HU",), 0.0, float("nan"),
                                above_share, int(padding.sum()) if padding is not None else 0, None, None)
    tissue_share = float(np.count_nonzero((values >= TISSUE_BAND[0]) & (values <= TISSUE_BAND[1]))) / values.size
    dark = float(np.quantile(values, DARK_QUANTILE))
    if tissue_share < MIN_TISSUE_SHARE:
        reasons.append(f"only {tissue_share:.1%} of the pixels lie in fat/water/soft tissue ({TISSUE_BAND[0]:g} .. "
                       f"{TISSUE_BAND[1]:g} HU; a CT slice of a body has at least {MIN_TISSUE_SHARE:.0%})")
    if dark > DARK_HU:
        reasons.append(f"the darkest {DARK_QUANTILE:.0%} of the pixels are at {dark:.0f} HU or brighter (a CT slice "
                       f"holds fat, lung or air below {DARK_HU:g} HU)")
    if above_share > MAX_ABOVE_SHARE:
        reasons.append(f"{above_share:.1%} of the pixels lie above {high:g} HU (undeclared padding or a stretched "
                       "scale)")
    return CalibrationCheck(not reasons, tuple(reasons), tissue_share, dark, above_share,
                            int(padding.sum()) if padding is not None else 0,
                            _peak(values, AIR_BAND, 0.01, values.size), _peak(values, TISSUE_BAND, 0.01, values.size))


def padding_mask(ds: Any, pixels: np.ndarray) -> np.ndarray | None:
    """True where the stored value is the file's declared padding (PixelPaddingValue, up to PixelPaddingRangeLimit
    when given), or None when it declares none."""
    value = ds.get("PixelPaddingValue")
    if value is None or isinstance(value, (bytes, list, tuple)):
        return None
    try:
        lo = int(value)
        limit = ds.get("PixelPaddingRangeLimit")
        hi = int(limit) if limit is not None and not isinstance(limit, (bytes, list, tuple)) else lo
    except (TypeError, ValueError):
        return None
    lo, hi = min(lo, hi), max(lo, hi)
    mask = (pixels >= lo) & (pixels <= hi)
    return mask if mask.any() else None
