"""``medinfer update``: fetch the newest bundle of a model from a TUF repository and install it into its slots.

1. python-tuf's client refreshes the repository metadata from the trusted root kept in ``SLOT_DIR/tuf/`` (given
   once with ``--root``): signatures by the keys root names, thresholds, versions that only go up (a replayed old
   timestamp or snapshot is refused against the versions stored there), expiry of every role;
2. the target ``MODEL/bundle.tar`` is downloaded and its length and sha256 checked against the signed targets
   metadata (a tampered file is refused);
3. its ``custom`` metadata (name, version, release, manifest sha256) is compared with the active bundle (an older
   one is refused before it is downloaded) and with the bundle unpacked from it;
4. :func:`medinfer.lifecycle.slots.install` takes it from there: the inactive slot, the bundle's own digests and
   signature, the self-test, optionally ``medinfer diff`` against the active bundle (``--require-diff``), the
   atomic switch, and the rollback when it fails after the switch.

Every repository fault is an :class:`~medinfer.errors.UpdateRefused` (exit 17) and leaves the active slot as it was.
Repository URLs may be ``https://``, ``http://`` (tests, a loopback server) or ``file://`` (a USB medium, a
mounted share).
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from medinfer.errors import MedinferError, UpdateRefused, UsageError

from .slots import BundleKey, active_bundle, bundle_key, install
from .tufrepo import TARGET_NAME, tuf_metadata

MAX_MEMBERS = 10_000


def _file_fetcher() -> Any:
    from tuf.api.exceptions import DownloadHTTPError
    from tuf.ngclient import FetcherInterface

    class FileFetcher(FetcherInterface):
        """``file://`` URLs (a repository on a medium): a missing file is a 404, as over HTTP."""

        def _fetch(self, url: str) -> Iterator[bytes]:
            path = Path(unquote(urlparse(url).path))
            try:
                fh = open(path, "rb")  # noqa: SIM115 - closed by the generator
            except FileNotFoundError:
                raise DownloadHTTPError(f"{url} not found", 404) from None

            def chunks() -> Iterator[bytes]:
                with fh:
                    while block := fh.read(1 << 16):
                        yield block

            return chunks()

    return FileFetcher()


def _updater(repo: str, slot_dir: Path, root: str | Path | None) -> Any:
    tuf_metadata()
    from tuf.ngclient import Updater

    metadata_dir = slot_dir / "tuf"
    metadata_dir.mkdir(parents=True, exist_ok=True)
    bootstrap = None
    if not (metadata_dir / "root.json").is_file():
        if root is None:
            raise UsageError("the first update of a slot folder needs --root ROOT.json: the repository's trusted root "
                             "metadata, delivered with the device (later updates use the one stored in "
                             f"{metadata_dir})")
        bootstrap = Path(root).read_bytes()
    downloads = slot_dir / ".download"
    downloads.mkdir(exist_ok=True)
    repo = repo.rstrip("/")
    fetcher = _file_fetcher() if repo.startswith("file://") else None
    return Updater(str(metadata_dir), f"{repo}/metadata/", str(downloads), f"{repo}/targets/", fetcher=fetcher,
                   bootstrap=bootstrap)


def _refused(exc: Exception, repo: str) -> UpdateRefused:
    return UpdateRefused(f"the update repository {repo} was refused: {type(exc).__name__}: {exc}; the active bundle "
                         "is unchanged")


