"""``medinfer bundle``: models nobody in the project trained become verified bundles with one command, through the
five specs' pipeline. Each source kind is made here in the test (tiny models on synthetic data), and its answers
are compared with its own framework's; a mutated source (a changed weight, swapped outputs) is refused with exit
8 and no bundle; a field the contract must declare is named with an example (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main
from medinfer.samples import INPUT, OUTPUT, key, pair_arrays

torch = pytest.importorskip("torch")

NETS = '''
import torch

class TwoInputs(torch.nn.Module):
    """Two inputs (an image and a clinical vector), one dynamic batch axis, two outputs."""

    def __init__(self, bump: float = 0.0, swap: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.img = torch.nn.Linear(4, 3)
        self.clin = torch.nn.Linear(2, 3)
        self.swap = swap
        with torch.no_grad():
            self.clin.weight[0, 0] += bump

    def forward(self, image, clinical):
        h = self.conv(image).mean(dim=(2, 3))
        logits = self.img(h) + self.clin(clinical)
        p, s = torch.softmax(logits, dim=1), logits.sum(dim=1, keepdim=True)
        return (s, p) if self.swap else (p, s)

def original():
    return TwoInputs()

def perturbed():
    return TwoInputs(bump=0.05)

def swapped():
    return TwoInputs(swap=True)
'''

CONTRACT = {
    "name": "two_inputs", "version": "1.0.0", "task": "multiclass_classification", "labels": ["a", "b", "c"],
    "score_output": "probabilities", "output_names": ["probabilities", "logit_sum"],
    "inputs": {"image": {"units": "HU", "range": [-1024.0, 3071.0]}, "clinical": {"units": "1", "range": [-10, 10]}},
    "card": {"summary": "a two-input test model", "intended_use": "tests of medinfer bundle"},
}


def _torch_case(tmp: Path, n: int = 24) -> tuple[Path, Path, Path, dict[str, np.ndarray]]:
    import importlib.util

    (tmp / "nets.py").write_text(NETS)
    spec = importlib.util.spec_from_file_location("bring_nets_test", tmp / "nets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(3)
    inputs = {"image": rng.normal(0, 200, size=(n, 1, 8, 8)).astype(np.float32),
              "clinical": rng.normal(size=(n, 2)).astype(np.float32)}
    with torch.no_grad():
        p, s = module.original()(torch.from_numpy(inputs["image"]), torch.from_numpy(inputs["clinical"]))
    np.savez(tmp / "ref.npz", **pair_arrays(inputs, {"probabilities": p.numpy(), "logit_sum": s.numpy()}),
             y=p.numpy().argmax(1))
    (tmp / "contract.json").write_text(json.dumps(CONTRACT))
    return tmp / "nets.py", tmp / "ref.npz", tmp / "contract.json", {"probabilities": p.numpy()}


def test_a_two_input_torch_module_with_a_dynamic_batch_round_trips(tmp_path: Path, capsys) -> None:
    nets, ref, contract, expected = _torch_case(tmp_path)
    out = tmp_path / "bundles"
    assert main(["bundle", f"{nets}:original", "--reference", str(ref), "--contract", str(contract),
                 "--out", str(out), "--profile", "default"]) == 0
    assert "parity passed" in capsys.readouterr().err
    bundle = out / "two_inputs"
    assert main(["verify", str(bundle)]) == 0
    model = medinfer.load(bundle)
    m = model.manifest
    assert [(t.name, t.shape, t.units) for t in m.inputs] == [("image", ("N", 1, 8, 8), "HU"),
                                                              ("clinical", ("N", 2), "1")]
    assert m.parity.passed and m.metrics.heldout["accuracy"].value == 1.0  # labels given: metrics with CIs
    assert "torch" in m.producer.frameworks and m.producer.frameworks["brought_from"].startswith("torch: nets.py")
    data = np.load(ref)
    feeds = {"image": data[key(INPUT, "image")], "clinical": data[key(INPUT, "clinical")]}
    for rows in (slice(0, 1), slice(0, 5), slice(0, 24)):  # the batch axis is dynamic
        got = model.predict({k: v[rows] for k, v in feeds.items()})
        np.testing.assert_allclose(got.outputs["probabilities"], expected["probabilities"][rows], atol=1e-5)
    (tmp_path / "x.npz").write_bytes(b"")
    np.savez(tmp_path / "x.npz", image=feeds["image"][:3], clinical=feeds["clinical"][:3])
    capsys.readouterr()
    assert main(["predict", str(bundle), str(tmp_path / "x.npz"), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["labels"] == [["a", "b", "c"][i] for i in expected["probabilities"][:3].argmax(1)]
    assert "No applicability-domain guard" in (bundle / "model_card.md").read_text()  # no --train-sample


@pytest.mark.parametrize("attr", ["perturbed", "swapped"])
def test_a_mutated_torch_source_is_refused_with_exit_8_and_no_bundle(attr: str, tmp_path: Path, capsys) -> None:
    nets, ref, contract, _ = _torch_case(tmp_path)
    out = tmp_path / "bundles"
    assert main(["bundle", f"{nets}:{attr}", "--reference", str(ref), "--contract", str(contract),
                 "--out", str(out), "--profile", "default"]) == 8
    err = capsys.readouterr().err
    assert "ParityError" in err and "not the one REF.npz's outputs came from" in err
    assert not (out / "two_inputs").exists()


def _onnx_graph(w: np.ndarray) -> bytes:
    """x (N, 3) -> probabilities = softmax(x @ w), label = argmax; dynamic batch named 'batch'."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
         helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        initializer=[numpy_helper.from_array(w.astype(np.float32), "W")])
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    return onx.SerializeToString()


