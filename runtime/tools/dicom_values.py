"""Reading DICOM element values the way the CT reader needs them: one code string, one positive count, pixel data
of the declared length, and a rescale slope/intercept that is one finite number each — anything else a typed
:class:`~medinfer.errors.InputError` naming the element (never a default in its place)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError


def text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if not isinstance(value, str):  # a multi-valued or binary element where a code string belongs
        value = str(value)
    return value.strip()


def count(ds: Any, keyword: str, path: Path) -> int:
    value = ds.get(keyword)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{path.name} has {keyword} {value!r}; expected one positive integer") from None
    if number < 1:
        raise InputError(f"{path.name} has {keyword} {number}; expected a positive integer")
    return number


def check_pixel_length(ds: Any, path: Path, rows: int, cols: int, frames: int) -> None:
    """An uncompressed PixelData must hold every pixel (one pad byte allowed): a truncated file is refused."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or getattr(syntax, "is_compressed", True):
        return  # encapsulated pixel data: the decoder reports a short stream
    bits = count(ds, "BitsAllocated", path) if "BitsAllocated" in ds else 16
    samples = count(ds, "SamplesPerPixel", path) if "SamplesPerPixel" in ds else 1
    expected = rows * cols * frames * samples * bits // 8
    got = len(ds.PixelData)
    if got < expected or got > expected + 1:
        raise InputError(f"{path.name} holds {got} bytes of pixel data but its header declares {frames} x {rows} x "
                         f"{cols} pixels of {bits} bits = {expected} bytes: the file is truncated or corrupt")


def number(value: Any, name: str, path: Path) -> float:
    """One finite number from a DICOM decimal-string element (a list of values or text is refused)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        raise InputError(f"{path.name} has {len(value)} values in {name} ({list(value)!r}); expected one number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path.name} has {name} {value!r}; expected a number") from None
    if not np.isfinite(number):
        raise InputError(f"{path.name} has {name} {number}; expected a finite number")
    return number


def rescale(ds: Any, frame: int, path: Path) -> tuple[float, float]:
    """RescaleSlope/Intercept from the dataset, or from the (enhanced CT) functional groups; slope 0, non-finite,
    multi-valued or non-numeric values are refused (never replaced by a default)."""
    source: Any = None
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        source = ds
    else:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        for seq, i in ((per_frame, frame), (ds.get("SharedFunctionalGroupsSequence"), 0)):
            if seq and len(seq) > i and "PixelValueTransformationSequence" in seq[i]:
                source = seq[i].PixelValueTransformationSequence[0]
                break
    if source is None:
        raise InputError(
            f"{path.name} has no RescaleSlope/RescaleIntercept: its stored values cannot be converted to Hounsfield "
            "units"
        )
    slope = number(source.get("RescaleSlope", 1.0), "RescaleSlope", path)
    intercept = number(source.get("RescaleIntercept", 0.0), "RescaleIntercept", path)
    if slope == 0.0:
        raise InputError(f"{path.name} has RescaleSlope 0: every pixel would get the same HU; the file's rescale is "
                         "corrupt")
    return slope, intercept
