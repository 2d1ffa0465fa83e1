"""``medinfer serve --workers N`` (issue 29): N worker processes behind one port, sharing one copy of each graph's
weights (runtime/fleet/workers.py, runtime/fleet/shared_weights.py).

The test bundle is the tiny logistic model with one 2048x2048 float32 initializer in a MatMul (16 MiB, outputs
unchanged: ``tiny.build(wide=2048)``). Each worker must map the one weights file the parent wrote, the kernel must
count its pages once between them (each worker's PSS of the mapping about half its RSS), and no worker may hold a
private copy besides (onnxruntime's pre-packing would make one: a worker's private memory is compared with
``--no-share-weights``'); answers stay right, repository changes are refused, SIGTERM stops every process and
removes the shared folder."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from ..helpers import tiny
from ..helpers.serving import http, serving

pytest.importorskip("uvicorn")
pytest.importorskip("onnx")

WIDE = 2048
WEIGHTS_BYTES = WIDE * WIDE * 4


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _weights_mappings(pid: int) -> list[dict[str, int | str]]:
    """The mappings of a shared weights file in process ``pid``: path, Rss and Pss (kB)."""
    found: list[dict[str, int | str]] = []
    current: dict[str, int | str] | None = None
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            path = head[5] if len(head) > 5 else ""
            current = {"path": path} if "medinfer-weights-" in path and path.endswith("weights.bin") else None
            if current is not None:
                found.append(current)
        elif current is not None and head and head[0] in ("Rss:", "Pss:"):
            current[head[0][:-1]] = int(head[1])
    return found


def _private_kb(pid: int) -> int:
    """Private_Clean + Private_Dirty of process ``pid`` (kB): what no other process shares."""
    rollup = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return sum(int(rollup[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))


def _infer(url: str, x: np.ndarray) -> tuple[int, dict]:
    body = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    return http(url, "/v2/models/tiny_logistic/infer", json.dumps(body).encode())


def _wait(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_workers_serve_one_port_from_one_shared_copy_of_the_weights(tmp_path: Path) -> None:
    bundle = tiny.build(tmp_path / "tiny_logistic", wide=WIDE)
    log = tmp_path / "serve.log"
    with serving([bundle], "--workers", "2", "--audit", str(tmp_path / "audit.jsonl"), log=log) as (url, proc):
        workers = _wait(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid), 30, "two worker processes")
        maps = _wait(lambda: (m := {w: _weights_mappings(w) for w in workers}) and all(m.values()) and m, 90,
                     f"both workers map the weights file; log: {log.read_text()[-2000:]}")
        _wait(lambda: log.read_text().count(" ready in ") == 2, 60, "both workers loaded")
        paths = {str(m["path"]) for found in maps.values() for m in found}
        assert len(paths) == 1, paths  # one file, mapped by both
        for pid, found in maps.items():
            rss, pss = sum(int(m["Rss"]) for m in found), sum(int(m["Pss"]) for m in found)
            assert rss * 1024 >= 0.9 * WEIGHTS_BYTES, (pid, found)  # the session computes from the mapped pages
            assert pss <= 0.6 * rss, (pid, found)  # counted once between the two workers
        for _ in range(6):  # answers through the one port are the model's, whichever worker takes them
            status, out = _infer(url, tiny.GOLDEN_X)
            assert status == 200, out
            got = next(o for o in out["outputs"] if o["name"] == "probabilities")
            np.testing.assert_allclose(np.reshape(got["data"], (-1, 2)), tiny.reference(tiny.GOLDEN_X), atol=1e-5)
        shared_private = {w: _private_kb(w) for w in workers}
        status, out = http(url, "/v2/repository/models/tiny_logistic/unload", b"{}")
        assert status == 400 and "--workers 1" in out["error"], out
        folder = Path(paths.pop()).parent.parent
        assert folder.is_dir() and oct(folder.stat().st_mode & 0o777) == "0o700"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert not any(os.path.exists(f"/proc/{w}") and Path(f"/proc/{w}/status").read_text().find("zombie") < 0
                   for w in workers)
    assert not folder.exists()  # the shared weights go with the server
    text = log.read_text()
    assert text.count("mapped from the one shared copy") == 2, text[-3000:]
    starts = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines() if "serve_started" in x]
    assert len(starts) == 2 and len({r["pid"] for r in starts}) == 2  # one chain, both workers in it


    with serving([bundle], "--workers", "2", "--no-share-weights", log=tmp_path / "own.log") as (url, proc):
        own = _wait(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid), 30, "two worker processes")
        for _ in range(6):  # straight away: a worker still loading takes no connection, so nothing answers 503
            assert _infer(url, tiny.GOLDEN_X)[0] == 200
        _wait(lambda: (tmp_path / "own.log").read_text().count(" ready in ") == 2, 60, "both workers loaded")
        time.sleep(1.0)
        assert all(not _weights_mappings(w) for w in own)
        own_private = {w: _private_kb(w) for w in own}
    # each worker on its own copy holds the weights privately (at least once); on the shared file it does not
    assert min(own_private.values()) - max(shared_private.values()) >= 0.75 * WEIGHTS_BYTES / 1024, \
        (own_private, shared_private)


def test_a_shared_graph_is_refused_unless_made_from_the_verified_graph(tmp_path: Path) -> None:
    """adopt() checks the shared files against what the parent recorded and the golden self-test on the result:
    an altered weights file leaves the worker on its own sessions (typed IntegrityError, answers unchanged)."""
    import medinfer
    from medinfer.errors import IntegrityError
    from medinfer.fleet.shared_weights import adopt, prepare, shared_folder

    bundle = tiny.build(tmp_path / "tiny_logistic", wide=WIDE)
    folder = shared_folder()
    try:
        graph = prepare(bundle, None, folder)
        assert graph is not None and graph.tensors == 1 and graph.weights_bytes == WEIGHTS_BYTES
        model = medinfer.load(bundle)
        weights = Path(graph.weights)
        weights.chmod(0o600)
        data = bytearray(weights.read_bytes())
        data[100] ^= 0xFF
        weights.write_bytes(bytes(data))
        own = model.session
        with pytest.raises(IntegrityError, match="sha256"):
            adopt(model, graph)
        assert model.session is own
        again = folder / "again"
        again.mkdir()
        faithful = prepare(bundle, None, again)
        assert faithful is not None
        adopt(model, faithful)
        assert model.session is not own  # a faithful shared graph is adopted and passes the golden self-test
        np.testing.assert_allclose(np.asarray(model.predict(tiny.GOLDEN_X).scores),
                                   np.asarray(medinfer.load(bundle).predict(tiny.GOLDEN_X).scores), atol=1e-6)
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