W = np.array([[1.0, -1.0], [0.5, 0.2], [-0.3, 0.8]])


def _onnx_case(tmp: Path, contract: dict | None = None) -> tuple[Path, Path, Path]:
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    z = x.astype(np.float64) @ W
    p = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)
    np.savez(tmp / "ref.npz", **pair_arrays({"x": x}, {"probabilities": p, "label": p.argmax(1).astype(np.int64)}))
    (tmp / "model.onnx").write_bytes(_onnx_graph(W))
    doc = contract if contract is not None else {
        "name": "wrapped", "version": "2.0.0", "task": "binary_classification", "labels": ["no", "yes"],
        "positive_label": "yes", "threshold": 0.4, "label_output": "label",
        "inputs": {"x": {"units": "mmol/L", "range": [-10, 10], "names": ["a", "b", "c"]}},
        "card": {"summary": "an existing graph", "intended_use": "tests"}}
    (tmp / "contract.json").write_text(json.dumps(doc))
    return tmp / "model.onnx", tmp / "ref.npz", tmp / "contract.json"


def test_an_existing_onnx_is_wrapped_without_its_framework(tmp_path: Path) -> None:
    from medinfer.export.bring import bundle

    source, ref, contract = _onnx_case(tmp_path)
    path = bundle(source, ref, tmp_path / "out", contract=contract, measure_profile=False)
    model = medinfer.load(path)
    assert model.manifest.inputs[0].shape == ("batch", 3) and model.manifest.decision.threshold == 0.4
    x = np.load(ref)[key(INPUT, "x")]
    np.testing.assert_allclose(model.predict(x).outputs["probabilities"], np.load(ref)[key(OUTPUT, "probabilities")],
                               atol=1e-6)
    named = {"a": np.float32([3.0]), "b": np.float32([0.0]), "c": np.float32([0.0])}
    assert list(model.predict(named).labels) == ["no"]  # named columns, checked against the contract
    assert "No held-out metrics" in (path / "model_card.md").read_text()  # REF.npz had no labels


@pytest.mark.parametrize("mutation", ["perturbed_weight", "swapped_outputs"])
def test_a_mutated_onnx_is_refused_with_exit_8_and_no_bundle(mutation: str, tmp_path: Path, capsys) -> None:
    source, ref, contract = _onnx_case(tmp_path)
    w = W.copy()
    if mutation == "perturbed_weight":
        w[1, 0] += 0.01
    else:
        w = w[:, ::-1]  # the two probability columns swapped
    source.write_bytes(_onnx_graph(w))
    assert main(["bundle", str(source), "--reference", str(ref), "--contract", str(contract),
                 "--out", str(tmp_path / "out"), "--profile", "default"]) == 8
    assert "parity gate FAILED" in capsys.readouterr().err
    assert not (tmp_path / "out" / "wrapped").exists()


BASE = {"name": "wrapped", "version": "1", "task": "binary_classification", "labels": ["no", "yes"],
        "positive_label": "yes", "threshold": 0.5, "inputs": {"x": {"units": "1", "range": [-10, 10]}},
        "card": {"summary": "s", "intended_use": "u"}}


@pytest.mark.parametrize(("drop", "named"), [
    ("task", "task = "), ("labels", "labels = "), ("positive_label", "positive_label = "),
    ("threshold", "threshold = 0.5"), ("units", "[inputs.x] units = "), ("range", "[inputs.x] range = "),
    ("summary", "[card] summary = "), ("name", "name = ")])
