"""Comparisons say what runs: every contender of the suite and the serve benchmark gets the same inputs and the same
explicit thread count, and the bare-engine servers really run a bare onnxruntime session with medinfer's options.
The contender objects and configs the benchmark code builds are inspected on a tiny bundle; no peer or server runs."""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import types
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
import pytest

from benchmarks import bare_session, contenders, peers, serve, serve_candidates, serve_threads, triton_bare

THREADS = 3  # not the machine's default, so a contender that ignores the option shows


def _threads_of(engine: Any) -> int:
    """The intra-op threads an engine really runs with: an onnxruntime session's options, medinfer's session's."""
    session = engine.session if isinstance(engine, medinfer.Model) else engine
    return int(session.get_session_options().intra_op_num_threads)


def test_every_in_process_contender_runs_the_same_inputs_with_the_same_threads(tiny_bundle_ro: Path) -> None:
    cands, info = contenders.in_process(tiny_bundle_ro, 4, None, THREADS)
    assert info["threads"] == THREADS
    assert {c.kind for c in cands} >= {"medinfer", "ort"}
    medinfer_row = next(c for c in cands if c.name == "medinfer [default]")
    feeds = medinfer_row.engine.prepare(medinfer_row.inputs)[0]  # what medinfer hands its session
    for c in cands:
        assert c.threads == THREADS and _threads_of(c.engine) == THREADS, c.name
        assert c.label, c.name
        if c.kind == "ort":
            assert set(c.inputs) == set(feeds), c.name
            for name in feeds:
                np.testing.assert_array_equal(c.inputs[name], feeds[name])
        else:
            np.testing.assert_array_equal(c.inputs, medinfer_row.inputs)
    labels = {c.name: c.label for c in cands}
    same, default = labels[contenders.SAME], labels[contenders.DEFAULT]
    assert same.startswith("onnxruntime ") and "medinfer's session options" in same
    assert "default SessionOptions" in default and labels["medinfer [default]"].startswith("medinfer")


