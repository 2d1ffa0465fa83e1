"""``medinfer export-triton``: config.pbtxt from the manifest, fail-closed export, the generated Python-backend
model (with a stand-in for Triton's pb_utils), and — under the ``triton`` marker (``make test-triton``) — the real
tritonserver from PyTriton's wheel answering tritonclient like ``Model.predict``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main
from medinfer.fleet.http import free_port
from medinfer.fleet.triton.repository import TritonOptions, config_pbtxt, export_repository

from ..helpers import tiny
from ..helpers.answers import assert_same_answers, tolerance
from ..helpers.procs import stop
from ..helpers.wire import assert_same, every_built_bundle, infer, wire_input

X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.5], [0.0, 0.0, 0.0]], dtype=np.float32)


def test_onnxruntime_repository(tiny_bundle: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert main(["export-triton", str(tiny_bundle), "--out", str(repo), "--instances", "2"]) == 0
    folder = repo / "tiny_logistic"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == \
        ["1", "1/model.onnx", "config.pbtxt", "manifest.json", "model_card.md", "warmup", "warmup/golden_x"]
    model = medinfer.load(tiny_bundle)
    golden = model.golden()[0]["x"]
    assert (folder / "warmup" / "golden_x").read_bytes() == golden[:1].astype("<f4").tobytes()
    text = (folder / "config.pbtxt").read_text()
    for line in ['name: "tiny_logistic"', 'backend: "onnxruntime"', "max_batch_size: 64",
                 'name: "x"\n    data_type: TYPE_FP32\n    dims: [ 3 ]',
                 'name: "labels"\n    data_type: TYPE_STRING\n    dims: [ 1 ]\n    reshape: { shape: [ ] }',
                 'name: "scores"\n    data_type: TYPE_FP32\n    dims: [ 1 ]\n    reshape: { shape: [ ] }',
                 'name: "label"\n    data_type: TYPE_INT64\n    dims: [ 1 ]\n    reshape: { shape: [ ] }',
                 'name: "probabilities"\n    data_type: TYPE_FP32\n    dims: [ 2 ]',
                 "dynamic_batching { max_queue_delay_microseconds: 100 }",
                 "instance_group [ { kind: KIND_CPU count: 2 } ]",
                 'parameters { key: "intra_op_thread_count" value: { string_value: "1" } }',
                 'parameters { key: "execution_mode" value: { string_value: "0" } }',
                 'parameters { key: "decision_threshold" value: { string_value: "0.5" } }',
                 'inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 3 ] input_data_file: "golden_x" } }',
                 f"# model sha256 {model.model_sha256}"]:
        assert line in text, line
    assert "optimization" not in text  # "all" is the backend's default


def test_the_exported_graph_decides_like_serve(tiny_bundle: Path, tmp_path: Path) -> None:
    """labels/scores of the Triton graph are Model.predict's (threshold included); --decision none keeps the
    bundle's bytes."""
    import hashlib

    import onnxruntime as ort

    from ..helpers.tiny import build_sigmoid

    for bundle in (tiny_bundle, build_sigmoid(tmp_path / "sig", threshold=0.7)):
        folder = export_repository([bundle], tmp_path / "repo", TritonOptions(), force=True)[0]
        graph = (folder / "1" / "model.onnx").read_bytes()
        assert f"# exported graph sha256 {hashlib.sha256(graph).hexdigest()}" in (folder / "config.pbtxt").read_text()
        model = medinfer.load(bundle)
        x = np.random.default_rng(0).uniform(-3, 3, (200, *model.manifest.inputs[0].shape[1:])).astype(np.float32)
        session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        labels, scores = session.run(["labels", "scores"], {model.input_names[0]: x})
        expected = model.predict(x)  # the bundle's session profile vs onnxruntime's defaults: the stated tolerance
        assert_same_answers(model, scores, list(labels), expected)
    plain = export_repository([tiny_bundle], tmp_path / "plain", TritonOptions(decision=False))[0]
    assert (plain / "1" / "model.onnx").read_bytes() == (tiny_bundle / "model.onnx").read_bytes()
    assert 'name: "labels"' not in (plain / "config.pbtxt").read_text()


