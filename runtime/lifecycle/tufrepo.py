"""A TUF repository of bundles (python-tuf's metadata API; ``medinfer repo``): a build machine's tooling.

Layout (consistent snapshots, so a client never mixes files of two repository states)::

    REPO/metadata/1.root.json, root.json          root: the keys of every role (rotate by writing 2.root.json)
    REPO/metadata/N.targets.json                  targets: each model's bundle.tar with length, sha256, custom
    REPO/metadata/N.snapshot.json                 snapshot: the version of targets.json
    REPO/metadata/timestamp.json                  timestamp: the version of snapshot.json (short expiry)
    REPO/targets/MODEL/<sha256>.bundle.tar        the bundle as a deterministic tar of regular files

Each role has its own Ed25519 key in ``KEYS/ROLE.pem`` (mode 0600; keep root's offline). Every metadata file
carries a version that only goes up and an expiry (root 365 days, targets and snapshot 30, timestamp 1 by default:
re-sign the timestamp with ``medinfer repo timestamp`` to keep clients updating). A target's ``custom`` metadata
names the bundle (name, version, release, manifest sha256): the client checks it against the bundle it unpacks.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path
from typing import Any

from medinfer.errors import UsageError
from medinfer.extras import optional_import
from medinfer.timestamps import utc_datetime, utc_text

from .slots import bundle_key

ROLES = ("root", "targets", "snapshot", "timestamp")
EXPIRY_DAYS = {"root": 365.0, "targets": 30.0, "snapshot": 30.0, "timestamp": 1.0}
TARGET_NAME = "bundle.tar"


def tuf_metadata() -> Any:
    """python-tuf's metadata API, or MissingExtraError naming the [lifecycle] extra."""
    return optional_import("tuf.api.metadata", "lifecycle", "TUF repositories and updates")


def _expiry(role: str, days: float | None) -> Any:
    """The role's expiry as the datetime python-tuf takes: now + its days, whole seconds."""
    return utc_datetime(time.time() + 86400 * (EXPIRY_DAYS[role] if days is None else days))


def _private(keys: Path, role: str) -> Any:
    from cryptography.hazmat.primitives import serialization

    path = keys / f"{role}.pem"
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise UsageError(f"the {role} key {path} cannot be read ({exc}); create the keys with 'medinfer repo init'") \
            from None


def _signer(keys: Path, role: str) -> Any:
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner(_private(keys, role))


def _new_keys(keys: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    for role in ROLES:
        path = keys / f"{role}.pem"
        if path.exists():
            raise UsageError(f"{path} exists; refusing to overwrite a repository key")
        pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)


def _write(md: Any, path: Path, keys: Path) -> None:
    from tuf.api.serialization.json import JSONSerializer

    md.signatures.clear()
    md.sign(_signer(keys, md.signed.type))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(md.to_bytes(JSONSerializer(compact=False)))
    os.replace(tmp, path)


def init(repo: str | Path, keys: str | Path, *, expires_days: float | None = None) -> dict[str, Any]:
    """Create the role keys (in ``keys``) and version 1 of every role's metadata (in ``repo/metadata``).

    Raises:
        UsageError: the repository or a key exists already.
        MissingExtraError: python-tuf is not installed (the [lifecycle] extra).
    """
    m = tuf_metadata()
    from securesystemslib.signer import SSlibKey

    repo, keys = Path(repo), Path(keys)
    if (repo / "metadata" / "root.json").exists():
        raise UsageError(f"{repo} already holds a TUF repository (metadata/root.json)")
    _new_keys(keys)
    root = m.Root(expires=_expiry("root", expires_days), consistent_snapshot=True)
    for role in ROLES:
        root.add_key(SSlibKey.from_crypto(_private(keys, role).public_key()), role)
    meta = repo / "metadata"
    root_md = m.Metadata(root)
    _write(root_md, meta / "1.root.json", keys)
    _write(root_md, meta / "root.json", keys)
    targets = m.Metadata(m.Targets(expires=_expiry("targets", expires_days)))
    _write(targets, meta / "1.targets.json", keys)
    _publish(repo, keys, 1, expires_days)
    return {"message": f"TUF repository in {repo} (keys in {keys}: keep root.pem offline); give clients "
                       f"{meta / 'root.json'} as their trusted root", "root": str(meta / "root.json")}


