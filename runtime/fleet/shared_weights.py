"""One copy of each served graph's weights for all the worker processes of ``medinfer serve --workers N``.

onnxruntime copies a graph's initializers into each session it builds (and pre-packs the large ones into a second
private copy), so N workers hold N copies of every weight. Its one way to hold them once is a graph whose weights are
*external data* in a file it can map: it maps a tensor whose offset is aligned instead of reading it, and with
pre-packing off (``session.disable_prepacking``) the session computes from those mapped pages. So:

- the parent process (:func:`prepare`) reads each bundle's graph checked against the sha256 its manifest pins,
  moves every initializer of at least :data:`MIN_BYTES` into one weights file (each at a :data:`ALIGN`-byte offset)
  and writes the graph that refers to it, both read-only in a private folder (mode 0700) in shared memory
  (``/dev/shm``, else the temp folder), removed when the server stops;
- each worker (:func:`adopt`), after its own verified ``load()`` and golden self-test, checks that the shared graph
  was made from the very graph it loaded (the source sha256) and that both files still have the digests the parent
  recorded, builds its sessions from the shared graph with pre-packing off, and runs the golden self-test again on
  them: the worker serves from them only when the golden outputs still match. Any refusal leaves the worker on its
  own private sessions (logged), never unserved.

The weights file's pages are then mapped by every worker: the kernel holds them once (each worker's PSS counts a
share), what ``tests/fleet/test_serve_workers.py`` measures. Trees and text graphs keep their weights in node
attributes, which onnxruntime parses into its own structures: they are not shared (nothing is moved for them).
Pre-packing off costs some speed on matrix products; ``--no-share-weights`` keeps private, pre-packed copies.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, MedinferError
from ..integrity import sha256_bytes, sha256_file

log = logging.getLogger(__name__)

ALIGN = 64 << 10  # onnxruntime maps an external tensor whose offset is a multiple of the allocation granularity
MIN_BYTES = 64 << 10  # smaller initializers stay in the graph (sharing them saves less than a page table costs)
WEIGHTS = "weights.bin"
GRAPH = "graph.onnx"
NO_PREPACK = {"session.disable_prepacking": "1"}


@dataclass(frozen=True)
class SharedGraph:
    """A bundle's graph with its large weights in one shared file (what a worker needs to adopt it)."""

    name: str  # the model's name
    variant: str  # the variant key the graph is of (the one ``load()`` picks with the same options)
    source_sha256: str  # the verified graph it was made from (the manifest's pin)
    graph: str  # the graph referring to the weights file (path)
    graph_sha256: str
    weights: str  # the weights file (path)
    weights_sha256: str
    weights_bytes: int
    tensors: int  # initializers moved into the weights file

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SharedGraph:
        return cls(**doc)