def _conv_bn_bundle(folder: Path) -> Path:
    """A sigmoid model whose Conv + BatchNormalization onnxruntime folds into one Conv at its default graph level
    (moving some scores by an ulp), in a bundle whose profile disables graph optimisation."""
    from medinfer.manifest import Decision, TensorSpec
    from medinfer.schema import to_json
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    c = 16
    arrays = {"shape4": np.array([-1, 3, 1, 1], np.int64), "W": rng.standard_normal((c, 3, 1, 1)).astype(np.float32),
              "scale": rng.uniform(0.5, 2, c).astype(np.float32), "bias": rng.standard_normal(c).astype(np.float32),
              "mean": rng.standard_normal(c).astype(np.float32), "var": rng.uniform(0.1, 3, c).astype(np.float32),
              "shape2": np.array([-1, c], np.int64), "W2": (rng.standard_normal((c, 1)) / 4).astype(np.float32)}
    doc = {"name": "tiny_conv_bn", "version": "0.0.1", "task": "binary_classification",
           "inputs": to_json((TensorSpec("x", "float32", ("N", 3), range=tiny.RANGE),)),
           "outputs": to_json((TensorSpec("probability", "float32", ("N", 1)),)), "labels": ["negative", "positive"],
           "decision": to_json(Decision(score_output="probability", positive_label="positive", threshold=0.5))}
    nodes = [helper.make_node("Reshape", ["x", "shape4"], ["x4"]), helper.make_node("Conv", ["x4", "W"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["bn"], epsilon=1e-3),
             helper.make_node("Reshape", ["bn", "shape2"], ["h"]), helper.make_node("MatMul", ["h", "W2"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["probability"])]
    graph = tiny._graph("tiny_conv_bn", doc, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])],
                        [numpy_helper.from_array(v, k) for k, v in arrays.items()])
    import onnxruntime as ort

    x = rng.uniform(-1, 1, (64, 3)).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    golden = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    profile = {"intra_op_num_threads": 1, "inter_op_num_threads": 1, "graph_optimization_level": "disable"}
    return tiny._write(folder, "tiny_conv_bn", doc, graph, x, {"probability": golden}, profile=profile)


def test_the_decision_check_runs_the_bundles_session_options(tmp_path: Path) -> None:
    """The appended rule is checked against Model.predict under the options medinfer (and the config) use, not
    onnxruntime's defaults: those fold Conv + BatchNormalization and move scores by an ulp, which failed the export
    of a CNN whose measured profile chose another graph level."""
    import onnxruntime as ort

    bundle = _conv_bn_bundle(tmp_path / "b")
    model = medinfer.load(bundle)
    x = model.golden()[0]["x"]
    graph = (bundle / "model.onnx").read_bytes()
    default = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert not np.array_equal(default, model.predict(x).scores.reshape(default.shape))  # the premise: an ulp apart
    folder = export_repository([bundle], tmp_path / "repo", TritonOptions())[0]
    assert "optimization { graph { level: 2 } }" in (folder / "config.pbtxt").read_text()  # 2 = disabled


def test_gpu_groups_large_batch_profile_and_int8_by_default(tiny_bundle_ro: Path) -> None:
    m = medinfer.load(tiny_bundle_ro).manifest
    gpu = TritonOptions(instance_kind="gpu", instances=2, gpus=(0, 1))
    text = config_pbtxt(m, gpu, model_sha256="0" * 64, manifest_sha256="1" * 64)
    assert "instance_group [ { kind: KIND_GPU count: 2 gpus: [ 0, 1 ] } ]" in text
    with pytest.raises(medinfer.UsageError, match="--gpus"):
        TritonOptions(gpus=(0,))
    with pytest.raises(medinfer.UnknownNameError, match="instance kind 'tpu'"):
        TritonOptions(instance_kind="tpu")
    profile = dataclasses.replace(m.profile, intra_op_num_threads=1, large_batch_from=16,
                                  large_batch={"intra_op_num_threads": 2})
    text = config_pbtxt(m, TritonOptions(), model_sha256="0" * 64, manifest_sha256="1" * 64, profile=profile)
    assert 'key: "intra_op_thread_count" value: { string_value: "2" }' in text and "large-batch profile" in text
    text = config_pbtxt(m, TritonOptions(max_batch_size=8), model_sha256="0" * 64, manifest_sha256="1" * 64,
                        profile=profile)  # batches never reach 16: the batch-1 threads
    assert 'key: "intra_op_thread_count" value: { string_value: "1" }' in text
    from medinfer.fleet.triton.repository import default_variant

    with_int8 = dataclasses.replace(m, variants={**m.variants, "int8": m.variants["default"]})
    assert default_variant(with_int8, TritonOptions()) == "int8"
    assert default_variant(with_int8, gpu) == "default" and default_variant(m, TritonOptions()) == "default"