def _latest(repo: Path) -> tuple[Any, Any, Any]:
    """The current targets, snapshot and timestamp metadata (as the timestamp names them)."""
    m = tuf_metadata()
    meta = repo / "metadata"
    if not (meta / "timestamp.json").is_file():
        raise UsageError(f"{repo} holds no TUF repository (create it with 'medinfer repo init')")
    timestamp = m.Metadata.from_file(str(meta / "timestamp.json"))
    snapshot = m.Metadata.from_file(str(meta / f"{timestamp.signed.snapshot_meta.version}.snapshot.json"))
    targets = m.Metadata.from_file(str(meta / f"{snapshot.signed.meta['targets.json'].version}.targets.json"))
    return targets, snapshot, timestamp


def _publish(repo: Path, keys: Path, targets_version: int, expires_days: float | None) -> None:
    """A new snapshot naming ``targets_version`` and a new timestamp naming that snapshot."""
    m = tuf_metadata()
    meta = repo / "metadata"
    try:
        _, old_snapshot, old_timestamp = _latest(repo)
        snapshot_version, timestamp_version = old_snapshot.signed.version + 1, old_timestamp.signed.version + 1
    except UsageError:
        snapshot_version = timestamp_version = 1
    snapshot = m.Snapshot(version=snapshot_version, expires=_expiry("snapshot", expires_days),
                          meta={"targets.json": m.MetaFile(version=targets_version)})
    _write(m.Metadata(snapshot), meta / f"{snapshot_version}.snapshot.json", keys)
    timestamp = m.Timestamp(version=timestamp_version, expires=_expiry("timestamp", expires_days),
                            snapshot_meta=m.MetaFile(version=snapshot_version))
    _write(m.Metadata(timestamp), meta / "timestamp.json", keys)


def bundle_tar(bundle: Path) -> bytes:
    """The bundle folder as a deterministic tar: its regular files, sorted, with fixed owners, modes and times.

    Raises:
        UsageError: a symlink or special file in the bundle (a bundle holds regular files only).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in bundle.rglob("*")):
            rel = path.relative_to(bundle).as_posix()
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise UsageError(f"{bundle}: '{rel}' is not a regular file; a bundle holds regular files only")
            if path.is_dir():
                continue
            data = path.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, 0, 0, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def add(repo: str | Path, keys: str | Path, bundle: str | Path, *, expires_days: float | None = None) -> dict[str, Any]:
    """Publish ``bundle`` as the target ``MODEL/bundle.tar`` (a new targets, snapshot and timestamp version).

    The bundle is verified first (:func:`medinfer.load`): a repository never serves a bundle that does not load.
    """
    import medinfer

    m = tuf_metadata()
    repo, keys, bundle = Path(repo), Path(keys), Path(bundle)
    medinfer.load(bundle)
    key = bundle_key(bundle)
    data = bundle_tar(bundle)
    path = f"{key.name}/{TARGET_NAME}"
    target = m.TargetFile.from_data(path, data, ["sha256"])
    target.unrecognized_fields["custom"] = {"medinfer": {"name": key.name, "version": key.version,
                                                         "release": key.release, "manifest_sha256": key.sha256}}
    digest = target.hashes["sha256"]
    out = repo / "targets" / key.name / f"{digest}.{TARGET_NAME}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    targets, _, _ = _latest(repo)
    targets.signed.targets[path] = target
    targets.signed.version += 1
    targets.signed.expires = _expiry("targets", expires_days)
    _write(targets, repo / "metadata" / f"{targets.signed.version}.targets.json", keys)
    _publish(repo, keys, targets.signed.version, expires_days)
    return {"message": f"published {key} as {path} (targets version {targets.signed.version})", "target": path,
            "sha256": digest, "targets_version": targets.signed.version}


def refresh_timestamp(repo: str | Path, keys: str | Path, *, expires_days: float | None = None) -> dict[str, Any]:
    """Re-sign the timestamp with a new version and expiry (the repository's heartbeat)."""
    m = tuf_metadata()
    repo, keys = Path(repo), Path(keys)
    _, snapshot, timestamp = _latest(repo)
    new = m.Timestamp(version=timestamp.signed.version + 1, expires=_expiry("timestamp", expires_days),
                      snapshot_meta=m.MetaFile(version=snapshot.signed.version))
    _write(m.Metadata(new), repo / "metadata" / "timestamp.json", keys)
    return {"message": f"timestamp version {new.version}, expires {utc_text(new.expires.timestamp())}",
            "version": new.version}
