"""Real CT slices in Hounsfield units from registry packages (the backgrounds for simulated lesions).

Sources (see ``sources.py``): pydicom's ``CT_small.dcm``, two files of pydicom-data (``693_UNCI.dcm`` and the
two frames of ``eCT_Supplemental.dcm``) and the 108-slice head CT volume of the Debian package
``invesalius-examples``. Every slice comes back as float32 HU clipped to the 12-bit CT range, with its pixel
spacing, so lesions can be sized in millimetres.
"""

from __future__ import annotations

import io
import plistlib
import tarfile
from dataclasses import dataclass

import numpy as np
from medinfer.errors import DatasetError

from .sources import DataFetchError, Source, fetch, register_source

_PYDICOM_CITATION = (
    "pydicom test data (Mason D. L. et al., pydicom: an open source DICOM library, "
    "https://github.com/pydicom/pydicom); see the package's licence notes per file"
)

register_source(Source(
    name="pydicom_ct_small",
    package="pydicom",
    version="3.0.2",
    member="pydicom/data/test_files/CT_small.dcm",
    sha256="3dd31e5cc835b3f2cdd46c9da1982f59251e78518fefa8163d914631c66437d6",
    licence="MIT (pydicom test data)",
    citation=_PYDICOM_CITATION,
    description="one real CT slice, 128x128 int16, RescaleIntercept -1024 (HU -896..1167)",
))
register_source(Source(
    name="pydicom_data_693_unci",
    package="pydicom-data",
    version="1.0.0",
    member="data_store/data/693_UNCI.dcm",
    sha256="42d6c33d6666bf569a53951211be6fca2ab04956db43c3f75a9720d976ab128c",
    licence="MIT (pydicom-data)",
    citation=_PYDICOM_CITATION,
    description="one real CT slice, 512x512, 0.48 mm pixels, uncompressed",
))
for _name, _package, _version, _member, _sha, _what in (
    ("pydicom_mr_small", "pydicom", "3.0.2", "pydicom/data/test_files/MR_small.dcm",
     "3f27d1c22f1a66e80d7bb7c911e8610fd0bb70325a76746a7adb1c0ddefcf2bb", "an MR slice, 64x64 (not CT: no HU scale)"),
    ("pydicom_data_neck", "pydicom-data", "1.0.0", "data_store/data/bad_sequence.dcm",
     "0677915e5c3e8c98498eb3d1b726ccf38ba0d8ada657c8ca7fe1b8b9b5890f4f", "a CT slice of the neck"),
    ("pydicom_data_pancreas", "pydicom-data", "1.0.0", "data_store/data/explicit_VR-UN.dcm",
     "28c4a61022d7dbebec97e2f1bbdad0ed097bee2c62727c26a3f3720248c9c6e7", "a CT slice of the abdomen (pancreas)"),
):  # shifted data for the applicability-domain evaluation, never trained on
    register_source(Source(name=_name, package=_package, version=_version, member=_member, sha256=_sha,
                           licence="MIT (pydicom test data)" if _package == "pydicom" else "MIT (pydicom-data)",
                           citation=_PYDICOM_CITATION,
                           description=f"{_what}: shifted data for the applicability-domain evaluation"))
register_source(Source(
    name="pydicom_data_ect",
    package="pydicom-data",
    version="1.0.0",
    member="data_store/data/eCT_Supplemental.dcm",
    sha256="0a4c3aa02d1b0b4826daa5ffe85ef13be83c1433842a9a98b901e075136dd86f",
    licence="MIT (pydicom-data)",
    citation=_PYDICOM_CITATION,
    description="enhanced CT, 2 real frames of 512x512 (rescale in the functional groups)",
))
register_source(Source(
    name="invesalius_cranium",
    package="invesalius-examples",
    version="3.1.99998-4",
    member="usr/share/doc/invesalius-examples/examples/Cranium.inv3",
    sha256="3b34f11f7c4f557f4c65cd6543c412a2f6ceb0cfecfd9c41184420e02d9b7e2a",
    licence="GPL-2 (Debian package invesalius-examples)",
    citation="InVesalius 3 example 'ProMED CT 0051' (CTI Renato Archer, Brazil), Debian package "
             "invesalius-examples 3.1.99998-4",
    description="a real head CT volume: 108 slices of 256x256 int16 HU, 0.957 x 0.957 x 1.5 mm",
    kind="deb",
    archive_sha256="f2f14bdfef6dc3812eafc5013d133c6c18370aaab5666b78d54af2e7db432f97",
))