def test_profile_and_shapes_translate(tiny_bundle_ro: Path) -> None:
    model = medinfer.load(tiny_bundle_ro)
    m = model.manifest
    profile = dataclasses.replace(m.profile, intra_op_num_threads=4, execution_mode="parallel",
                                  graph_optimization_level="basic", allow_spinning=False)
    text = config_pbtxt(m, TritonOptions(), model_sha256="0" * 64, manifest_sha256="1" * 64, profile=profile)
    assert "optimization { graph { level: -1 } }" in text and 'string_value: "4"' in text
    assert 'key: "execution_mode" value: { string_value: "1" }' in text and "spinning off" in text
    fixed = dataclasses.replace(m, inputs=(dataclasses.replace(m.inputs[0], shape=(1, 3)),))
    text = config_pbtxt(fixed, TritonOptions(), model_sha256="0" * 64, manifest_sha256="1" * 64)
    assert "max_batch_size: 0" in text and "dims: [ 1, 3 ]" in text and "dynamic_batching" not in text
    seq = dataclasses.replace(m, inputs=(dataclasses.replace(m.inputs[0], shape=("N", "T", 10), names=None),))
    text = config_pbtxt(seq, TritonOptions(max_batch_size=8), model_sha256="0" * 64, manifest_sha256="1" * 64)
    assert "max_batch_size: 8" in text and "dims: [ -1, 10 ]" in text


def test_export_fails_closed(tmp_path: Path) -> None:
    bad = tiny.build(tmp_path / "bad")
    with open(bad / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    repo = tmp_path / "repo"
    with pytest.raises(medinfer.IntegrityError, match="model.onnx"):
        export_repository([bad], repo, TritonOptions())
    assert not repo.exists() or not any(repo.iterdir())
    good = tiny.build(tmp_path / "good")
    export_repository([good], repo, TritonOptions())
    with pytest.raises(medinfer.MedinferError, match="exists; pass --force"):
        export_repository([good], repo, TritonOptions())
    export_repository([good], repo, TritonOptions(backend="python"), force=True)
    assert sorted(p.name for p in repo.iterdir()) == ["tiny_logistic"]  # no staging folder left


def test_python_backend_repository(tiny_bundle: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    export_repository([tiny_bundle], repo, TritonOptions(backend="python", deadline_ms=250, site_packages="/x"))
    folder = repo / "tiny_logistic"
    assert (folder / "1" / "model.py").read_text() == \
        (Path(medinfer.__file__).parent / "fleet" / "triton" / "backend.py").read_text()
    assert medinfer.load(folder / "1" / "bundle").model_sha256 == medinfer.load(tiny_bundle).model_sha256
    text = (folder / "config.pbtxt").read_text()
    for line in ['backend: "python"', 'name: "labels"\n    data_type: TYPE_STRING\n    dims: [ 1 ]',
                 'parameters { key: "variant" value: { string_value: "default" } }', "model_warmup [",
                 'name: "scores"\n    data_type: TYPE_FP32', 'name: "probabilities"',
                 'parameters { key: "deadline_ms" value: { string_value: "250" } }',
                 'parameters { key: "medinfer_site_packages" value: { string_value: "/x" } }']:
        assert line in text, line


# -- the generated model.py with a stand-in for Triton's pb_utils -------------------------------------------
class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array

    def name(self) -> str:
        return self._name


class _Response:
    def __init__(self, output_tensors: list[_Tensor], error: object = None) -> None:
        self.outputs, self.error = {t.name(): t.array for t in output_tensors}, error


class _Error:
    INVALID_ARG, INTERNAL, UNAVAILABLE = 3, 13, 14

    def __init__(self, message: str, code: int | None = None) -> None:
        self.message, self.code = message, code


@pytest.fixture
def backend_model(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stand_in = types.SimpleNamespace(Tensor=_Tensor, InferenceResponse=_Response, TritonError=_Error,
                                     get_input_tensor_by_name=lambda request, name: request.get(name))
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stand_in)
    export_repository([tiny_bundle], tmp_path / "repo", TritonOptions(backend="python"))
    from medinfer.fleet.triton.backend import TritonPythonModel

    model = TritonPythonModel()
    config = {"parameters": {}, "output": [{"name": n} for n in ("labels", "scores", "probabilities")]}
    model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path / "repo" / "tiny_logistic"),
                      "model_version": "1"})
    return model


