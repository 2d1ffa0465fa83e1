"""Two install slots per model, an atomic switch, anti-rollback and automatic rollback.

A slot folder holds one model::

    SLOT_DIR/
      a/ b/          the two slots, each a whole bundle
      current        symlink to the active slot ("a" or "b"), switched by rename(2): atomic
      state.json     the installed bundle, the anti-rollback floor, the generation and the history
      .lock          flock: one install at a time

``install`` copies a bundle into the INACTIVE slot, loads it there (sha256 of every file, a present signature, the
golden self-test: :func:`medinfer.load`), optionally gates it (``medinfer diff`` against the active bundle), and
only then switches ``current``. After the switch the bundle is loaded once more through ``current``; if that fails
the switch is undone (automatic rollback). A failure before the switch leaves the active slot untouched.

**Ordering (anti-rollback).** Bundles of one model are ordered by ``(release, version)``: ``release`` is the
monotonic counter of the manifest's ``lineage`` (0 for a bundle without one), ``version`` the manifest version as
a tuple of integers (``1.10.0`` > ``1.9.3``). A candidate whose key is smaller than the floor (the largest key ever
activated in this slot folder) is refused with :class:`~medinfer.errors.UpdateRefused` (exit 17); the same key with
other bytes is refused too (two different bundles cannot claim one place in the order); the same bundle again is a
no-op.

**For a server** (``medinfer serve``): :func:`active_bundle` gives the resolved slot folder of the active bundle
(load from that path, never through ``current``, so a switch during a load cannot mix two bundles), and
:class:`SlotWatcher` polls for a switch (a ``stat`` of ``current`` and ``state.json``; microseconds).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import medinfer
from medinfer.errors import MedinferError, UpdateRefused, UsageError
from medinfer.integrity import sha256_bytes
from medinfer.manifest import decode_manifest, read_manifest_bytes
from medinfer.timestamps import utc_text

log = logging.getLogger(__name__)

SLOTS = ("a", "b")
CURRENT = "current"
STATE = "state.json"
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.10.0"`` -> ``(1, 10, 0)`` (trailing zeros dropped: ``1.0`` equals ``1.0.0``).

    Raises:
        UsageError: not one to four dot-separated integers (no order can be defined for it).
    """
    if not _VERSION.match(version):
        raise UsageError(f"version {version!r} is not dotted integers (e.g. 1.2.0): no anti-rollback order can be "
                         "defined for it; export the bundle with such a version")
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@dataclass(frozen=True)
class BundleKey:
    """What orders a bundle among those of its model: name, ``(release, version)``, and its identity (sha256 of
    ``manifest.json``)."""

    name: str
    version: str
    release: int
    sha256: str

    def order(self) -> tuple[int, tuple[int, ...]]:
        return self.release, version_tuple(self.version)

    def __str__(self) -> str:
        return f"{self.name} {self.version} (release {self.release}, manifest {self.sha256[:12]})"


def bundle_key(bundle: str | Path) -> BundleKey:
    """The :class:`BundleKey` of a bundle folder (its manifest is read and validated, nothing else)."""
    raw = read_manifest_bytes(Path(bundle))
    manifest = decode_manifest(raw, str(Path(bundle) / "manifest.json"))
    release = manifest.lineage.release if manifest.lineage is not None else 0
    return BundleKey(manifest.name, manifest.version, release, sha256_bytes(raw))


def _key(doc: dict[str, Any] | None) -> BundleKey | None:
    return BundleKey(**doc) if doc else None


@dataclass(frozen=True)
class ActiveBundle:
    """The active bundle of a slot folder: ``path`` is the real slot folder (load from it), ``generation`` counts
    the switches (it changes with every switch, also to the same slot name)."""

    path: Path
    slot: str
    key: BundleKey
    generation: int


@dataclass
class InstallReport:
    """What :func:`install` did: ``switched`` (False for a no-op), the slot, the bundles before and after."""

    slot: str
    installed: BundleKey
    previous: BundleKey | None
    switched: bool
    message: str = ""
    diff: dict[str, Any] | None = field(default=None)


