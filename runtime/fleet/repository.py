"""Triton's model repository extension for ``medinfer serve``: index, load, unload — and a folder of bundles
served as a repository.

``medinfer serve REPO`` where ``REPO`` holds bundle folders (each with its ``manifest.json``) serves every bundle
in it; a folder that is neither a bundle nor holds one is refused at start. ``POST
/v2/repository/models/{name}/load`` (gRPC RepositoryModelLoad) loads the bundle of that name from where it was
found (re-read: a new version put in its place) or, for a name not served yet, from the repository folders; the
new version goes through the whole check (sha256 of every file, signature policy, golden self-test) while the old
one keeps answering, and replaces it in one step only once it passed — no request fails during a swap, and a
version that fails its checks never replaces the one serving (the load answers 400 with the reason). Requests
already running finish on the model they started with. ``.../unload`` stops serving a model (503 until loaded
again); it no longer counts for ``/v2/health/ready``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import MedinferError, RequestError, UnknownModel, UsageError
from ..manifest import MANIFEST_NAME

log = logging.getLogger(__name__)


def expand_bundles(args: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """The bundle folders named by serve's arguments, and the repository folders among them.

    Raises:
        UsageError: a folder that is neither a bundle nor a folder of bundles, or a path that is no folder.
    """
    bundles: list[Path] = []
    roots: list[Path] = []
    for arg in args:
        path = Path(arg)
        if (path / MANIFEST_NAME).is_file() or not path.is_dir():
            bundles.append(path)  # a missing or broken bundle is reported on its slot
            continue
        inside = sorted(p for p in path.iterdir() if p.is_dir() and (p / MANIFEST_NAME).is_file())
        if not inside:
            raise UsageError(f"{path} is neither a bundle (no {MANIFEST_NAME}) nor a folder of bundles (no "
                             f"sub-folder holds one): give a bundle folder, or a repository folder of bundles")
        roots.append(path)
        bundles.extend(inside)
    return bundles, roots


class RepositoryMixin:
    """Index, load and unload for :class:`medinfer.fleet.serve.Registry` (which provides ``slots``, ``config``,
    ``roots``, ``_new_slot`` and ``_load_slot``)."""

    slots: dict[str, Any]
    roots: list[Path]
    config: Any
    _swap_lock: threading.Lock

    def _new_slot(self, path: Path, name: str) -> Any:
        raise NotImplementedError

    def _load_slot(self, slot: Any, path: Path) -> None:
        raise NotImplementedError

    def index(self) -> list[dict[str, str]]:
        """Triton's repository index: name, version, state (READY, LOADING, UNAVAILABLE) and reason per model."""
        states = {"ready": "READY", "loading": "LOADING"}
        return [{"name": s.name, "version": s.model.version if s.model is not None else "",
                 "state": states.get(s.state, "UNAVAILABLE"),
                 "reason": "unloaded" if s.state == "unloaded" else (str(s.error)[:500] if s.error else "")}
                for s in list(self.slots.values())]

    def _source(self, name: str) -> Path:
        """Where the bundle called ``name`` is read from: its slot's folder, else the one in a repository folder."""
        from ..manifest import load_manifest

        slot = self.slots.get(name)
        if slot is not None:
            return Path(slot.path)
        for root in self.roots:
            for folder in sorted(p for p in root.iterdir() if (p / MANIFEST_NAME).is_file()):
                try:
                    if load_manifest(folder).name == name:
                        return folder
                except MedinferError:
                    continue
        where = ", ".join(map(str, self.roots)) or "no repository folder (serve was given bundles, not a folder)"
        raise UnknownModel("model", name, self.slots, f"; no bundle of that name in {where}")

    def load_model(self, name: str) -> None:
        """Load (or re-load) ``name``: the new version replaces the serving one only after it passed every check.

        Raises:
            UnknownModel: no bundle of that name (HTTP 404).
            RequestError: the bundle did not pass its checks; the version serving before goes on (HTTP 400).
        """
        if not isinstance(name, str) or not name or len(name) > 200:
            raise RequestError("a model name of 1 to 200 characters is needed")
        self._one_process("load")
        with self._swap_lock:
            path = self._source(name)
            slot = self.slots.get(name)
            fresh = self._new_slot(path, name) if slot is None else None
            target: Any = fresh if fresh is not None else slot
            staging = self._new_slot(path, name)  # loads aside: the serving slot is untouched until it passed
            started = time.perf_counter()
            self._load_slot(staging, path)
            if staging.state != "ready":
                raise RequestError(f"loading '{name}' from {path} failed, nothing was replaced: "
                                   f"{type(staging.error).__name__}: {staging.error}")
            target.publish(staging)
            if fresh is not None:
                self.slots[name] = fresh
            log.info("%s %s loaded from %s in %.2f s and serving", name, staging.model.version, path,
                     time.perf_counter() - started)

    def _one_process(self, action: str) -> None:
        """Refuse a repository change under ``--workers`` N > 1: each worker holds its own models, and the request
        reaches one of them.

        Raises:
            RequestError: this server runs several worker processes (HTTP 400).
        """
        workers = self.config.workers
        if workers > 1:
            raise RequestError(f"repository {action} is refused: this server runs {workers} worker processes, each "
                               "with its own models, and the request would reach only one of them; restart the "
                               "server with the bundles it should serve, or serve with --workers 1 to load and "
                               "unload while serving")

    def unload_model(self, name: str) -> None:
        """Stop serving ``name`` (requests already running finish).

        Raises:
            UnknownModel: no model of that name is served (HTTP 404).
        """
        self._one_process("unload")
        with self._swap_lock:
            slot = self.slots.get(name)
            if slot is None:
                raise UnknownModel("model", name, self.slots, "")
            slot.state, slot.error = "unloaded", None
            log.info("%s unloaded", name)
