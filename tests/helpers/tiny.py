"""Tiny bundles built in-process with onnx.helper (no TensorFlow, no scikit-learn): a 3-feature logistic model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from medinfer.integrity import CONTRACT_SCHEME_KEY, contract_digest
from medinfer.manifest import Card, Decision, TensorSpec
from medinfer.schema import to_json

from .fields import bundle_fields, synthetic_data

W = np.array([[1.0, -1.0], [0.5, -0.5], [-2.0, 2.0]], dtype=np.float32)
B = np.array([0.1, -0.1], dtype=np.float32)
FEATURES = ("alpha", "beta", "gamma")
RANGE = (-10.0, 10.0)


def reference(x: np.ndarray) -> np.ndarray:
    """The tiny model in numpy: softmax(x @ W + B)."""
    z = x.astype(np.float32) @ W + B
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def contract(name: str = "tiny_logistic") -> dict[str, Any]:
    return {
        "name": name,
        "version": "0.0.1",
        "task": "binary_classification",
        "inputs": to_json((TensorSpec("x", "float32", ("N", 3), range=RANGE, units="a.u.", names=FEATURES),)),
        "outputs": to_json((TensorSpec("label", "int64", ("N",)), TensorSpec("probabilities", "float32", ("N", 2)))),
        "labels": ["negative", "positive"],
        "decision": to_json(Decision(score_output="probabilities", label_output="label",
                                     positive_label="positive", threshold=0.5)),
    }


def model_bytes(name: str = "tiny_logistic", metadata: dict[str, str] | None = None, slow: int = 0,
                wide: int = 0) -> bytes:
    """The tiny logistic graph; ``slow`` > 0 adds that many 512x512 MatMuls whose result is multiplied by 0
    (same outputs, long run: for deadline tests); ``wide`` > 0 one (1, wide) x (wide, wide) MatMul on a weight of
    wide² float32 (same outputs, a large initializer: for the shared weights of serve --workers)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "W"], ["z0"])]
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")]
    if slow:
        rng = np.random.default_rng(0)
        inits += [numpy_helper.from_array((rng.standard_normal((512, 512)) / 512).astype(np.float32), "H"),
                  numpy_helper.from_array(np.zeros((1,), np.float32), "Zero")]
        nodes += [helper.make_node("ReduceSum", ["x"], ["xs"], keepdims=0),  # input-dependent: not folded away
                  helper.make_node("Mul", ["H", "xs"], ["h_start"])]
        prev = "h_start"
        for i in range(slow):
            nodes.append(helper.make_node("MatMul", [prev, "H"], [f"h{i}"]))
            prev = f"h{i}"
        nodes += [helper.make_node("ReduceSum", [prev], ["hs"], keepdims=0),
                  helper.make_node("Mul", ["hs", "Zero"], ["h0z"]),
                  helper.make_node("Add", ["z0", "h0z"], ["z0s"])]
        z0 = "z0s"
    else:
        z0 = "z0"
    if wide:
        rng = np.random.default_rng(1)
        inits += [numpy_helper.from_array((rng.standard_normal((wide, wide)) / wide).astype(np.float32), "Wide"),
                  numpy_helper.from_array(np.zeros((1,), np.float32), "WideZero"),
                  numpy_helper.from_array(np.array([1, wide], np.int64), "WideShape")]
        nodes += [helper.make_node("ReduceSum", ["x"], ["wx"], keepdims=0),  # input-dependent: not folded away
                  helper.make_node("Expand", ["wx", "WideShape"], ["wv"]),
                  helper.make_node("MatMul", ["wv", "Wide"], ["wm"]),
                  helper.make_node("ReduceSum", ["wm"], ["ws"], keepdims=0),
                  helper.make_node("Mul", ["ws", "WideZero"], ["wz"]),
                  helper.make_node("Add", [z0, "wz"], ["z0w"])]
        z0 = "z0w"
    nodes += [
        helper.make_node("Add", [z0, "B"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        initializer=inits,
    )
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    props = metadata if metadata is not None else {
        "medinfer.name": name, "medinfer.version": "0.0.1", "medinfer.contract_sha256": contract_digest(contract(name))}
    for k, v in props.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


GOLDEN_X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 4.5], [0.0, 0.0, 0.0]], dtype=np.float32)