def update(repo: str, slot_dir: str | Path, model: str, *, root: str | Path | None = None,
           trusted_keys: tuple[str | Path, ...] = (), require_signature: bool = False, require_diff: bool = False,
           reference: str | Path | None = None) -> dict[str, Any]:
    """Fetch, verify and install the newest bundle of ``model`` (see the module docstring).

    Returns:
        What happened: ``{"message", "installed", "switched", "slot", "previous"}``.

    Raises:
        UpdateRefused: repository metadata or target that does not verify, an older bundle, a target that does not
            describe the bundle inside it.
        ChangeRejected: ``require_diff`` and the candidate is outside the active bundle's PCCP.
        SelfTestError, IntegrityError, SignatureError: the candidate failed in its slot (nothing switched).
    """
    tuf_metadata()  # MissingExtraError naming [lifecycle] before anything else
    from tuf.api.exceptions import DownloadError, RepositoryError

    slot_dir = Path(slot_dir)
    slot_dir.mkdir(parents=True, exist_ok=True)
    try:
        updater = _updater(repo, slot_dir, root)
        updater.refresh()
        info = updater.get_targetinfo(f"{model}/{TARGET_NAME}")
    except MedinferError:
        raise
    except (RepositoryError, DownloadError, ValueError) as exc:  # ValueError: a root that is not TUF metadata
        raise _refused(exc, repo) from None
    if info is None:
        raise UpdateRefused(f"the update repository {repo} has no target {model}/{TARGET_NAME}")
    described = (info.custom or {}).get("medinfer") or {}
    active = active_bundle(slot_dir)
    if active is not None and described.get("manifest_sha256") == active.key.sha256:
        return {"message": f"up to date: {active.key} is the newest bundle in {repo}", "installed": str(active.key),
                "switched": False, "slot": active.slot, "previous": str(active.key)}
    if active is not None and _older(described, active.key):
        raise UpdateRefused(f"anti-rollback: the repository's newest {model} is version {described.get('version')} "
                            f"release {described.get('release')}, older than the active {active.key}; not downloaded")
    work = slot_dir / ".download"
    try:
        tar_path = Path(updater.download_target(info, str(work / f"{model}.tar")))
    except (RepositoryError, DownloadError) as exc:
        raise _refused(exc, repo) from None
    unpacked = work / model
    try:
        _unpack(tar_path, unpacked)
        key = bundle_key(unpacked)
        expected = {"name": key.name, "version": key.version, "release": key.release, "manifest_sha256": key.sha256}
        if described != expected:
            raise UpdateRefused(f"the target {model}/{TARGET_NAME} says it holds {described}, but the bundle inside is "
                                f"{expected}: refused")
        gate = _diff_gate(reference, trusted_keys) if require_diff else None
        report = install(slot_dir, unpacked, trusted_keys=trusted_keys, require_signature=require_signature,
                         gate=gate)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"message": report.message, "installed": str(report.installed), "switched": report.switched,
            "slot": report.slot, "previous": str(report.previous) if report.previous else None}


def _older(described: dict[str, Any], active: BundleKey) -> bool:
    try:
        key = BundleKey(str(described["name"]), str(described["version"]), int(described["release"]),
                        str(described["manifest_sha256"]))
        return key.order() < active.order()
    except (KeyError, TypeError, ValueError, UsageError):
        return False  # undescribed: the bundle itself is checked after the download


def _diff_gate(reference: str | Path | None, trusted_keys: tuple[str | Path, ...]) -> Any:
    from .diff import diff, require_pass

    def gate(active: Path, candidate: Path) -> dict[str, Any]:
        return require_pass(diff(active, candidate, reference, trusted_keys=trusted_keys)).to_dict()

    return gate


def _unpack(tar_path: Path, dest: Path) -> None:
    """Unpack a bundle tar: regular files only, plain relative names one folder deep at most.

    Raises:
        UpdateRefused: a link, device, absolute or ``..`` name, or more members than a bundle has.
    """
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise UpdateRefused(f"the bundle archive holds {len(members)} entries; a bundle has a few dozen")
            for member in members:
                name = PurePosixPath(member.name)
                if not member.isfile() or name.is_absolute() or ".." in name.parts or len(name.parts) > 2:
                    raise UpdateRefused(f"the bundle archive holds {member.name!r}, which is not a plain regular "
                                        "file of a bundle: refused")
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() members always have data
                    raise UpdateRefused(f"the bundle archive entry {member.name!r} cannot be read")
                target = dest.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, open(target, "xb") as out:
                    shutil.copyfileobj(source, out)
    except (tarfile.TarError, OSError) as exc:
        raise UpdateRefused(f"the bundle archive cannot be unpacked ({exc})") from None