HU_MIN, HU_MAX = -1024.0, 3071.0  # the 12-bit CT range; padding outside the field of view is clipped to air
DICOM_SOURCES = ("pydicom_ct_small", "pydicom_data_693_unci", "pydicom_data_ect")
VOLUME_SOURCE = "invesalius_cranium"


@dataclass(frozen=True)
class Slice:
    """One real CT slice: HU (float32, clipped), pixel spacing in mm, and where it came from."""

    source: str
    index: int
    hu: np.ndarray
    spacing_mm: float

    @property
    def key(self) -> str:
        return f"{self.source}[{self.index}]"


def dicom_slices(name: str) -> list[Slice]:
    """All frames of one DICOM source as HU slices (RescaleSlope/Intercept applied, enhanced CT included)."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(fetch(name)))
    pixels = ds.pixel_array.astype(np.float32)
    frames = pixels if pixels.ndim == 3 else pixels[None]
    slope, intercept = _rescale(ds)
    spacing = _spacing(ds)
    return [Slice(name, i, np.clip(f * slope + intercept, HU_MIN, HU_MAX).astype(np.float32), spacing)
            for i, f in enumerate(frames)]


def raw_pixels(name: str) -> np.ndarray:
    """A DICOM source's first frame as stored values (no rescale): e.g. an MR slice fed as if it were HU."""
    import pydicom

    pixels = pydicom.dcmread(io.BytesIO(fetch(name))).pixel_array.astype(np.float32)
    return pixels if pixels.ndim == 2 else pixels[0]


def _rescale(ds: object) -> tuple[float, float]:
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:  # type: ignore[operator]
        return float(getattr(ds, "RescaleSlope", 1.0)), float(getattr(ds, "RescaleIntercept", 0.0))
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = getattr(ds, group, None)
        if seq and "PixelValueTransformationSequence" in seq[0]:
            t = seq[0].PixelValueTransformationSequence[0]
            return float(t.RescaleSlope), float(t.RescaleIntercept)
    return 1.0, 0.0


def _spacing(ds: object) -> float:
    spacing = getattr(ds, "PixelSpacing", None)
    if spacing is None:
        seq = getattr(ds, "SharedFunctionalGroupsSequence", None)
        if seq and "PixelMeasuresSequence" in seq[0]:
            spacing = seq[0].PixelMeasuresSequence[0].PixelSpacing
    return float(spacing[0]) if spacing else 1.0


def volume_slices(name: str = VOLUME_SOURCE) -> list[Slice]:
    """The slices of an InVesalius ``.inv3`` project (gzip'd tar: ``main.plist`` describes ``matrix.dat``)."""
    with tarfile.open(fileobj=io.BytesIO(fetch(name)), mode="r:gz") as tar:
        members = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
        meta = plistlib.loads(_read(tar, members, "main.plist"))
        matrix = meta["matrix"]
        raw = _read(tar, members, matrix["filename"])
    shape = tuple(int(d) for d in matrix["shape"])
    vol = np.frombuffer(raw, dtype=np.dtype(matrix["dtype"])).reshape(shape)
    if meta.get("modality", "CT") != "CT":
        raise DatasetError(f"{name}: modality {meta.get('modality')!r}, expected CT")
    spacing = float(meta["spacing"][0])
    return [Slice(name, z, np.clip(vol[z].astype(np.float32), HU_MIN, HU_MAX), spacing) for z in range(shape[0])]


def _read(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes:
    member = members.get(name)
    handle = tar.extractfile(member) if member is not None else None
    if handle is None:
        raise DatasetError(f"the .inv3 archive has no {name} (members: {sorted(members)})")
    return handle.read()


def load_slices(which: str = "all") -> list[Slice]:
    """Real CT slices: ``"all"`` (DICOM files + the InVesalius volume) or ``"pydicom"`` (CT_small.dcm only).

    Raises:
        DatasetError: an unknown ``which``.
    """
    if which == "pydicom":
        return dicom_slices("pydicom_ct_small")
    if which == "dicom":
        return [s for name in DICOM_SOURCES for s in dicom_slices(name)]
    if which == "all":
        dicom = [s for name in DICOM_SOURCES for s in dicom_slices(name)]
        try:
            return dicom + volume_slices()
        except DataFetchError as exc:
            raise DataFetchError(
                f"{exc}\nWithout the InVesalius volume, train on the DICOM slices alone (far less background "
                "variety): --set backgrounds=dicom"
            ) from None
    raise DatasetError(f"backgrounds must be 'all', 'dicom' or 'pydicom', got {which!r}")


def sources_for(which: str) -> tuple[str, ...]:
    return {"pydicom": ("pydicom_ct_small",), "dicom": DICOM_SOURCES}.get(which, DICOM_SOURCES + (VOLUME_SOURCE,))