def build(folder: Path, *, name: str = "tiny_logistic", golden_out: np.ndarray | None = None,
          metadata: dict[str, str] | None = None, slow: int = 0, wide: int = 0,
          extra_files: dict[str, tuple[bytes, str]] | None = None, **overrides: Any) -> Path:
    """Write a valid tiny bundle into ``folder`` (created); overrides replace manifest fields; ``extra_files``
    ({name: (bytes, role)}) are written and pinned too."""
    from medinfer.export.writer import golden_npz, write_bundle

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected = reference(GOLDEN_X) if golden_out is None else golden_out
    golden = {"probabilities": expected.astype(np.float32)}
    fields = bundle_fields(contract(name), golden, **overrides)
    files = {"model.onnx": (model_bytes(name, metadata, slow, wide), "model"),
             "golden.npz": golden_npz({"x": GOLDEN_X}, golden), **(extra_files or {})}
    write_bundle(folder, fields, files)
    return folder


def _write(folder: Path, name: str, contract_doc: dict[str, Any], graph_bytes: bytes, golden_x: np.ndarray,
           golden_out: dict[str, np.ndarray], **overrides: Any) -> Path:
    from medinfer.export.writer import golden_npz, write_bundle

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    input_name = contract_doc["inputs"][0]["name"]
    fields = bundle_fields(contract_doc, golden_out, **{"description": f"{name}: tiny test model (synthetic)",
                                                        **overrides})
    files = {"model.onnx": (graph_bytes, "model"), "golden.npz": golden_npz({input_name: golden_x}, golden_out)}
    write_bundle(folder, fields, files)
    return folder


def _graph(name: str, contract_doc: dict[str, Any], nodes: list, inputs: list, outputs: list, inits: list,
           scheme: str = "1") -> bytes:
    """A graph carrying the contract digest of ``contract_doc`` in ``scheme`` ("1": what bundles before the guard's
    settings were digested carry, and no scheme key; "2": ``contract_doc`` must then hold the manifest's
    ``domain``, ``profile`` and ``variants`` as written, see :func:`guarded_doc`)."""
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    props = {"medinfer.name": name, "medinfer.version": "0.0.1",
             "medinfer.contract_sha256": contract_digest(contract_doc, scheme)}
    if scheme != "1":
        props[CONTRACT_SCHEME_KEY] = scheme
    for k, v in props.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


SIGMOID_W = np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)


def sigmoid_reference(x: np.ndarray) -> np.ndarray:
    """The sigmoid model in numpy: sigmoid(x @ W), shape (N, 1)."""
    return 1.0 / (1.0 + np.exp(-(x.astype(np.float32) @ SIGMOID_W)))