def test_backend_batches_and_isolates_bad_requests(backend_model, tiny_bundle: Path) -> None:
    model = medinfer.load(tiny_bundle)
    expected = model.predict(X)
    good = backend_model.execute([{"x": _Tensor("x", X[:2])}, {"x": _Tensor("x", X[2:])}])
    assert [r.error for r in good] == [None, None]
    assert_same_answers(model, np.concatenate([r.outputs["scores"] for r in good]),
                        [v.decode() for r in good for v in r.outputs["labels"]], expected)
    mixed = backend_model.execute([{"x": _Tensor("x", X[:1])}, {"x": _Tensor("x", np.full((1, 3), 50, np.float32))}])
    assert mixed[0].error is None
    assert mixed[0].outputs["scores"][0] == pytest.approx(expected.scores[0], rel=0, abs=tolerance(model))
    assert mixed[1].error.code == _Error.INVALID_ARG and "outside the declared range" in mixed[1].error.message
    missing = backend_model.execute([{"y": _Tensor("y", X)}])
    assert missing[0].error.code == _Error.INVALID_ARG


def test_every_spec_exports(built, tmp_path: Path) -> None:
    for _, path in every_built_bundle(built).values():
        folder = export_repository([path], tmp_path / "repo", TritonOptions())[0]
        text = (folder / "config.pbtxt").read_text()
        spec = medinfer.load_manifest(folder).inputs[0]
        dims = [d if isinstance(d, int) else -1 for d in spec.shape[1:]]
        assert f"dims: [ {', '.join(map(str, dims))} ]" in text and "max_batch_size: 64" in text
        if spec.dtype == "string":
            assert "TYPE_STRING" in text


# -- the real tritonserver (make test-triton) -----------------------------------------------------------------
def _triton_venv() -> Path:
    venv = Path(os.environ.get("MEDINFER_TRITON_VENV", "build/triton-venv")).resolve()
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Triton venv at {venv}: run 'make test-triton'")
    return venv


@pytest.fixture(scope="module")
def tritonserver() -> dict:
    """Paths and environment to start PyTriton's tritonserver with the Python backend."""
    venv = _triton_venv()
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import json, sys, sysconfig, pytriton, medinfer, onnxruntime, numpy; print(json.dumps("
                            "{'root': pytriton.__path__[0], 'libdir': sysconfig.get_config_var('LIBDIR'), "
                            "'version': '%d.%d' % sys.version_info[:2], 'numpy': numpy.__version__}))"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"the Triton venv lacks a package: {probe.stderr.strip().splitlines()[-1:]}")
    info = json.loads(probe.stdout)
    server = Path(info["root"]) / "tritonserver"
    stub = server / "backends" / "python" / "triton_python_backend_stub"
    if not stub.exists():  # PyTriton keeps one stub per Python version; the backend wants it beside itself
        shutil.copy(server / "python_backend_stubs" / info["version"] / "triton_python_backend_stub", stub)
    # The stub's embedded Python finds its prefix through `python3` on PATH: the venv's, with numpy < 2 (the stub
    # is built against numpy 1's ABI) and medinfer + onnxruntime.
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
           "LD_LIBRARY_PATH": ":".join(filter(None, [info["libdir"], os.environ.get("LD_LIBRARY_PATH")]))}
    return {"binary": server / "bin" / "tritonserver", "backends": server / "backends", "env": env}


