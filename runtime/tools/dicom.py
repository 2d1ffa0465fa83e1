"""DICOM CT input for bundles whose manifest declares it (input facts ``modality: CT``, ``units: HU``).

``medinfer predict BUNDLE scan.dcm`` reads one CT slice with pydicom (extra ``[dicom]``, imported lazily),
refuses what the model cannot take (non-CT modality, unsupported PhotometricInterpretation, truncated or
non-DICOM files) with typed :class:`~medinfer.errors.InputError`, converts stored values to Hounsfield units
with RescaleSlope/RescaleIntercept, and scores either one patch centred at ``--center ROW,COL`` or the whole
slice with a sliding window: in one convolutional pass when the model is a whole-slice variant
(:mod:`~medinfer.tools.ct_slice`), else in batches of patches. ``--overlay out.png`` writes the slice (lung window,
at full resolution) with the window scores in a colour scale, the threshold outlined and a colour bar
(:mod:`medinfer.tools.overlay`), encoded with zlib + struct only (the runtime has no image library).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MissingExtraError
from ..extras import optional_import
from ..manifest import Manifest, TensorSpec
from ..model import Model
from ..windows import cut_patches, window_centres
from . import ct_slice
from .overlay import OVERLAY_WINDOW, figure, heat_map, png_bytes

DEFAULT_PHOTOMETRIC = ("MONOCHROME2", "MONOCHROME1")
UID_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "FrameOfReferenceUID")


@dataclass(frozen=True)
class CTImage:
    """One CT slice in Hounsfield units, with the facts the checks used."""

    hu: np.ndarray  # (rows, cols) float32, before any clipping
    path: str
    modality: str
    photometric: str
    slope: float
    intercept: float
    frame: int = 0
    n_frames: int = 1
    uids: dict[str, str] = field(default_factory=dict)  # Study/Series/SOP Instance, SOP Class, Frame of Reference


@dataclass
class DicomPrediction:
    """Window scores over a slice: centres (row, col), scores, labels, and the slice facts."""

    image: CTImage
    centres: np.ndarray
    scores: np.ndarray
    labels: list[str]
    threshold: float | None
    clipped_pixels: int
    overlay: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    patch: int = 0  # the model's window (patch) size in pixels
    cell: int = 0  # the block each window's score paints in the heat map (the stride; the patch for one centre)
    model: str = ""  # "name version" of the model that scored the slice (for the overlay's caption)
    score_name: str = "score"  # what the scores are, e.g. "p(nodule)" (the overlay's colour bar)
    clip: tuple[float, float] = (-1024.0, 3071.0)  # the HU range the model saw (the slice was clipped to it)

    def heat(self) -> np.ndarray:
        """The window scores as a heat map on the slice's pixel grid (see :func:`heat_map`)."""
        return heat_map(self.image.hu.shape, self.centres, self.scores, self.cell or self.patch or 1)

    def to_dict(self) -> dict[str, Any]:
        best = int(np.argmax(self.scores))
        return {
            "file": self.image.path, "modality": self.image.modality, "frame": self.image.frame,
            "hu_min": float(self.image.hu.min()), "hu_max": float(self.image.hu.max()),
            "rescale": {"slope": self.image.slope, "intercept": self.image.intercept},
            "clipped_pixels": self.clipped_pixels, "threshold": self.threshold,
            "windows": [{"row": int(r), "col": int(c), "score": float(s), "label": lab}
                        for (r, c), s, lab in zip(self.centres, self.scores, self.labels)],
            "max": {"row": int(self.centres[best][0]), "col": int(self.centres[best][1]),
                    "score": float(self.scores[best])},
            "overlay": self.overlay, **self.extra,
        }


def dicom_input(manifest: Manifest) -> TensorSpec | None:
    """The model input that takes CT patches in HU (declared in the manifest), or None."""
    for spec in manifest.inputs:
        facts = spec.facts or {}
        if facts.get("modality") == "CT" and (facts.get("units") or spec.units) == "HU" and spec.rank == 4:
            return spec
    return None


def is_dicom_file(path: str | Path) -> bool:
    """True for a ``.dcm`` name or a file with the DICM marker at byte 128."""
    path = Path(path)
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


MAX_PIXELS = 4096 * 4096  # one slice; larger is not a CT slice (and would cost minutes and gigabytes)
MAX_FRAMES = 2048
MAX_WINDOWS = 20_000  # sliding-window patches per call (a 512x512 slice at stride 4 is 16 384)
MAX_CLIPPED_FRACTION = 0.5  # real slices clip their padding outside the field of view (28 % in 693_UNCI.dcm)