def build_sigmoid(folder: Path, *, name: str = "tiny_sigmoid", threshold: float | None = None) -> Path:
    """A binary model with ONE sigmoid unit (N, 1) — the seed CNN's shape — and, by default, no threshold."""
    from onnx import TensorProto, helper, numpy_helper

    doc = {
        "name": name, "version": "0.0.1", "task": "binary_classification",
        "inputs": to_json((TensorSpec("x", "float32", ("N", 3), range=RANGE),)),
        "outputs": to_json((TensorSpec("probability", "float32", ("N", 1)),)),
        "labels": ["negative", "positive"],
        "decision": to_json(Decision(score_output="probability", positive_label="positive", threshold=threshold)),
    }
    graph = _graph(name, doc, [helper.make_node("MatMul", ["x", "W"], ["z"]),
                               helper.make_node("Sigmoid", ["z"], ["probability"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                   [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])],
                   [numpy_helper.from_array(SIGMOID_W, "W")])
    return _write(folder, name, doc, graph, GOLDEN_X, {"probability": sigmoid_reference(GOLDEN_X)})


def build_sequence(folder: Path, *, name: str = "tiny_sequence", units: str | None = None,
                   facts: dict[str, Any] | None = None,
                   feature_ranges: tuple[tuple[float, float], ...] | None = None,
                   names: tuple[str, ...] | None = None) -> Path:
    """A regression model over a dynamic time axis, (N, T, 2) -> (N, 1): the mean of every value (like the LSTM's
    (N, T, 10) contract, sequences of any length T), optionally with per-feature ranges."""
    from onnx import TensorProto, helper

    envelope = RANGE if feature_ranges is None else (min(lo for lo, _ in feature_ranges),
                                                     max(hi for _, hi in feature_ranges))
    doc = {
        "name": name, "version": "0.0.1", "task": "regression",
        "inputs": to_json((TensorSpec("x", "float32", ("N", "T", 2), range=envelope, names=names,
                                      feature_ranges=feature_ranges, facts=facts or {}),)),
        "outputs": to_json((TensorSpec("value", "float32", ("N", 1), units=units),)),
        "labels": None,
        "decision": to_json(Decision(score_output="value")),
    }
    graph = _graph(name, doc, [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
                               helper.make_node("Unsqueeze", ["m", "axis"], ["value"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 2])],
                   [helper.make_tensor_value_info("value", TensorProto.FLOAT, ["N", 1])],
                   [helper.make_tensor(name="axis", data_type=TensorProto.INT64, dims=[1], vals=[1])])
    x = np.arange(2 * 4 * 2, dtype=np.float32).reshape(2, 4, 2) / 10
    if feature_ranges is not None:
        x = np.clip(x, [lo for lo, _ in feature_ranges], [hi for _, hi in feature_ranges]).astype(np.float32)
    return _write(folder, name, doc, graph, x, {"value": x.mean(axis=(1, 2))[:, None]})


def build_text(folder: Path, *, name: str = "tiny_text") -> Path:
    """A text model without tokenizer: the whole text is looked up (ai.onnx.ml LabelEncoder), 'normal' scores low,
    anything else high. Enough for the string paths (CSV, JSON, serve BYTES) in device-only tests."""
    from onnx import TensorProto, helper

    doc = {
        "name": name, "version": "0.0.1", "task": "binary_classification",
        "inputs": to_json((TensorSpec("text", "string", ("N", 1)),)),
        "outputs": to_json((TensorSpec("probability", "float32", ("N", 1)),)),
        "labels": ["normal", "abnormal"],
        "decision": to_json(Decision(score_output="probability", positive_label="abnormal", threshold=0.5)),
    }
    nodes = [helper.make_node("LabelEncoder", ["text"], ["logit"], domain="ai.onnx.ml",
                              keys_strings=["normal", "Normal", "NORMAL"], values_floats=[-2.0, -2.0, -2.0],
                              default_float=2.0),
             helper.make_node("Sigmoid", ["logit"], ["probability"])]
    import onnx

    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("text", TensorProto.STRING, ["N", 1])],
                              [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])])
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    onx.ir_version = 8
    for k, v in {"medinfer.name": name, "medinfer.version": "0.0.1",
                 "medinfer.contract_sha256": contract_digest(doc)}.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(onx)
    x = np.array([["normal"], ["Effusion"]], dtype=object)
    expected = 1 / (1 + np.exp(-np.array([[-2.0], [2.0]], np.float32)))
    return _write(folder, name, doc, onx.SerializeToString(), x, {"probability": expected.astype(np.float32)})


def build_evidence(folder: Path, *, name: str = "tiny_evidence") -> Path:
    """The tiny logistic model plus an evidence output ``nonzero`` (how many features are non-zero): an all-zero
    row carries no information and must get no answer (like a text with no known word)."""
    from medinfer.manifest import Evidence
    from onnx import TensorProto, helper, numpy_helper

    doc = contract(name)
    doc["outputs"] = to_json((TensorSpec("label", "int64", ("N",)), TensorSpec("probabilities", "float32", ("N", 2)),
                              TensorSpec("nonzero", "float32", ("N",))))
    doc["decision"] = to_json(Decision(score_output="probabilities", label_output="label", positive_label="positive",
                                       threshold=0.5, evidence=Evidence("nonzero", 1.0, "non-zero features")))
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z0"]), helper.make_node("Add", ["z0", "B"], ["z"]),
             helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
             helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
             helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Greater", ["a", "zero"], ["g"]),
             helper.make_node("Cast", ["g"], ["gf"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["gf", "axis"], ["nonzero"], keepdims=0)]
    graph = _graph(name, doc, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                   [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
                    helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2]),
                    helper.make_tensor_value_info("nonzero", TensorProto.FLOAT, ["N"])],
                   [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B"),
                    numpy_helper.from_array(np.zeros((), np.float32), "zero"),
                    numpy_helper.from_array(np.array([1], np.int64), "axis")])
    x = GOLDEN_X[:2]  # rows with information
    return _write(folder, name, doc, graph, x, {"probabilities": reference(x)})