def shared_folder() -> Path:
    """A new private folder (0700) in shared memory (``/dev/shm``, else the temp folder) for the weights files."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="medinfer-weights-", dir=base))


def remove(folder: Path) -> None:
    """Remove a folder made by :func:`shared_folder` (workers that mapped its files keep their pages)."""
    shutil.rmtree(folder, ignore_errors=True)


def split(graph: bytes, weights_name: str = WEIGHTS, min_bytes: int = MIN_BYTES) -> tuple[bytes, bytes, int]:
    """``graph`` with every top-level initializer of at least ``min_bytes`` raw bytes moved to external data in
    ``weights_name``, each at an :data:`ALIGN`-byte offset: (the new graph, the weights file's bytes, how many moved).

    Raises:
        MissingExtraError: onnx is not installed (``pip install 'medinfer[serve]'``).
    """
    from ..extras import optional_import

    onnx = optional_import("onnx", "serve", "medinfer serve --workers (shared weights)")
    TensorProto = onnx.TensorProto
    model = onnx.load_model_from_string(graph)
    blob = bytearray()
    moved = 0
    for tensor in model.graph.initializer:
        raw = tensor.raw_data
        if tensor.data_location == TensorProto.EXTERNAL or len(raw) < min_bytes:
            continue
        blob += b"\0" * (-len(blob) % ALIGN)
        offset = len(blob)
        blob += raw
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (("location", weights_name), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        moved += 1
    return model.SerializeToString(), bytes(blob), moved


def prepare(bundle: Path, variant: str | None, folder: Path) -> SharedGraph | None:
    """The shared graph of ``bundle`` (the variant ``load(bundle, variant=variant)`` runs on this CPU) in ``folder``;
    None when it has no initializer worth sharing.

    Raises:
        MedinferError: the bundle cannot be read (its worker's own load then reports why on its slot).
    """
    from ..cpu_class import chosen_variant
    from ..manifest import load_manifest
    from ..samples import read_pinned

    manifest = load_manifest(bundle)
    key = chosen_variant(variant, manifest.profile.variant_by_cpu)
    if key not in manifest.variants:
        return None
    file = manifest.variants[key].file
    entry = manifest.files[file]
    graph, blob, moved = split(read_pinned(bundle, file, entry))
    if not moved:
        return None
    home = folder / re.sub(r"[^A-Za-z0-9_.-]", "_", f"{manifest.name}-{key}")
    home.mkdir(mode=0o700)
    paths = {}
    for name, data in ((WEIGHTS, blob), (GRAPH, graph)):
        path = home / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        paths[name] = path
    return SharedGraph(manifest.name, key, entry.sha256, str(paths[GRAPH]), sha256_bytes(graph),
                       str(paths[WEIGHTS]), sha256_bytes(blob), len(blob), moved)


def adopt(model: Any, shared: SharedGraph) -> None:
    """Serve ``model`` from sessions built on the shared graph (see the module docstring).

    Raises:
        IntegrityError: the shared graph was not made from the graph this worker verified, its files changed, or
            the golden self-test fails on the new sessions (the model then keeps its own sessions).
        MedinferError: the model runs elsewhere than on the CPU, or the session cannot be built.
    """
    from ..session import create_session, requested_profiles

    if shared.name != model.name or shared.variant != model.variant or shared.source_sha256 != model.model_sha256:
        raise IntegrityError(f"{model.name}: the shared graph was made from {shared.name} [{shared.variant}] "
                             f"{shared.source_sha256[:12]}, this worker loaded [{model.variant}] "
                             f"{model.model_sha256[:12]}")
    if model.providers != ("CPUExecutionProvider",):
        raise MedinferError(f"{model.name} runs on {model.providers[0]}: only CPU sessions map shared weights")
    for path, want in ((shared.graph, shared.graph_sha256), (shared.weights, shared.weights_sha256)):
        if sha256_file(path) != want:
            raise IntegrityError(f"{model.name}: {path} no longer has the sha256 the server recorded")
    profile, large = requested_profiles(model.manifest.profile, None, False)
    cpu: list[tuple[str, dict[str, Any]]] = [("CPUExecutionProvider", {})]
    session = create_session(shared.graph, profile, cpu, NO_PREPACK)
    large_session = create_session(shared.graph, large, cpu, NO_PREPACK) \
        if large is not None and model.large_session is not None else None
    own, own_large = model.session, model.large_session
    model.replace_sessions(session, large_session)
    try:
        model.self_test()
    except MedinferError as exc:
        model.replace_sessions(own, own_large)
        raise IntegrityError(f"{model.name}: the golden self-test fails on the shared weights ({exc}); serving from "
                             "this worker's own copy") from None
    del own, own_large
    release_freed()


def release_freed() -> None:
    """Hand the memory of the sessions just replaced back to the system (glibc keeps freed heap pages otherwise:
    the private copy would stay resident beside the shared one)."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its allocator decides
        ctypes.CDLL("libc.so.6").malloc_trim(0)
