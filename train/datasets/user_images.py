"""User-supplied labelled images for ``lung_nodule_cnn`` (``medinfer train lung_nodule_cnn --set data=PATH``).

Two layouts are read:

1. A folder with ``labels.csv`` and the images it names (DICOM ``.dcm`` or ``.png``)::

       file,label[,split][,patient][,row,col]
       scans/a.dcm,1,train,P001,256,240

   ``label`` is 0/1 or ``no_nodule``/``nodule``. ``row,col`` (optional) centre a 100x100 patch; without them an
   image that is not 100x100 is resized to it. ``split`` (train/validation/test) is used if present, else whole
   patients go to one part (``patient`` column), else images are split 70/10/20 at random (seeded).
   DICOM must be CT: HU = stored value x RescaleSlope + RescaleIntercept. 16-bit PNG is read as HU + 1024
   (the usual export of CT to PNG); 8-bit PNG is read as a lung window (0 -> -1350 HU, 255 -> +150 HU).

2. A MedMNIST ``.npz`` (``train_images``/``train_labels``, ``val_*``, ``test_*``; e.g. ``nodulemnist3d`` slices
   or ``organamnist``): its own split is kept; 8-bit intensities are mapped like 8-bit PNG; the class given by
   ``positive_class`` is "nodule", every other class "no_nodule".
"""

from __future__ import annotations

import csv
import io
import zlib
from pathlib import Path

import numpy as np
from medinfer.errors import DatasetError
from medinfer.integrity import sha256_file
from medinfer.manifest import DataSource

from ..spec import Dataset, Progress, quiet
from .ct import HU_MAX, HU_MIN
from .lesions import PATCH

LUNG_WINDOW = (-1350.0, 150.0)  # how 8-bit intensities are mapped back to HU
PARTS = ("train", "validation", "test")


def load(path: str | Path, *, positive_class: int = 1, sample: int | None = None, seed: int = 0,
         progress: Progress = quiet) -> tuple[Dataset, tuple[np.ndarray, np.ndarray] | None]:
    """Read user data into a Dataset (and the validation part, or None).

    Raises:
        DatasetError: ``path`` does not exist, or the folder has no labels.csv.
        DatasetError: unreadable labels, images that are not CT, or a split without training or test images.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"user data {path} does not exist; pass a folder with labels.csv or a MedMNIST .npz")
    if path.is_file() and path.suffix == ".npz":
        parts, digest, kind = _medmnist(path, positive_class), sha256_file(path), "MedMNIST .npz"
    else:
        labels = path / "labels.csv"
        if not labels.is_file():
            raise DatasetError(f"{path} has no labels.csv (columns: file,label[,split][,patient][,row,col])")
        parts, digest, kind = _folder(path, labels, seed, progress), sha256_file(labels), "image folder"
    rng = np.random.default_rng(seed)
    if sample:
        for key, (X, y) in parts.items():
            keep = np.sort(rng.choice(len(y), size=min(len(y), max(2, sample * len(y) // _total(parts))),
                                      replace=False))
            parts[key] = (X[keep], y[keep])
    for key in ("train", "test"):
        if len(parts[key][1]) == 0:
            raise DatasetError(f"user data {path} has no {key} images; give some rows split={key}")
    source = DataSource(name="user_data", package="user-supplied", version="-", file=str(path.name),
                        sha256=digest, licence="as supplied by the user", citation=f"user-supplied {kind} {path}",
                        description=f"{kind}; sha256 of {'the .npz' if path.is_file() else 'labels.csv'}")
    (Xtr, ytr), (Xte, yte) = parts["train"], parts["test"]
    ds = Dataset(
        X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte, sources=(source,),
        split={"method": f"as given by the {kind}", **{f"n_{k}": int(len(v[1])) for k, v in parts.items()},
               "sample": sample, "seed": seed},
        synthetic=False,
        description=f"user-supplied labelled {kind} ({_total(parts)} images, {int(ytr.sum() + yte.sum())} "
                    "train+test positives)",
        preprocessing=f"HU clipped to [{HU_MIN:g}, {HU_MAX:g}]; 8-bit intensities mapped to the lung window "
                      f"{LUNG_WINDOW}; {PATCH}x{PATCH} crop at (row, col) or bilinear resize",
    )
    val = parts["validation"]
    return ds, ((val[0], val[1].astype(np.float32)) if len(val[1]) else None)


def _total(parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> int:
    return sum(len(v[1]) for v in parts.values())


def _medmnist(path: Path, positive_class: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
        missing = [f"{p}_{k}" for p in ("train", "val", "test") for k in ("images", "labels")
                   if f"{p}_{k}" not in keys]
        if missing:
            raise DatasetError(f"{path} is not a MedMNIST .npz: missing {missing} (has {sorted(keys)})")
        parts = {}
        for ours, theirs in zip(PARTS, ("train", "val", "test")):
            images = npz[f"{theirs}_images"]
            labels = npz[f"{theirs}_labels"].reshape(len(images), -1)[:, 0]
            parts[ours] = (np.stack([_to_patch(_intensity_to_hu(im)) for im in images]) if len(images)
                           else np.empty((0, PATCH, PATCH, 1), np.float32),
                           (labels == positive_class).astype(np.int64))
    return parts


def _intensity_to_hu(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:  # colour or 3-D (MedMNIST 3D): take the mean channel / the middle slice
        image = image.mean(axis=-1) if image.shape[-1] in (3, 4) else image[image.shape[0] // 2]
    lo, hi = LUNG_WINDOW
    return lo + image / 255.0 * (hi - lo)


def _to_patch(hu: np.ndarray, centre: tuple[int, int] | None = None) -> np.ndarray:
    hu = np.asarray(hu, dtype=np.float32)
    if centre is not None:
        padded = np.pad(hu, PATCH, constant_values=HU_MIN)
        r, c = centre[0] + PATCH - PATCH // 2, centre[1] + PATCH - PATCH // 2
        out = padded[r:r + PATCH, c:c + PATCH]
    elif hu.shape != (PATCH, PATCH):
        out = _resize(hu, PATCH)
    else:
        out = hu
    return np.clip(out, HU_MIN, HU_MAX)[..., None].astype(np.float32)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize in numpy (no image library needed)."""
    h, w = image.shape
    rows, cols = np.linspace(0, h - 1, size), np.linspace(0, w - 1, size)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    top = image[r0][:, c0] * (1 - fc) + image[r0][:, c1] * fc
    bottom = image[r1][:, c0] * (1 - fc) + image[r1][:, c1] * fc
    return top * (1 - fr) + bottom * fr