def _read_state(slot_dir: Path) -> dict[str, Any]:
    path = slot_dir / STATE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as exc:
        raise UpdateRefused(f"{path} cannot be read ({exc}): the slot state is damaged; restore it or reinstall "
                            "into a new slot folder") from None
    if not isinstance(data, dict):
        raise UpdateRefused(f"{path} is not a JSON object: the slot state is damaged")
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _active_slot(slot_dir: Path) -> str | None:
    link = slot_dir / CURRENT
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UpdateRefused(f"{link} is not a symlink to a slot ({exc.strerror}); the slot folder is damaged") from None
    if target not in SLOTS:
        raise UpdateRefused(f"{link} points to {target!r}, not to a slot ({', '.join(SLOTS)})")
    return target


def active_bundle(slot_dir: str | Path) -> ActiveBundle | None:
    """The active bundle of ``slot_dir`` (None before the first install).

    Raises:
        UpdateRefused: a damaged slot folder (``current`` not a link to a slot, unreadable state).
    """
    slot_dir = Path(slot_dir)
    slot = _active_slot(slot_dir)
    if slot is None:
        return None
    state = _read_state(slot_dir)
    path = (slot_dir / slot).resolve()
    return ActiveBundle(path, slot, bundle_key(path), int(state.get("generation", 0)))


class SlotWatcher:
    """Polls a slot folder for a switch: ``poll()`` returns the new :class:`ActiveBundle` after a switch, else None.

    Cheap enough to call every second from a server: it compares the ``stat`` of ``current`` and ``state.json``
    (inode, size, mtime in ns) and reads the state only when they changed.
    """

    def __init__(self, slot_dir: str | Path) -> None:
        self.slot_dir = Path(slot_dir)
        self._seen: tuple[Any, ...] | None = None
        self.active = active_bundle(self.slot_dir)
        self._seen = self._stamp()

    def _stamp(self) -> tuple[Any, ...]:
        out: list[Any] = []
        for name in (CURRENT, STATE):
            try:
                st = os.lstat(self.slot_dir / name)
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def poll(self) -> ActiveBundle | None:
        stamp = self._stamp()
        if stamp == self._seen:
            return None
        current = active_bundle(self.slot_dir)
        self._seen = stamp
        before = self.active
        if current is None or (before is not None and current.generation == before.generation
                               and current.key == before.key):
            return None
        self.active = current
        return current


class _Lock:
    def __init__(self, slot_dir: Path) -> None:
        self.path = slot_dir / ".lock"
        self.fd = -1

    def __enter__(self) -> _Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self.fd)
                raise UsageError(f"another install is running in {self.path.parent} (lock {self.path})") from None
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _switch(slot_dir: Path, slot: str) -> None:
    tmp = slot_dir / f".{CURRENT}.new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(slot, tmp)
    os.replace(tmp, slot_dir / CURRENT)  # rename(2) over the old link: readers see the old or the new, never none
    _fsync_dir(slot_dir)


Gate = Callable[[Path, Path], Any]