def test_a_field_that_cannot_be_inferred_is_asked_for_by_name(drop: str, named: str, tmp_path: Path,
                                                              capsys) -> None:
    doc = json.loads(json.dumps(BASE))
    for section in (doc, doc["inputs"]["x"], doc["card"]):
        section.pop(drop, None)
    source, ref, contract = _onnx_case(tmp_path, doc)
    assert main(["bundle", str(source), "--reference", str(ref), "--contract", str(contract),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "does not declare" in err and named in err and "UsageError" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_typo_in_the_contract_and_logits_as_scores_are_refused(tmp_path: Path, capsys) -> None:
    doc = {**BASE, "treshold": 0.5}
    source, ref, contract = _onnx_case(tmp_path, doc)
    assert main(["bundle", str(source), "--reference", str(ref), "--contract", str(contract)]) == 2
    assert "unknown field 'treshold'; did you mean 'threshold'?" in capsys.readouterr().err
    nets, ref2, contract2, _ = _torch_case(tmp_path)
    data = dict(np.load(ref2))
    np.savez(ref2, **{k: v for k, v in data.items() if k != "y"})
    bad = {**CONTRACT, "score_output": "logit_sum", "task": "binary_classification", "labels": ["no", "yes"],
           "positive_label": "yes", "threshold": 0.5}
    contract2.write_text(json.dumps(bad))
    assert main(["bundle", f"{nets}:original", "--reference", str(ref2), "--contract", str(contract2),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not probabilities" in capsys.readouterr().err


def test_scikit_learn_and_xgboost_files_are_brought_with_a_guard_and_signed(tmp_path: Path, signing_keys) -> None:
    skops_io = pytest.importorskip("skops.io")
    xgb = pytest.importorskip("xgboost")
    from medinfer.export.bring import bundle
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(np.int64)
    np.savez(tmp_path / "ref.npz", **pair_arrays({"features": X[200:]}, {}), y=y[200:])
    np.savez(tmp_path / "train.npz", **pair_arrays({"features": X[:200]}, {}))
    doc = {**BASE, "inputs": {"features": {"units": "1", "range": [-20, 20]}}}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    skops_io.dump(LogisticRegression().fit(X[:200], y[:200]), tmp_path / "lr.skops")
    xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X[:200], y[:200]).save_model(tmp_path / "xgb.json")
    for source, name in ((tmp_path / "lr.skops", "sklearn"), (tmp_path / "xgb.json", "xgboost")):
        (tmp_path / "c.json").write_text(json.dumps({**doc, "name": f"brought_{name}"}))
        path = bundle(source, tmp_path / "ref.npz", tmp_path / "out", contract=tmp_path / "c.json",
                      train_sample=tmp_path / "train.npz", sign=signing_keys["priv"], measure_profile=False)
        model = medinfer.load(path, require_signature=True, trusted_keys=[signing_keys["pub"]])
        assert model.signed_by and model.manifest.domain is not None
        assert model.manifest.metrics.heldout["roc_auc"].value > 0.8
        far = model.predict(np.full((1, 5), 15.0, np.float32))
        assert not far.in_domain[0]  # the guard fitted on TRAIN.npz flags what lies far outside it


CONV = """
import torch

def make():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 2),
                               torch.nn.Softmax(dim=1))
"""


def test_int8_ships_only_behind_the_clinical_gate_and_needs_labels_and_one_input(tmp_path: Path, capsys) -> None:
    import importlib.util

    (tmp_path / "conv.py").write_text(CONV)
    spec = importlib.util.spec_from_file_location("bring_conv_test", tmp_path / "conv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 1, 12, 12)).astype(np.float32)
    with torch.no_grad():
        p = module.make()(torch.from_numpy(x)).numpy()
    np.savez(tmp_path / "ref.npz", **pair_arrays({"x": x[32:]}, {"output": p[32:]}), y=np.arange(32) % 2)
    np.savez(tmp_path / "train.npz", **pair_arrays({"x": x[:32]}, {}))
    doc = {**BASE, "inputs": {"x": {"units": "1", "range": [-10, 10]}}}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    args = [f"{tmp_path / 'conv.py'}:make", "--reference", str(tmp_path / "ref.npz"), "--contract",
            str(tmp_path / "c.json"), "--out", str(tmp_path / "out"), "--profile", "default", "--int8"]
    assert main(["bundle", *args]) == 2  # no training sample to calibrate on
    assert "--train-sample" in capsys.readouterr().err
    assert main(["bundle", *args, "--train-sample", str(tmp_path / "train.npz")]) == 0
    m = medinfer.load_manifest(tmp_path / "out" / "wrapped")
    entry = m.parity.variants["int8"]  # shipped within the budget, or refused with its reason: never unchecked
    assert ("int8" in m.variants) == entry["shipped"] and "accuracy_delta" in entry
    if entry["shipped"]:
        assert medinfer.load(tmp_path / "out" / "wrapped", variant="int8").manifest.name == "wrapped"
    nets, ref2, contract2, _ = _torch_case(tmp_path / "two") if (tmp_path / "two").mkdir() is None else None
    assert main(["bundle", f"{nets}:original", "--reference", str(ref2), "--contract", str(contract2), "--int8",
                 "--train-sample", str(ref2), "--out", str(tmp_path / "o2")]) == 2
    assert "calibrates one-input graphs" in capsys.readouterr().err


def test_a_keras_file_is_brought_and_served_beside_a_two_input_model(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    pytest.importorskip("uvicorn")
    from medinfer.export.bring import bundle

    from tests.helpers.serving import http, serving

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(2).normal(size=(20, 6)).astype(np.float32)
    np.savez(tmp_path / "ref.npz", **pair_arrays({"vitals": x}, {"risk": model.predict(x, verbose=0)}))
    doc = {**BASE, "name": "keras_risk", "output_names": ["risk"],
           "inputs": {"vitals": {"units": "z-score", "range": [-10, 10]}}}
    (tmp_path / "k.json").write_text(json.dumps(doc))
    keras_path = bundle(tmp_path / "m.keras", tmp_path / "ref.npz", tmp_path / "out", contract=tmp_path / "k.json",
                        measure_profile=False)
    assert medinfer.load(keras_path).manifest.inputs[0].shape == ("N", 6)
    nets, ref, contract, expected = _torch_case(tmp_path)
    two = bundle(f"{nets}:original", ref, tmp_path / "out", contract=contract, measure_profile=False)
    data = np.load(ref)
    body = {"inputs": [{"name": n, "shape": list(data[key(INPUT, n)][:2].shape), "datatype": "FP32",
                        "data": data[key(INPUT, n)][:2].reshape(-1).tolist()} for n in ("image", "clinical")]}
    with serving([keras_path, two], log=tmp_path / "serve.log") as (url, _):
        status, doc = http(url, "/v2/models/two_inputs/infer", json.dumps(body).encode(),
                           {"Content-Type": "application/json"})
        assert status == 200, doc
        out = next(o for o in doc["outputs"] if o["name"] == "probabilities")
        np.testing.assert_allclose(np.reshape(out["data"], (2, 3)), expected["probabilities"][:2], atol=1e-5)
        body1 = {"inputs": [{"name": "vitals", "shape": [1, 6], "datatype": "FP32", "data": x[0].tolist()}]}
        status, doc = http(url, "/v2/models/keras_risk/infer", json.dumps(body1).encode(),
                           {"Content-Type": "application/json"})
        assert status == 200, doc


def _two_input_graph(batch: str | int | None) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "W"], ["z1"]), helper.make_node("MatMul", ["b", "V"], ["z2"]),
         helper.make_node("Add", ["z1", "z2"], ["y"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [batch, 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [batch, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 1])],
        initializer=[numpy_helper.from_array(np.ones((3, 1), np.float32), "W"),
                     numpy_helper.from_array(np.full((2, 1), 2.0, np.float32), "V")])
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


@pytest.mark.parametrize(("batch", "code"), [("batch", 0), (None, 0), (1, 2)])
def test_a_two_input_onnx_regressor_needs_a_dynamic_batch_axis(batch, code: int, tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(10, 3)).astype(np.float32), rng.normal(size=(10, 2)).astype(np.float32)
    y = a.sum(1, keepdims=True) + 2 * b.sum(1, keepdims=True)
    np.savez(tmp_path / "ref.npz", **pair_arrays({"a": a, "b": b}, {"y": y}), y=y[:, 0])
    (tmp_path / "c.json").write_text(json.dumps({
        "name": "two_onnx", "version": "1", "task": "regression", "card": {"summary": "s", "intended_use": "u"},
        "inputs": {"a": {"units": "1", "range": [-9, 9]}, "b": {"units": "1", "range": [-9, 9]}}}))
    (tmp_path / "m.onnx").write_bytes(_two_input_graph(batch))
    assert main(["bundle", str(tmp_path / "m.onnx"), "--reference", str(tmp_path / "ref.npz"), "--contract",
                 str(tmp_path / "c.json"), "--out", str(tmp_path / "out"), "--profile", "default"]) == code
    if code:
        assert "fixed first axis" in capsys.readouterr().err and not (tmp_path / "out" / "two_onnx").exists()
        return
    model = medinfer.load(tmp_path / "out" / "two_onnx")
    assert [t.shape[0] for t in model.manifest.inputs] == [batch or "N"] * 2
    assert "rmse" in model.manifest.metrics.heldout
    np.testing.assert_allclose(model.predict({"a": a[:3], "b": b[:3]}).scores, y[:3, 0], atol=1e-5)
