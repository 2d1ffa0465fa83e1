"""A CT slice through a segmentation bundle, and its mask as a DICOM Segmentation (highdicom).

A bundle segments when one of its outputs declares ``facts.segmentation`` (``segments``: the label of each
foreground channel, ``threshold``: the probability at which a pixel belongs to it, ``multiple``: the size the input's
height and width must be a multiple of; written from the contract when the model is brought). Its input is CT in
Hounsfield units, channels first, ``(N, 1, H, W)`` with free H and W (a fully convolutional network): the whole slice
runs in one pass, padded with air (-1024 HU) to the multiple and the mask cropped back. ``--dicom-out DIR`` writes the
mask as a binary DICOM SEG referencing the source slice (``<stem>.seg.dcm``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from ..extras import optional_import
from ..manifest import Manifest, TensorSpec
from ..model import Model
from .dicom import CTImage, read_ct

FACT = "segmentation"
AIR_HU = -1024.0
MANUFACTURER = "medinfer"


def segmentation_output(manifest: Manifest) -> tuple[TensorSpec, dict[str, Any]] | None:
    """The output that holds a mask and its declared facts, or None for a bundle that does not segment."""
    for spec in manifest.outputs:
        facts = (spec.facts or {}).get(FACT)
        if isinstance(facts, dict):
            return spec, facts
    return None


@dataclass
class SegmentationResult:
    """One slice's mask: per-pixel probability, the thresholded mask, and the bundle's decision for the slice."""

    image: CTImage
    probability: np.ndarray  # (H, W) float32
    mask: np.ndarray  # (H, W) bool
    label: str
    score: float
    segments: tuple[str, ...]
    threshold: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.image.path, "label": self.label, "score": self.score, "segments": list(self.segments),
                "threshold": self.threshold, "pixels": int(self.mask.sum()), "shape": list(self.mask.shape),
                "max_probability": float(self.probability.max(initial=0.0)), **self.extra}


def predict_slice(model: Model, path: str | Path, *, frame: int | None = None) -> SegmentationResult:
    """Segment one DICOM CT slice with a segmentation bundle.

    Raises:
        InputError: the bundle does not segment CT, or the file is refused (see :func:`medinfer.tools.dicom.read_ct`).
    """
    found = segmentation_output(model.manifest)
    spec = model.manifest.inputs[0]
    if found is None or len(model.manifest.inputs) != 1 or spec.rank != 4 or spec.units != "HU":
        raise InputError(f"{model.name} does not segment CT slices: it needs one (N, 1, H, W) input in HU and an "
                         "output declaring facts.segmentation")
    out, facts = found
    image = read_ct(path, owner=model.name, frame=frame)
    multiple = max(1, int(facts.get("multiple", 1)))
    h, w = image.hu.shape
    lo, hi = spec.range or (AIR_HU, float(np.max(image.hu)))
    padded = np.full((-(-h // multiple) * multiple, -(-w // multiple) * multiple), AIR_HU, np.float32)
    padded[:h, :w] = np.clip(image.hu, lo, hi)
    x = padded[None, None]
    pred = model.predict(x)  # the decision (and the domain flag) for the slice, by the core's rule
    feeds, _ = model.prepare(x)  # the core fetches the decision's outputs only: the mask from the same session
    probability = np.asarray(model.session.run([out.name], feeds)[0])[0, :h, :w].astype(np.float32)
    threshold = float(facts.get("threshold", 0.5))
    label = str(pred.labels[0]) if pred.labels is not None else ""
    score = float(np.asarray(pred.scores).reshape(-1)[0])
    return SegmentationResult(image, probability, probability >= threshold, label, score,
                              tuple(str(s) for s in facts.get("segments", ("finding",))), threshold)


def write_seg(model: Model, result: SegmentationResult, out_dir: str | Path) -> Path:
    """The mask as a binary DICOM SEG of the source slice (``out_dir/<stem>.seg.dcm``).

    Raises:
        MissingExtraError: highdicom or pydicom is not installed (the [dicom] extra).
        UsageError: ``out_dir`` exists and is not a folder.
    """
    hd = optional_import("highdicom", "dicom", "DICOM SEG output")
    pydicom = optional_import("pydicom", "dicom", "DICOM SEG output")
    from pydicom.sr.codedict import codes

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--dicom-out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    source = pydicom.dcmread(result.image.path)
    m = model.manifest
    algorithm = hd.AlgorithmIdentificationSequence(name=m.name, version=m.version,
                                                   family=codes.cid7162.ArtificialIntelligence)
    segments = [hd.seg.SegmentDescription(
        segment_number=1, segment_label=result.segments[0][:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)]
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=result.mask[None].astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=segments,
        series_instance_uid=hd.UID(), series_number=int(getattr(source, "SeriesNumber", 0) or 0) + 900,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=m.name[:64],
        software_versions=f"{m.name} {m.version}"[:64], device_serial_number=model.model_sha256[:16],
        omit_empty_frames=False, series_description=f"{m.name} segmentation (threshold {result.threshold:g})"[:64])
    path = out / f"{Path(result.image.path).stem}.seg.dcm"
    seg.save_as(path)
    return path