CT_PATCH = 100
CT_RANGE = (-1024.0, 3071.0)
CT_SCALE, CT_OFFSET = 0.01, 3.0  # probability = sigmoid(mean HU of the patch / 100 + 3): soft tissue > 0.5


def ct_reference(x: np.ndarray) -> np.ndarray:
    """The tiny CT model in numpy: sigmoid(mean(HU) * 0.01 + 3) per patch, shape (N, 1)."""
    m = x.astype(np.float32).mean(axis=(1, 2, 3))
    return (1.0 / (1.0 + np.exp(-(m * CT_SCALE + CT_OFFSET))))[:, None].astype(np.float32)


def build_ct(folder: Path, *, name: str = "tiny_ct", threshold: float = 0.5, **overrides: Any) -> Path:
    """A CT model like lung_nodule_cnn's contract without TensorFlow: (N, 100, 100, 1) float32 HU -> (N, 1)
    sigmoid of the patch's mean HU; input facts modality CT / units HU, so ``medinfer predict`` takes .dcm.
    ``overrides`` replace manifest fields."""
    from onnx import TensorProto, helper, numpy_helper

    facts = {"modality": "CT", "units": "HU", "patch": [CT_PATCH, CT_PATCH],
             "dicom": {"modality": "CT", "photometric": ["MONOCHROME2", "MONOCHROME1"], "clip_hu": list(CT_RANGE),
                       "window_stride": CT_PATCH // 4},
             "training_data": "simulated lesions on real CT background"}
    doc = {
        "name": name, "version": "0.0.1", "task": "binary_classification",
        "inputs": to_json((TensorSpec("hu", "float32", ("N", CT_PATCH, CT_PATCH, 1), units="HU", range=CT_RANGE,
                                      facts=facts),)),
        "outputs": to_json((TensorSpec("probability", "float32", ("N", 1)),)),
        "labels": ["no_nodule", "nodule"],
        "decision": to_json(Decision(score_output="probability", positive_label="nodule", threshold=threshold)),
    }
    graph = _graph(name, doc, [helper.make_node("ReduceMean", ["hu"], ["m"], axes=[1, 2, 3], keepdims=0),
                               helper.make_node("Unsqueeze", ["m", "axis"], ["m1"]),
                               helper.make_node("Mul", ["m1", "scale"], ["z0"]),
                               helper.make_node("Add", ["z0", "offset"], ["z"]),
                               helper.make_node("Sigmoid", ["z"], ["probability"])],
                   [helper.make_tensor_value_info("hu", TensorProto.FLOAT, ["N", CT_PATCH, CT_PATCH, 1])],
                   [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])],
                   [helper.make_tensor(name="axis", data_type=TensorProto.INT64, dims=[1], vals=[1]),
                    numpy_helper.from_array(np.array([CT_SCALE], np.float32), "scale"),
                    numpy_helper.from_array(np.array([CT_OFFSET], np.float32), "offset")])
    x = np.stack([np.full((CT_PATCH, CT_PATCH, 1), v, np.float32) for v in (-900.0, -300.0, 40.0)])
    fields = {"data": synthetic_data("SIMULATED lesions on REAL CT background (a tiny test stand-in)"),
              "card": Card(summary="tiny CT stand-in", intended_use="Tests of the DICOM and FHIR encoders only.",
                           out_of_scope=("Any clinical use.",), limitations=("A mean of HU, not a CNN.",))}
    return _write(folder, name, doc, graph, x, {"probability": ct_reference(x)}, **{**fields, **overrides})


MULTI_W = np.array([[2.0, 0.0, -1.0], [0.0, 2.0, -1.0], [-1.0, -1.0, 2.0]], dtype=np.float32)
MULTI_LABELS = ("CD14+ Monocyte", "CD19+ B", "Dendritic")