def install(slot_dir: str | Path, bundle: str | Path, *, trusted_keys: tuple[str | Path, ...] = (),
            require_signature: bool = False, gate: Gate | None = None,
            check: Callable[[Path], Any] | None = None) -> InstallReport:
    """Install ``bundle`` into the inactive slot of ``slot_dir`` and make it active (see the module docstring).

    Args:
        slot_dir: the model's slot folder (created on first use).
        bundle: the bundle folder to install (copied; the source is not changed).
        trusted_keys, require_signature: the trust policy of :func:`medinfer.load`.
        gate: called as ``gate(active_path, candidate_path)`` after the candidate loaded in its slot and before the
            switch (``medinfer update --require-diff``); its exception refuses the candidate.
        check: the readiness check after the switch, given the ``current`` path (default: ``medinfer.load``);
            its exception switches back (automatic rollback).

    Raises:
        UpdateRefused: older than the floor, same place with other bytes, another model, a damaged slot folder.
        IntegrityError, SignatureError, SelfTestError, ...: the candidate failed in its slot (nothing switched), or
            after the switch (switched back; the message says so).
    """
    slot_dir = Path(slot_dir)
    slot_dir.mkdir(parents=True, exist_ok=True)
    key = bundle_key(bundle)
    key.order()  # a version without an order is refused before anything is copied
    with _Lock(slot_dir):
        state = _read_state(slot_dir)
        active = active_bundle(slot_dir)
        floor = _key(state.get("floor"))
        if active is not None and (floor is None or active.key.order() > floor.order()):
            floor = active.key
        _refuse_rollback(state, key, floor, active)
        if active is not None and active.key == key:
            return InstallReport(active.slot, key, key, False, f"{key} is already the active bundle")
        target = SLOTS[1] if active is not None and active.slot == SLOTS[0] else SLOTS[0]
        dest = _copy_into_slot(slot_dir, Path(bundle), target)
        load_options = {"trusted_keys": list(trusted_keys), "require_signature": require_signature}
        try:
            medinfer.load(dest, **load_options)  # digests, signature, self-test: in the slot it will run from
            gate_result = gate(active.path, dest) if gate is not None and active is not None else None
        except BaseException as exc:
            shutil.rmtree(dest, ignore_errors=True)
            _history(slot_dir, state, "refused", key, str(exc))
            raise
        _switch(slot_dir, target)
        try:
            (check or (lambda path: medinfer.load(path, **load_options)))(slot_dir / CURRENT)
        except Exception as exc:  # noqa: BLE001 - whatever the check raised, the switch is undone first
            _roll_back(slot_dir, active, target)
            _history(slot_dir, state, "rolled back", key, str(exc))
            raise _rolled_back(exc, key, active) from exc
        previous = active.key if active is not None else None
        new_floor = key if floor is None or key.order() > floor.order() else floor
        state.update(name=key.name, installed=asdict(key), floor=asdict(new_floor),
                     generation=int(state.get("generation", 0)) + 1)
        _history(slot_dir, state, "installed", key, f"slot {target}")
        return InstallReport(target, key, previous, True, f"{key} is active in slot {target}", gate_result)


def _rolled_back(exc: Exception, key: BundleKey, active: ActiveBundle | None) -> MedinferError:
    """The error of a candidate that failed after the switch: the same class where it can carry a new message."""
    message = (f"{key} failed its readiness check after the switch and was rolled back to "
               f"{active.key if active else 'no active bundle'}: {type(exc).__name__}: {exc}")
    if isinstance(exc, MedinferError):
        try:
            return type(exc)(message)
        except TypeError:
            pass
    return UpdateRefused(message)


def _refuse_rollback(state: dict[str, Any], key: BundleKey, floor: BundleKey | None,
                     active: ActiveBundle | None) -> None:
    name = state.get("name") or (active.key.name if active else None)
    if name is not None and key.name != name:
        raise UpdateRefused(f"this slot folder holds {name!r}; {key.name!r} belongs in a slot folder of its own")
    if floor is None:
        return
    if key.order() < floor.order():
        raise UpdateRefused(f"anti-rollback: {key} is older than {floor}, the newest bundle this device has run; "
                            "install a bundle with a larger (release, version)")
    if key.order() == floor.order() and key.sha256 != floor.sha256 and (active is None or active.key != key):
        raise UpdateRefused(f"anti-rollback: {key} claims the place of {floor} in the order with other bytes; "
                            "give the new bundle a larger release")


def _copy_into_slot(slot_dir: Path, bundle: Path, slot: str) -> Path:
    if not bundle.is_dir():
        raise UsageError(f"{bundle} is not a bundle folder")
    incoming = slot_dir / f".{slot}.incoming"
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.copytree(bundle, incoming, symlinks=True)  # links stay links: load() refuses them
    dest = slot_dir / slot
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(incoming, dest)
    _fsync_dir(slot_dir)
    return dest


def _roll_back(slot_dir: Path, active: ActiveBundle | None, failed: str) -> None:
    if active is not None:
        _switch(slot_dir, active.slot)
    else:
        os.unlink(slot_dir / CURRENT)
        _fsync_dir(slot_dir)
    shutil.rmtree(slot_dir / failed, ignore_errors=True)


def _history(slot_dir: Path, state: dict[str, Any], event: str, key: BundleKey, detail: str) -> None:
    entry = {"time": utc_text(), "event": event, "bundle": asdict(key),
             "detail": detail[:500]}
    state["history"] = (state.get("history") or [])[-99:] + [entry]
    _write_atomic(slot_dir / STATE, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())
    log.info("slot folder %s: %s %s (%s)", slot_dir, event, key, detail[:200])