def read_ct(path: str | Path, *, owner: str = "this model", frame: int | None = None,
            photometric: tuple[str, ...] = DEFAULT_PHOTOMETRIC, max_pixels: int = MAX_PIXELS) -> CTImage:
    """Read one CT slice as HU (float32).

    Everything pydicom can raise on a corrupt file becomes an InputError; the image size is checked from the header
    BEFORE any pixel is decoded.

    Raises:
        MissingExtraError: pydicom is not installed.
        InputError: missing, non-DICOM, corrupt or truncated file; modality other than CT; unsupported photometric
            interpretation; an image larger than ``max_pixels``; pixel data that cannot be decoded; a frame index out
            of range; a rescale slope/intercept that is not one finite number (slope 0 included).
    """
    pydicom = optional_import("pydicom", "dicom", "DICOM input")
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"DICOM file {path} does not exist")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise InputError(
            f"{path} is not a DICOM file ({exc}); {owner} takes a CT slice saved as DICOM Part 10 (.dcm)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds for corrupt headers
        raise InputError(f"{path} is a truncated or corrupt DICOM file: {type(exc).__name__}: {exc}") from None
    try:
        return _ct_image(ds, path, owner, frame, photometric, max_pixels)
    except (InputError, MissingExtraError):
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt element (VR, UID, value) anywhere in the dataset
        raise InputError(f"{path.name} is a corrupt DICOM file: reading it raised {type(exc).__name__}: {exc}") \
            from None


def _ct_image(ds: Any, path: Path, owner: str, frame: int | None, photometric: tuple[str, ...],
              max_pixels: int) -> CTImage:
    if "PixelData" not in ds:
        raise InputError(f"{path.name} holds no pixel data (PixelData is missing): the file is truncated or a "
                         "header-only object")
    modality = _text(ds, "Modality")
    if modality != "CT":
        raise InputError(
            f"{path.name} has Modality {modality or 'missing'!r}, but {owner} takes CT only (Hounsfield units); "
            "other modalities have no HU scale and would be scored meaninglessly"
        )
    interp = _text(ds, "PhotometricInterpretation")
    if interp not in photometric:
        raise InputError(
            f"{path.name} has PhotometricInterpretation {interp or 'missing'!r}; {owner} supports "
            f"{', '.join(photometric)} (single-channel greyscale CT)"
        )
    rows, cols = _count(ds, "Rows", path), _count(ds, "Columns", path)
    frames = _count(ds, "NumberOfFrames", path) if "NumberOfFrames" in ds else 1
    if rows * cols > max_pixels or frames > MAX_FRAMES:
        raise InputError(f"{path.name} declares {frames} frame(s) of {rows} x {cols} pixels; {owner} takes slices of "
                         f"at most {max_pixels} pixels and {MAX_FRAMES} frames (a CT slice is about 512 x 512)")
    _check_pixel_length(ds, path, rows, cols, frames)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds for short or undecodable pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        why = (f"its compressed transfer syntax {syntax} may need a decoder plugin (e.g. pip install pylibjpeg "
               "pylibjpeg-libjpeg), or the file is truncated" if getattr(syntax, "is_compressed", False)
               else "the file is truncated or corrupt")
        raise InputError(
            f"could not decode the pixel data of {path.name} ({type(exc).__name__}: {exc}); {why}"
        ) from None
    pixels = np.asarray(pixels)
    n_frames = pixels.shape[0] if pixels.ndim == 3 else 1
    index = 0 if frame is None else int(frame)
    if not 0 <= index < n_frames:
        raise InputError(f"{path.name} has {n_frames} frame(s); frame {index} does not exist")
    if pixels.ndim == 3:
        pixels = pixels[index]
    if pixels.ndim != 2:
        raise InputError(f"{path.name} has pixel array shape {pixels.shape}; expected one greyscale slice")
    slope, intercept = _rescale(ds, index, path)
    with np.errstate(over="ignore", invalid="ignore"):
        hu = (pixels.astype(np.float64) * slope + intercept).astype(np.float32)
    if not np.isfinite(hu).all():
        raise InputError(f"{path.name}: RescaleSlope {slope:g} and RescaleIntercept {intercept:g} give values beyond "
                         "float range: the rescale is corrupt; fix the file's RescaleSlope/RescaleIntercept")
    uids = {k: str(ds[k].value) for k in UID_KEYS if k in ds and ds[k].value}
    return CTImage(hu, str(path), modality, interp, slope, intercept, index, n_frames, uids)


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if not isinstance(value, str):  # a multi-valued or binary element where a code string belongs
        value = str(value)
    return value.strip()


def _count(ds: Any, keyword: str, path: Path) -> int:
    value = ds.get(keyword)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{path.name} has {keyword} {value!r}; expected one positive integer") from None
    if number < 1:
        raise InputError(f"{path.name} has {keyword} {number}; expected a positive integer")
    return number


def _check_pixel_length(ds: Any, path: Path, rows: int, cols: int, frames: int) -> None:
    """An uncompressed PixelData must hold every pixel (one pad byte allowed): a truncated file is refused."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or getattr(syntax, "is_compressed", True):
        return  # encapsulated pixel data: the decoder reports a short stream
    bits = _count(ds, "BitsAllocated", path) if "BitsAllocated" in ds else 16
    samples = _count(ds, "SamplesPerPixel", path) if "SamplesPerPixel" in ds else 1
    expected = rows * cols * frames * samples * bits // 8
    got = len(ds.PixelData)
    if got < expected or got > expected + 1:
        raise InputError(f"{path.name} holds {got} bytes of pixel data but its header declares {frames} x {rows} x "
                         f"{cols} pixels of {bits} bits = {expected} bytes: the file is truncated or corrupt")


def _number(value: Any, name: str, path: Path) -> float:
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


def _rescale(ds: Any, frame: int, path: Path) -> tuple[float, float]:
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
    slope = _number(source.get("RescaleSlope", 1.0), "RescaleSlope", path)
    intercept = _number(source.get("RescaleIntercept", 0.0), "RescaleIntercept", path)
    if slope == 0.0:
        raise InputError(f"{path.name} has RescaleSlope 0: every pixel would get the same HU; the file's rescale is "
                         "corrupt")
    return slope, intercept


def predict_file(model: Model, path: str | Path, *, centre: tuple[int, int] | None = None, stride: int | None = None,
                 frame: int | None = None, batch: int = 64, overlay: str | Path | None = None,
                 max_pixels: int = MAX_PIXELS, max_windows: int = MAX_WINDOWS,
                 max_clipped_fraction: float = MAX_CLIPPED_FRACTION) -> DicomPrediction:
    """Score one DICOM CT slice with ``model`` (a loaded medinfer Model whose manifest declares CT/HU input).

    A slice whose HU values carry no usable image is refused rather than scored: more than
    ``max_clipped_fraction`` of its pixels outside the model's HU range (a wrong rescale, another modality's
    numbers), or no variation at all once clipped.

    Raises:
        InputError: the bundle does not take DICOM CT, the file is refused (see :func:`read_ct`), the HU values
            carry no usable image, the centre lies outside the slice, the stride is not between 1 and the slice
            size, or the window count exceeds ``max_windows``.
        OutputError: the overlay cannot be written (the result is complete; :func:`write_overlay` again).
    """
    spec = dicom_input(model.manifest)
    if spec is None:
        raise InputError(
            f"{model.name} does not take DICOM input: its manifest declares no CT input in Hounsfield units "
            "(input facts modality=CT, units=HU); pass a .npy/.csv/.json file instead"
        )
    facts = spec.facts or {}
    dicom_facts = facts.get("dicom", {})
    image = read_ct(path, owner=model.name, frame=frame,
                    photometric=tuple(dicom_facts.get("photometric", DEFAULT_PHOTOMETRIC)), max_pixels=max_pixels)
    one_pass = ct_slice.is_one_pass(model)  # a whole-slice variant: every window in one convolutional pass
    size = ct_slice.SliceGrid.of(model).patch if one_pass else int(spec.shape[1])  # type: ignore[arg-type]
    lo, hi = dicom_facts.get("clip_hu") or (spec.range or (-1024.0, 3071.0))
    outside = (image.hu < lo) | (image.hu > hi)
    clipped = int(np.sum(outside))
    share = clipped / image.hu.size
    if share > max_clipped_fraction:
        raise InputError(
            f"{Path(path).name}: {share:.0%} of its pixels fall outside {model.name}'s HU range [{lo:g}, {hi:g}] "
            f"after RescaleSlope {image.slope:g} / RescaleIntercept {image.intercept:g} (HU {image.hu.min():g} .. "
            f"{image.hu.max():g}); more than {max_clipped_fraction:.0%} means the values are not Hounsfield units of "
            "a CT slice (a wrong rescale?): refused rather than scored"
        )
    hu = np.clip(image.hu, lo, hi)
    if float(hu.max()) == float(hu.min()):
        raise InputError(f"{Path(path).name}: every pixel is {float(hu.min()):g} HU: the slice carries no image to "
                         "score")
    step = int(stride if stride is not None else (dicom_facts.get("window_stride") or size // 4))
    if centre is not None:
        r, c = centre
        if not (0 <= r < hu.shape[0] and 0 <= c < hu.shape[1]):
            raise InputError(f"--center {r},{c} lies outside the slice of {hu.shape[0]} x {hu.shape[1]} pixels")
        centres = np.array([centre], dtype=np.int64)
    else:
        if not 1 <= step <= max(hu.shape):
            raise InputError(f"--stride {step}: the sliding-window stride must be between 1 and {max(hu.shape)} "
                             f"pixels for this {hu.shape[0]} x {hu.shape[1]} slice")
        n = -(-(hu.shape[0] - step // 2) // step) * -(-(hu.shape[1] - step // 2) // step)
        if n > max_windows:
            raise InputError(f"--stride {step} gives {n} windows on this {hu.shape[0]} x {hu.shape[1]} slice; at "
                             f"most {max_windows} are scored per call: use a larger stride")
        centres = window_centres(hu.shape, step)
    scores: list[np.ndarray] = []
    labels: list[str] = []
    if one_pass:
        one, labels = (ct_slice.score_centre(model, hu, centre, float(lo)) if centre is not None
                       else ct_slice.score_slice(model, hu, centres, step, float(lo)))
        scores.append(one)
    for start in range(0, 0 if one_pass else len(centres), batch):
        pred = model.predict(cut_patches(hu, centres[start:start + batch], size, float(lo)))
        scores.append(np.asarray(pred.scores, dtype=np.float64).reshape(-1))
        labels += [str(x) for x in (pred.labels if pred.labels is not None else [""] * len(pred.scores))]
    step = int(stride or dicom_facts.get("window_stride") or size // 4) if centre is None else size
    positive = model.manifest.decision.positive_label
    result = DicomPrediction(image, centres, np.concatenate(scores), labels, model.manifest.decision.threshold,
                             clipped, patch=size, cell=step if centre is None else size,
                             model=f"{model.name} {model.version}",
                             score_name=f"p({positive})" if positive else "score", clip=(float(lo), float(hi)),
                             extra=ct_slice.describe(model) if one_pass else {})
    if overlay is not None:
        write_overlay(result, overlay, (lo, hi))
    return result


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
    above = int(np.sum(result.scores >= result.threshold)) if result.threshold is not None else 0
    windows = (f"{len(result.scores)} windows of {result.patch} px, stride {result.cell}" if len(result.scores) > 1
               else f"one {result.patch} px window at {tuple(int(v) for v in result.centres[0])}")
    where = f"{Path(img.path).name}, " if file_name else ""
    caption = [f"{result.model or 'model'}: {where}frame {img.frame + 1}/{img.n_frames}",
               f"{windows}; max {float(result.scores.max()):.3f}"
               + (f"; {above} >= threshold {result.threshold:.3g} (outlined)" if result.threshold is not None else "")]
    return figure(hu, result.centres, result.scores, result.heat(), threshold=result.threshold,
                  window=OVERLAY_WINDOW, score_name=result.score_name, caption=caption, min_size=min_size)


def format_result(result: DicomPrediction, top: int = 10) -> str:
    """A readable summary: the slice facts, then the highest-scoring windows."""
    img = result.image
    lines = [
        f"{img.path}: {img.modality} {img.hu.shape[0]}x{img.hu.shape[1]}, frame {img.frame + 1}/{img.n_frames}, "
        f"HU {img.hu.min():.0f}..{img.hu.max():.0f} (RescaleSlope {img.slope:g}, RescaleIntercept "
        f"{img.intercept:g})" + (f"; {result.clipped_pixels} pixels clipped to the model's HU range"
                                 if result.clipped_pixels else ""),
    ]
    order = np.argsort(-result.scores)[:top]
    above = int(np.sum(result.scores >= result.threshold)) if result.threshold is not None else 0
    lines.append(f"{len(result.scores)} window(s) scored; {above} at or above the threshold "
                 f"{result.threshold if result.threshold is not None else '-'}")
    width = max(len(x) for x in result.labels) if result.labels else 5
    lines.append(f"  {'row':>5} {'col':>5}  {'label':<{width}}  score")
    for i in order:
        r, c = result.centres[i]
        lines.append(f"  {r:>5} {c:>5}  {result.labels[i]:<{width}}  {result.scores[i]:.4f}")
    if result.overlay:
        lines.append(f"heat-map overlay written to {result.overlay}")
    return "\n".join(lines)