def multiclass_reference(x: np.ndarray) -> np.ndarray:
    """The multiclass model in numpy: softmax(x @ MULTI_W), shape (N, 3)."""
    z = x.astype(np.float32) @ MULTI_W
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def build_multiclass(folder: Path, *, name: str = "tiny_multiclass") -> Path:
    """A 3-class model (like the gene model's cell types): softmax(x @ W) over 3 features, argmax decision."""
    from onnx import TensorProto, helper, numpy_helper

    doc = {
        "name": name, "version": "0.0.1", "task": "multiclass_classification",
        "inputs": to_json((TensorSpec("x", "float32", ("N", 3), range=RANGE),)),
        "outputs": to_json((TensorSpec("probabilities", "float32", ("N", 3)),)),
        "labels": list(MULTI_LABELS),
        "decision": to_json(Decision(score_output="probabilities")),
    }
    graph = _graph(name, doc, [helper.make_node("MatMul", ["x", "W"], ["z"]),
                               helper.make_node("Softmax", ["z"], ["probabilities"], axis=1)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                   [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])],
                   [numpy_helper.from_array(MULTI_W, "W")])
    return _write(folder, name, doc, graph, GOLDEN_X, {"probabilities": multiclass_reference(GOLDEN_X)})


def domain_reference(x: np.ndarray) -> np.ndarray:
    """The tiny guard in numpy: the mean of squared features / 10 (0 at the centre of the training data)."""
    return (x.astype(np.float32) ** 2).mean(axis=1) / np.float32(10)


def guarded_doc(contract_doc: dict[str, Any], domain: Any, profile: dict[str, Any] | None = None,
                variants: dict[str, Any] | None = None) -> dict[str, Any]:
    """``contract_doc`` with the manifest's ``domain``, ``profile`` and ``variants`` as :func:`_write` will write
    them (``bundle_fields``' one-thread profile, the default variant): what a scheme-2 contract digest covers."""
    from medinfer.manifest import SessionProfile, Variant
    from medinfer.schema import parse

    prof = parse(SessionProfile, profile or {"intra_op_num_threads": 1, "inter_op_num_threads": 1})
    return {**contract_doc, "domain": to_json(domain) if domain is not None else None, "profile": to_json(prof),
            "variants": to_json(variants or {"default": Variant(file="model.onnx")})}


def build_domain(folder: Path, *, name: str = "tiny_domain", threshold: float = 1.0, scheme: str = "1") -> Path:
    """The tiny logistic model with an applicability-domain output ``domain_score`` (its manifest ``domain``
    section): samples with a domain score above ``threshold`` are outside the domain. ``scheme`` "2" digests the
    guard's settings into the graph as the exporter does; "1" is a bundle written before that."""
    from medinfer.manifest import Domain
    from onnx import TensorProto, helper, numpy_helper

    doc = contract(name)
    doc["outputs"] = to_json((TensorSpec("label", "int64", ("N",)), TensorSpec("probabilities", "float32", ("N", 2)),
                              TensorSpec("domain_score", "float32", ("N",))))
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z0"]), helper.make_node("Add", ["z0", "B"], ["z"]),
             helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
             helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
             helper.make_node("Mul", ["x", "x"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["msq"], axes=[1], keepdims=0),
             helper.make_node("Div", ["msq", "ten"], ["domain_score"])]
    domain = Domain(output="domain_score", threshold=threshold, coverage=0.99, method="mean square / 10 (test)",
                    calibration={"data": "synthetic"}, evaluation={})
    graph = _graph(name, guarded_doc(doc, domain) if scheme != "1" else doc, nodes,
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                   [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
                    helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2]),
                    helper.make_tensor_value_info("domain_score", TensorProto.FLOAT, ["N"])],
                   [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B"),
                    numpy_helper.from_array(np.array(10, np.float32), "ten")], scheme)
    return _write(folder, name, doc, graph, GOLDEN_X, {"probabilities": reference(GOLDEN_X)}, domain=domain)


def edge_set(folder: Path) -> list[Path]:
    """The three tiny bundles the edge check (scripts/edge_check.py) compares across machines, built in ``folder``."""
    folder = Path(folder)
    return [build(folder / "tiny_logistic"), build_sigmoid(folder / "tiny_sigmoid"),
            build_sequence(folder / "tiny_sequence")]


if __name__ == "__main__":  # python -m tests.helpers.tiny FOLDER: what scripts/edge_check.py runs (no import of tests)
    import sys

    for path in edge_set(Path(sys.argv[1])):
        print(path)