def _label(raw: str, where: str) -> int:
    value = raw.strip().lower()
    if value in ("1", "nodule", "positive", "true"):
        return 1
    if value in ("0", "no_nodule", "negative", "false", "none"):
        return 0
    raise DatasetError(f"{where}: label {raw!r} is not 0/1 or nodule/no_nodule")


def _folder(root: Path, labels: Path, seed: int, progress: Progress) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with open(labels, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise DatasetError(f"{labels} needs a header with at least 'file' and 'label' columns")
    progress(f"reading {len(rows)} user images listed in {labels}")
    X, y, parts = [], [], []
    for i, row in enumerate(rows):
        where = f"{labels.name} row {i + 2}"
        image = _read_image(root / row["file"], where)
        centre = (int(row["row"]), int(row["col"])) if row.get("row") and row.get("col") else None
        X.append(_to_patch(image, centre))
        y.append(_label(row["label"], where))
        parts.append(_part(row, i, seed, where))
    X_all, y_all, p_all = np.stack(X), np.asarray(y, dtype=np.int64), np.asarray(parts)
    return {p: (X_all[p_all == p], y_all[p_all == p]) for p in PARTS}


def _part(row: dict[str, str], i: int, seed: int, where: str) -> str:
    if row.get("split"):
        part = row["split"].strip().lower()
        part = {"val": "validation", "valid": "validation"}.get(part, part)
        if part not in PARTS:
            raise DatasetError(f"{where}: split {row['split']!r} is not one of {PARTS}")
        return part
    key = row.get("patient") or f"{row['file']}"
    u = (zlib.crc32(f"{seed}:{key}".encode()) % 1000) / 1000.0
    return "train" if u < 0.7 else "validation" if u < 0.8 else "test"


def _read_image(path: Path, where: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{where}: image {path} does not exist")
    if path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(io.BytesIO(path.read_bytes())) as im:
            arr = np.asarray(im)
        if arr.dtype == np.uint16 or arr.dtype == np.int32:
            return arr.astype(np.float32) - 1024.0  # 16-bit PNG export of CT: HU + 1024
        return _intensity_to_hu(arr)
    import pydicom

    ds = pydicom.dcmread(path)
    modality = str(getattr(ds, "Modality", ""))
    if modality != "CT":
        raise DatasetError(f"{where}: {path.name} has Modality {modality!r}; lung_nodule_cnn trains on CT only")
    pixels = ds.pixel_array.astype(np.float32)
    if pixels.ndim == 3:
        pixels = pixels[pixels.shape[0] // 2]
    return pixels * float(getattr(ds, "RescaleSlope", 1.0)) + float(getattr(ds, "RescaleIntercept", 0.0))


def write_example_folder(folder: Path, images: np.ndarray, labels: np.ndarray, splits: list[str]) -> Path:
    """Write HU images as 16-bit PNG (HU + 1024) plus labels.csv: the folder layout this module reads."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["file,label,split"]
    for i, (image, label, split) in enumerate(zip(images, labels, splits)):
        name = f"img{i:04d}.png"
        arr = np.clip(np.asarray(image)[..., 0] + 1024.0, 0, 65535).astype(np.uint16)
        Image.fromarray(arr).save(folder / name)
        lines.append(f"{name},{int(label)},{split}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder
