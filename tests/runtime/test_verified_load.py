"""Verify-before-use with one copy of the weights: onnxruntime reads exactly the bytes that were hashed (a sealed
copy that nothing can change), and that copy is released once the session exists."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.files import SealedCopy

from ..helpers import tiny
from ..helpers.fields import MakeBundle


def _open_memfds() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/memfd:medinfer"):
            found.append(target)
    return found


@pytest.mark.parametrize("memfd", [True, False], ids=["sealed-memfd", "bytes"])
def test_the_graph_is_read_from_the_verified_copy_even_if_the_file_changes_meanwhile(
        make_bundle: MakeBundle, monkeypatch: pytest.MonkeyPatch, memfd: bool) -> None:
    if not memfd:
        monkeypatch.delattr(os, "memfd_create", raising=False)  # other platforms: the verified bytes themselves
    import onnx
    from onnx import numpy_helper

    bundle = make_bundle("m")
    swapped = onnx.load_from_string(tiny.model_bytes())  # same contract and metadata, other weights
    w = next(i for i in swapped.graph.initializer if i.name == "W")
    w.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(w), "W"))
    other = swapped.SerializeToString()
    import medinfer.loader as loader

    real = loader.create_session

    def swap_then_create(model, profile, providers):
        (bundle / "model.onnx").write_bytes(other)  # changed after the digest was checked
        return real(model, profile, providers)

    monkeypatch.setattr(loader, "create_session", swap_then_create)
    model = medinfer.load(bundle)  # the golden self-test passes: the verified graph runs
    inputs = [node.name for node in model.session.get_inputs()]
    assert inputs == ["x"] and len(model.session.get_outputs()) == 2
    np.testing.assert_allclose(model.predict(tiny.GOLDEN_X).scores, tiny.reference(tiny.GOLDEN_X)[:, 1], atol=1e-6)
    monkeypatch.undo()
    with pytest.raises(medinfer.IntegrityError):
        medinfer.load(bundle)  # and the change itself is refused at the next load


def test_the_verified_copy_is_released_once_the_session_exists(make_bundle: MakeBundle) -> None:
    model = medinfer.load(make_bundle("m"))
    assert getattr(model.session, "_model_bytes", None) is None  # onnxruntime keeps no second copy of the graph
    assert getattr(model.session, "_model_path", None) is None  # and never re-reads a path that could change
    if os.path.isdir("/proc/self/fd"):
        assert _open_memfds() == []


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="sealed in-memory files are Linux-only")
def test_a_sealed_copy_cannot_be_changed_by_anyone() -> None:
    with SealedCopy("test") as copy:
        copy.write(b"verified bytes")
        copy.seal()
        assert isinstance(copy.source, str)
        assert Path(copy.source).read_bytes() == b"verified bytes"
        with pytest.raises(OSError) as raised:
            os.write(copy.fd, b"x")
        assert raised.value.errno == errno.EPERM
        with pytest.raises(OSError):
            os.ftruncate(copy.fd, 0)
        with pytest.raises(OSError), open(copy.source, "r+b") as fh:  # nor another descriptor opened for writing
            fh.write(b"X")
            fh.flush()
        assert Path(copy.source).read_bytes() == b"verified bytes"


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="sealed in-memory files are Linux-only")
def test_where_onnxruntime_cannot_open_the_sealed_copy_its_bytes_are_used(make_bundle: MakeBundle, monkeypatch) -> None:
    import medinfer.loader as loader

    real, seen = loader.create_session, []

    def no_proc(model, profile, providers):  # e.g. a sandbox without /proc
        seen.append(type(model).__name__)
        if isinstance(model, str):
            raise medinfer.BundleError("cannot open the path")
        return real(model, profile, providers)

    monkeypatch.setattr(loader, "create_session", no_proc)
    model = medinfer.load(make_bundle("m"))
    assert seen == ["str", "bytes"] and model.self_test().status in ("bit_exact", "within_tolerance")


def test_a_refused_load_releases_the_verified_copy(make_bundle: MakeBundle, tmp_path: Path) -> None:
    """Every refusal after the graph was copied (a too-old onnxruntime, an unknown provider) releases the copy."""
    from medinfer.manifest import Requires

    future = make_bundle("future", requires=Requires(onnxruntime="99.1.0", ir_version=8,
                                                                 opsets={"ai.onnx": 17}))
    before = _open_memfds() if os.path.isdir("/proc/self/fd") else []
    for attempt in range(3):
        with pytest.raises(medinfer.RuntimeTooOld):
            medinfer.load(future)
        with pytest.raises(medinfer.MedinferError):
            medinfer.load(tiny.build(tmp_path / f"m{attempt}"), providers=["no-such-provider"])
    if os.path.isdir("/proc/self/fd"):
        assert _open_memfds() == before
