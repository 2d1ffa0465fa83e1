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
from ..failsafe import NoResult
from ..manifest import Manifest, TensorSpec
from ..model import Model
from ..windows import cut_patches, window_centres
from . import ct_slice
from .ct_checks import check_calibration, padding_mask
from .ct_guard import SliceGuard, decide, flagging
from .dicom_render import format_result, overlay_figure, write_overlay  # noqa: F401 - importable from here
from .dicom_values import check_pixel_length, count, rescale, text
from .overlay import OVERLAY_WINDOW, heat_map, png_bytes  # noqa: F401 - importable from here, as before

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
    padding: np.ndarray | None = None  # True where the stored value is the declared PixelPaddingValue (no image)


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
    guard: SliceGuard | None = None  # the domain guard's verdict (per window, for the slice, under the policy)

    @property
    def in_domain(self) -> np.ndarray | None:
        """Per window: inside the applicability domain (its own domain score and the slice's calibration)."""
        return None if self.guard is None else self.guard.in_domain

    @property
    def domain_scores(self) -> np.ndarray | None:
        """Per window: its domain score (None when the graph that scored it has no guard output)."""
        return None if self.guard is None else self.guard.domain_scores

    @property
    def slice_in_domain(self) -> bool | None:
        """The slice as a whole: a plausible CT calibration (None: not checked)."""
        return None if self.guard is None else self.guard.slice_in_domain

    @property
    def refusal(self) -> NoResult | None:
        """The whole slice's NoResult (policy ``no_result`` and the slice outside the domain), else None."""
        return None if self.guard is None else self.guard.refusal

    @property
    def answered(self) -> np.ndarray:
        """Per window: answered (not refused by the policy)."""
        return np.ones(len(self.scores), dtype=bool) if self.guard is None else ~self.guard.refused

    @property
    def confident(self) -> np.ndarray:
        """Per window: a finding may be reported: answered and inside the domain."""
        inside = self.in_domain
        return self.answered & (np.ones(len(self.scores), dtype=bool) if inside is None else inside)

    def heat(self) -> np.ndarray:
        """The window scores as a heat map on the slice's pixel grid (see :func:`heat_map`); a refused window is 0."""
        return heat_map(self.image.hu.shape, self.centres, np.nan_to_num(self.scores, nan=0.0),
                        self.cell or self.patch or 1)

    def to_dict(self) -> dict[str, Any]:
        scored = np.where(self.answered, self.scores, -np.inf)
        best = int(np.argmax(scored)) if self.answered.any() else None
        inside, domain = self.in_domain, self.domain_scores
        windows = []
        for i, ((r, c), s, lab) in enumerate(zip(self.centres, self.scores, self.labels)):
            ok = bool(self.answered[i])
            entry: dict[str, Any] = {"row": int(r), "col": int(c), "score": float(s) if ok else None,
                                     "label": lab if ok else None, "status": "ok" if ok else "no_result"}
            if not ok:
                entry["reason"] = "out_of_domain"
            if inside is not None:
                entry["in_domain"] = bool(inside[i])
            if domain is not None:
                entry["domain_score"] = float(domain[i])
            windows.append(entry)
        return {
            "file": self.image.path, "modality": self.image.modality, "frame": self.image.frame,
            "hu_min": float(self.image.hu.min()), "hu_max": float(self.image.hu.max()),
            "rescale": {"slope": self.image.slope, "intercept": self.image.intercept},
            "clipped_pixels": self.clipped_pixels, "threshold": self.threshold,
            "status": "ok" if self.refusal is None else "no_result",
            **({"domain": self.guard.to_dict()} if self.guard is not None else {}),
            "windows": windows,
            "max": None if best is None else {"row": int(self.centres[best][0]), "col": int(self.centres[best][1]),
                                              "score": float(self.scores[best]),
                                              **({"in_domain": bool(inside[best])} if inside is not None else {})},
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
    modality = text(ds, "Modality")
    if modality != "CT":
        raise InputError(
            f"{path.name} has Modality {modality or 'missing'!r}, but {owner} takes CT only (Hounsfield units); "
            "other modalities have no HU scale and would be scored meaninglessly"
        )
    interp = text(ds, "PhotometricInterpretation")
    if interp not in photometric:
        raise InputError(
            f"{path.name} has PhotometricInterpretation {interp or 'missing'!r}; {owner} supports "
            f"{', '.join(photometric)} (single-channel greyscale CT)"
        )
    rows, cols = count(ds, "Rows", path), count(ds, "Columns", path)
    frames = count(ds, "NumberOfFrames", path) if "NumberOfFrames" in ds else 1
    if rows * cols > max_pixels or frames > MAX_FRAMES:
        raise InputError(f"{path.name} declares {frames} frame(s) of {rows} x {cols} pixels; {owner} takes slices of "
                         f"at most {max_pixels} pixels and {MAX_FRAMES} frames (a CT slice is about 512 x 512)")
    check_pixel_length(ds, path, rows, cols, frames)
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
    padding = padding_mask(ds, pixels)
    slope, intercept = rescale(ds, index, path)
    with np.errstate(over="ignore", invalid="ignore"):
        hu = (pixels.astype(np.float64) * slope + intercept).astype(np.float32)
    if not np.isfinite(hu).all():
        raise InputError(f"{path.name}: RescaleSlope {slope:g} and RescaleIntercept {intercept:g} give values beyond "
                         "float range: the rescale is corrupt; fix the file's RescaleSlope/RescaleIntercept")
    uids = {k: str(ds[k].value) for k in UID_KEYS if k in ds and ds[k].value}
    return CTImage(hu, str(path), modality, interp, slope, intercept, index, n_frames, uids, padding)


def predict_file(model: Model, path: str | Path, *, centre: tuple[int, int] | None = None, stride: int | None = None,
                 frame: int | None = None, batch: int = 64, overlay: str | Path | None = None,
                 max_pixels: int = MAX_PIXELS, max_windows: int = MAX_WINDOWS,
                 max_clipped_fraction: float = MAX_CLIPPED_FRACTION) -> DicomPrediction:
    """Score one DICOM CT slice with ``model`` (a loaded medinfer Model whose manifest declares CT/HU input).

    A slice whose HU values carry no usable image is refused rather than scored: more than
    ``max_clipped_fraction`` of its pixels outside the model's HU range (a wrong rescale, another modality's
    numbers), or no variation at all once clipped. Pixels the file declares as padding (PixelPaddingValue) are air.
    Every window gets the domain guard's flag and the slice its calibration check (:mod:`.ct_guard`), under the
    model's out-of-domain policy: ``flag`` answers and flags, ``no_result`` gives each window outside the domain no
    result and a slice outside it none at all (``result.refusal``), ``raise`` raises.

    Raises:
        InputError: the bundle does not take DICOM CT, the file is refused (see :func:`read_ct`), the HU values
            carry no usable image, the centre lies outside the slice, the stride is not between 1 and the slice
            size, or the window count exceeds ``max_windows``.
        OutOfDomainError: the model refuses out-of-domain samples by raising and the slice or a window is outside.
        OutputError: the overlay cannot be written (the result is complete; :func:`write_overlay` again).
    """
    spec = dicom_input(model.manifest)
    if spec is None:
        raise InputError(
            f"{model.name} does not take DICOM input: its manifest declares no CT input in Hounsfield units "
            "(input facts modality=CT, units=HU); pass a .npy/.csv/.json file instead"
        )
    dicom_facts = (spec.facts or {}).get("dicom", {})
    image = read_ct(path, owner=model.name, frame=frame,
                    photometric=tuple(dicom_facts.get("photometric", DEFAULT_PHOTOMETRIC)), max_pixels=max_pixels)
    one_pass = ct_slice.is_one_pass(model)  # a whole-slice variant: every window in one convolutional pass
    size = ct_slice.SliceGrid.of(model).patch if one_pass else int(spec.shape[1])  # type: ignore[arg-type]
    lo, hi = dicom_facts.get("clip_hu") or (spec.range or (-1024.0, 3071.0))
    hu, clipped = _clipped(image, Path(path).name, model.name, float(lo), float(hi), max_clipped_fraction)
    step = int(stride if stride is not None else (dicom_facts.get("window_stride") or size // 4))
    centres = _centres(hu.shape, centre, step, max_windows)
    scorer = flagging(model)  # every window's domain score; the model's policy is applied below
    if one_pass:
        got = (ct_slice.score_centre_window(scorer, hu, centre, float(lo)) if centre is not None
               else ct_slice.score_slice_with_domain(scorer, hu, centres, step, float(lo)))
        scores, labels, domain, slice_score = got.scores, got.labels, got.domain_scores, got.slice_domain_score
    else:
        scores, labels, domain = _patchwise(scorer, hu, centres, size, float(lo), batch)
        slice_score = None  # the patch graph scores windows only; the calibration check judges the slice
    guard = decide(model, domain, check_calibration(image.hu, image.padding, float(hi)), len(scores), path,
                   slice_score)
    scores = np.where(guard.refused, np.nan, scores)
    labels = [lab if not refused else "" for lab, refused in zip(labels, guard.refused)]
    positive = model.manifest.decision.positive_label
    result = DicomPrediction(image, centres, scores, labels, model.manifest.decision.threshold, clipped, patch=size,
                             cell=step if centre is None else size, model=f"{model.name} {model.version}",
                             score_name=f"p({positive})" if positive else "score", clip=(float(lo), float(hi)),
                             extra=ct_slice.describe(model) if one_pass else {}, guard=guard)
    if overlay is not None:
        write_overlay(result, overlay, (lo, hi))
    return result


def _clipped(image: CTImage, name: str, owner: str, lo: float, hi: float,
             max_fraction: float) -> tuple[np.ndarray, int]:
    """The slice clipped to the model's HU range, declared padding as air; and how many pixels were clipped.

    Raises:
        InputError: more than ``max_fraction`` of the image's pixels outside the range, or no variation left.
    """
    image_px = ~image.padding if image.padding is not None else np.ones(image.hu.shape, dtype=bool)
    outside = ((image.hu < lo) | (image.hu > hi)) & image_px
    clipped = int(np.sum(outside))
    share = clipped / max(int(image_px.sum()), 1)
    if share > max_fraction:
        raise InputError(
            f"{name}: {share:.0%} of its pixels fall outside {owner}'s HU range [{lo:g}, {hi:g}] after RescaleSlope "
            f"{image.slope:g} / RescaleIntercept {image.intercept:g} (HU {image.hu.min():g} .. {image.hu.max():g}); "
            f"more than {max_fraction:.0%} means the values are not Hounsfield units of a CT slice (a wrong "
            "rescale?): refused rather than scored"
        )
    hu = np.clip(image.hu, lo, hi)
    if image.padding is not None:
        hu[image.padding] = lo  # no image there: air, as beyond the slice's border
    if float(hu.max()) == float(hu.min()):
        raise InputError(f"{name}: every pixel is {float(hu.min()):g} HU: the slice carries no image to score")
    return hu, clipped


def _centres(shape: tuple[int, ...], centre: tuple[int, int] | None, step: int, max_windows: int) -> np.ndarray:
    if centre is not None:
        r, c = centre
        if not (0 <= r < shape[0] and 0 <= c < shape[1]):
            raise InputError(f"--center {r},{c} lies outside the slice of {shape[0]} x {shape[1]} pixels")
        return np.array([centre], dtype=np.int64)
    if not 1 <= step <= max(shape):
        raise InputError(f"--stride {step}: the sliding-window stride must be between 1 and {max(shape)} "
                         f"pixels for this {shape[0]} x {shape[1]} slice")
    n = -(-(shape[0] - step // 2) // step) * -(-(shape[1] - step // 2) // step)
    if n > max_windows:
        raise InputError(f"--stride {step} gives {n} windows on this {shape[0]} x {shape[1]} slice; at "
                         f"most {max_windows} are scored per call: use a larger stride")
    return window_centres((shape[0], shape[1]), step)


def _patchwise(model: Model, hu: np.ndarray, centres: np.ndarray, size: int, fill: float,
               batch: int) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Scores, labels and domain scores of the windows, patch by patch in batches of ``batch``."""
    scores: list[np.ndarray] = []
    labels: list[str] = []
    domain: list[np.ndarray] | None = []
    for start in range(0, len(centres), batch):
        pred = model.predict(cut_patches(hu, centres[start:start + batch], size, fill))
        scores.append(np.asarray(pred.scores, dtype=np.float64).reshape(-1))
        labels += [str(x) for x in (pred.labels if pred.labels is not None else [""] * len(pred.scores))]
        got = pred.domain_scores
        domain = None if domain is None or got is None else [*domain, np.asarray(got, np.float64)]
    return np.concatenate(scores), labels, None if domain is None else np.concatenate(domain)