def test_the_peers_are_asked_for_the_runs_threads_and_medinfers_inputs(tiny_bundle_ro: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[dict[str, Any]] = []

    class Worker:  # stands in for the OpenVINO venv's worker: records what the suite asks it to load
        def __init__(self, kind: str) -> None:
            self.kind = kind

        def ask(self, **request: Any) -> dict[str, Any]:
            with np.load(request["inputs"]) as npz:
                asked.append({**request, "arrays": {k: npz[k] for k in npz.files}})
            return {"ok": True, "info": {"runtime": "onnxruntime-openvino", "version": "9.9", "threads": 0}}

        def close(self) -> None:
            pass

    monkeypatch.setattr(peers, "Worker", Worker)
    cands, info = contenders.in_process(tiny_bundle_ro, 4, None, THREADS)
    feeds = next(c for c in cands if c.kind == "ort").inputs
    with peers.Pool(["openvino"], progress=lambda _: None) as pool:
        found, why = pool.contenders(tiny_bundle_ro, 4, None, info)
    assert why == {} and len(found) == len(asked) == 1
    assert asked[0]["threads"] == THREADS and found[0].threads == THREADS and found[0].engine["threads"] == THREADS
    assert asked[0]["fetch"] == info["fetch"]
    for name, arr in feeds.items():
        np.testing.assert_array_equal(asked[0]["arrays"][name], arr)
    assert found[0].label.startswith("onnxruntime-openvino 9.9") and "OpenVINO execution provider" in found[0].label


def _medinfers_options(bundle: Path) -> dict[str, Any]:
    """The options of the session medinfer itself creates for batch 1 at the run's threads."""
    model = medinfer.load(bundle, session_profile={"intra_op_num_threads": THREADS})
    return bare_session.describe(model.session.get_session_options())


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {str(n.module).split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


def _fake_backend() -> types.ModuleType:
    """triton_python_backend_utils as the Python backend's stub provides it (just what model.py calls)."""
    pb = types.ModuleType("triton_python_backend_utils")
    pb.Tensor = _Tensor  # type: ignore[attr-defined]
    pb.InferenceResponse = lambda output_tensors, error=None: {"outputs": output_tensors, "error": error}  # type: ignore[attr-defined]
    pb.TritonError = lambda message: message  # type: ignore[attr-defined]
    pb.get_input_tensor_by_name = (  # type: ignore[attr-defined]
        lambda request, name: _Tensor(name, request[name]) if name in request else None)
    return pb


def test_tritonserver_hosts_a_bare_onnxruntime_session_with_medinfers_graph_and_options(
        tiny_bundle_ro: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = triton_bare.repository(tiny_bundle_ro, tmp_path / "repo", THREADS)
    manifest = medinfer.load_manifest(tiny_bundle_ro)
    graph = folder / "1" / "model.onnx"
    assert hashlib.sha256(graph.read_bytes()).hexdigest() == manifest.files[manifest.variants["default"].file].sha256
    config = (folder / "config.pbtxt").read_text()
    assert 'backend: "python"' in config
    spec = triton_bare.session_options_of(config)
    assert spec == _medinfers_options(tiny_bundle_ro) and spec["intra_op_num_threads"] == THREADS
    for module in ("model.py", "bare_session.py"):
        assert not _imports(folder / "1" / module) & {"medinfer", "benchmarks"}, module  # the bare engine only

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_backend())
    monkeypatch.syspath_prepend(str(folder / "1"))
    monkeypatch.delitem(sys.modules, "bare_session", raising=False)
    code = compile((folder / "1" / "model.py").read_text(), str(folder / "1" / "model.py"), "exec")
    namespace: dict[str, Any] = {"__file__": str(folder / "1" / "model.py"), "__name__": "triton_model"}
    exec(code, namespace)  # noqa: S102 - the file tritonserver would load, run against the stub above
    model = namespace["TritonPythonModel"]()
    outputs = [{"name": o.name} for o in manifest.outputs]
    model.initialize({"model_config": json.dumps({"parameters": {"session_options": {"string_value": json.dumps(spec)}},
                                                  "output": outputs}),
                      "model_repository": str(folder), "model_version": "1"})
    assert _threads_of(model.session) == THREADS
    x = next(iter(medinfer.load(tiny_bundle_ro).golden()[0].values()))
    name = manifest.inputs[0].name
    answers = model.execute([{name: x[:2]}, {name: x[2:5]}])  # two requests, one batch
    want = dict(zip([o.name for o in manifest.outputs],
                    bare_session.session(str(graph), spec).run(None, {name: x[:5]})))
    got = {t.name: np.concatenate([a["outputs"][i].array for a in answers])
           for i, t in enumerate(answers[0]["outputs"])}
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-7)  # same graph, options and batch
    refused = model.execute([{}])  # a request without its input: an error answer, not a crash
    assert refused[0]["error"] and "lacks input" in refused[0]["error"]


def test_mlserver_gets_the_same_bare_session_description(tiny_bundle_ro: Path) -> None:
    settings = serve.mlserver_settings(tiny_bundle_ro, THREADS)
    assert settings["parameters"]["extra"]["session_options"] == _medinfers_options(tiny_bundle_ro)
    runtime = Path(serve.__file__).with_name("mlserver_runtime.py")
    assert "bare_session" in _imports(runtime) and "medinfer" not in _imports(runtime)


def test_both_medinfer_servers_start_with_the_runs_threads(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    cmd = serve_candidates.medinfer_command(tiny_bundle_ro, tmp_path, False, THREADS)
    assert cmd[1:5] == [str(Path(serve_threads.__file__)), str(THREADS), "serve", str(tiny_bundle_ro)]
    import medinfer.loader as loader

    original = serve_threads.install(THREADS)
    try:
        assert _threads_of(medinfer.load(tiny_bundle_ro)) == THREADS  # how `medinfer serve` loads its bundles
        assert _threads_of(loader.load(tiny_bundle_ro, session_profile={"intra_op_num_threads": 1})) == 1
    finally:
        loader.load = original
        medinfer.load = original


def test_every_contender_is_listed_with_what_runs_and_its_threads(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    from benchmarks.serve_candidates import candidates, server_lines

    factories, info = candidates(["medinfer", "mlserver", "tritonserver"], "5e459c4", tmp_path, THREADS, tmp_path)
    assert set(factories) == {"medinfer", "medinfer +audit"}  # no venvs under tmp_path: the others say why
    assert info["mlserver"] == {"available": False, "reason": "venv_missing", "venv": "build/mlserver-venv"}
    assert info["medinfer"]["threads"] == THREADS and info["medinfer"]["label"].startswith("medinfer serve ")
    lines = server_lines({"servers": info})
    assert any(f"{THREADS} intra-op thread(s)" in line for line in lines)
    assert any("mlserver: not measured (its venv is not built" in line for line in lines)