@contextlib.contextmanager
def running(server: dict, repo: Path, log: Path, *extra: str, wait_ready: bool = True) -> Iterator[str]:
    port = free_port()
    cmd = [str(server["binary"]), f"--model-repository={repo}", f"--backend-directory={server['backends']}",
           "--http-address=127.0.0.1", f"--http-port={port}", "--allow-grpc=false", "--allow-metrics=false",
           "--exit-timeout-secs=5", *extra]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=server["env"])
    url = f"127.0.0.1:{port}"
    try:
        th = pytest.importorskip("tritonclient.http")
        client = th.InferenceServerClient(url)
        end = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"tritonserver exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(Exception):
                if client.is_server_ready() if wait_ready else client.is_server_live():
                    break
            assert time.monotonic() < end, f"tritonserver not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield url
    finally:
        stop(proc, 60)






@pytest.mark.triton
def test_tritonserver_python_backend(tritonserver: dict, tiny_bundle: Path, tmp_path: Path) -> None:
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    repo = tmp_path / "repo"
    export_repository([tiny_bundle], repo, TritonOptions(backend="python", instances=2))
    with running(tritonserver, repo, tmp_path / "triton.log") as url:
        client = th.InferenceServerClient(url, concurrency=8)
        assert client.is_model_ready("tiny_logistic")
        model = medinfer.load(tiny_bundle)
        expected = model.predict(X)
        assert_same(infer(client, "tiny_logistic", X, "x", "FP32"), expected, "probabilities", model)
        # concurrent single-row requests: the dynamic batcher may join them; each gets its own row
        pending = []
        for i in range(len(X)):
            inp = th.InferInput("x", [1, 3], "FP32")
            inp.set_data_from_numpy(X[i:i + 1])
            pending.append(client.async_infer("tiny_logistic", [inp]))
        got = np.concatenate([p.get_result().as_numpy("scores").reshape(-1) for p in pending])
        np.testing.assert_allclose(got, expected.scores, rtol=0, atol=tolerance(model))  # batched: stated bound
        with pytest.raises(InferenceServerException, match="unexpected shape for input 'x'") as info:
            infer(client, "tiny_logistic", np.ones((1, 4), np.float32), "x", "FP32")  # Triton checks dims itself
        assert info.value.status() == "400"
        with pytest.raises(InferenceServerException, match="InputError: .*outside the declared range") as info:
            infer(client, "tiny_logistic", np.full((1, 3), 50, np.float32), "x", "FP32")  # medinfer's validation
        assert info.value.status() == "400"


@pytest.mark.triton
def test_tritonserver_parses_the_onnxruntime_config(tritonserver: dict, tiny_bundle: Path, tmp_path: Path) -> None:
    """PyTriton's server has no onnxruntime backend, but it parses our config.pbtxt: the only complaint left is
    the missing backend library."""
    import tritonclient.http as th

    repo = tmp_path / "repo"
    export_repository([tiny_bundle], repo, TritonOptions())
    with running(tritonserver, repo, tmp_path / "triton.log", "--exit-on-error=false", wait_ready=False) as url:
        index = th.InferenceServerClient(url).get_model_repository_index()
    print(f"\ntritonserver on the onnxruntime repository: {index}")
    assert [m["name"] for m in index] == ["tiny_logistic"] and index[0]["state"] == "UNAVAILABLE"
    assert "onnxruntime" in index[0]["reason"] and "backend" in index[0]["reason"], index[0]["reason"]


@pytest.mark.triton
def test_tritonserver_all_five(tritonserver: dict, built, tmp_path: Path) -> None:
    import tritonclient.http as th

    bundles = every_built_bundle(built)
    repo = tmp_path / "repo"
    export_repository([path for _, path in bundles.values()], repo, TritonOptions(backend="python"))
    with running(tritonserver, repo, tmp_path / "triton.log") as url:
        client = th.InferenceServerClient(url, network_timeout=120)
        for name, (art, path) in bundles.items():
            model = medinfer.load(path)
            x, datatype = wire_input(model, art.dataset.X_test, text_as_bytes=True)
            assert_same(infer(client, name, x, model.input_names[0], datatype), model.predict(x),
                        model.manifest.decision.score_output, model)
