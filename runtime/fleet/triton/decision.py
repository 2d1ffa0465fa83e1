"""The bundle's decision rule as ONNX nodes, so Triton's onnxruntime backend answers what ``medinfer serve`` does.

The graph a bundle ships ends at its raw outputs (e.g. the CNN's sigmoid ``probability``); its labels come from
:mod:`medinfer.decision` with the bundle's operating point (the CNN's threshold 0.4966). ``export-triton`` appends
that same rule to the graph — ``scores`` (per-sample score), ``labels`` (the label strings) and, for a bundle with
a domain guard, ``in_domain`` (the domain score within the bundle's threshold, :func:`medinfer.decision.in_domain`)
— and checks on the golden input that the new graph gives exactly the labels, scores and flags of
``Model.predict`` before writing it.
Needs the ``onnx`` package (extra ``[triton]``).

binary: ``scores`` = the positive column (or the flattened sigmoid); ``labels`` = positive where
``scores >= threshold`` — compared in float64, like numpy's ``scores >= threshold`` on a device; multiclass:
argmax per row; regression: ``scores`` only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ParityError, UsageError
from ...extras import optional_import
from ...manifest import Manifest
from ...prediction import PredictionMeta

OUTPUTS = ("labels", "scores", "in_domain")


def with_decision(graph: bytes, manifest: Manifest) -> bytes:
    """``graph`` (the bundle's ONNX bytes) with ``scores`` and ``labels`` outputs computed by the decision rule.

    Raises:
        MissingExtraError: ``onnx`` is not installed.
        UsageError: the graph already has an output named ``scores`` or ``labels``.
    """
    onnx = optional_import("onnx", "triton", "export-triton's decision outputs (or --decision none)")
    from onnx import TensorProto, helper, numpy_helper
    meta = PredictionMeta.build(manifest, "default", "", "", "")
    model = onnx.load_from_string(graph)
    g = model.graph
    taken = [o.name for o in g.output if o.name in OUTPUTS]
    if taken:
        raise UsageError(f"{manifest.name}'s graph already has output(s) {taken}; export it with --decision none")
    p = "medinfer_decision_"

    def const(name: str, value: np.ndarray) -> str:
        g.initializer.append(numpy_helper.from_array(value, p + name))
        return p + name

    score = manifest.decision.score_output
    nodes = []
    if meta.score_column is not None:
        nodes.append(helper.make_node("Gather", [score, const("column", np.array(meta.score_column, np.int64))],
                                      ["scores"], axis=1))
    elif manifest.task == "binary_classification" or _one_column(manifest, score):
        nodes.append(helper.make_node("Reshape", [score, const("flat", np.array([-1], np.int64))], ["scores"]))
    else:
        nodes.append(helper.make_node("Identity", [score], ["scores"]))
    score_type = next(o.type.tensor_type.elem_type for o in g.output if o.name == score)
    outputs = [helper.make_tensor_value_info("scores", score_type, None)]
    if meta.labels is not None:
        names = const("labels", np.array([str(v) for v in meta.labels], dtype=object))
        if manifest.task == "binary_classification":
            threshold = 0.5 if meta.threshold is None else float(meta.threshold)
            nodes += [helper.make_node("Cast", ["scores"], [p + "scores64"], to=TensorProto.DOUBLE),
                      helper.make_node("Less", [p + "scores64", const("threshold", np.array(threshold))],
                                       [p + "below"]),
                      helper.make_node("Not", [p + "below"], [p + "at_or_above"]),
                      helper.make_node("Cast", [p + "at_or_above"], [p + "positive"], to=TensorProto.INT64)]
            index = p + "positive"
            if meta.positive == 0:  # the positive label is the first one: index = 1 - positive
                nodes.append(helper.make_node("Sub", [const("one", np.array(1, np.int64)), index], [p + "index"]))
                index = p + "index"
        else:
            nodes.append(helper.make_node("ArgMax", ["scores"], [p + "argmax"], axis=1, keepdims=0))
            index = p + "argmax"
        nodes.append(helper.make_node("Gather", [names, index], ["labels"], axis=0))
        outputs.insert(0, helper.make_tensor_value_info("labels", TensorProto.STRING, None))
    domain = manifest.domain
    if domain is not None and any(o.name == domain.output for o in g.output):
        # the applicability-domain rule of medinfer.decision.in_domain: score <= threshold in float32, as the graph
        # computes it; NaN is outside (not (score > threshold or isnan(score)): the operators of every opset >= 9)
        flat, score32, above, nan, out = (p + k for k in ("domain_flat", "domain32", "domain_above", "domain_nan",
                                                          "domain_out"))
        nodes += [helper.make_node("Reshape", [domain.output, const("domain_shape", np.array([-1], np.int64))],
                                   [flat]),
                  helper.make_node("Cast", [flat], [score32], to=TensorProto.FLOAT),
                  helper.make_node("Greater", [score32, const("domain_threshold",
                                                              np.array(domain.threshold, np.float32))], [above]),
                  helper.make_node("IsNaN", [score32], [nan]),
                  helper.make_node("Or", [above, nan], [out]),
                  helper.make_node("Not", [out], ["in_domain"])]
        outputs.append(helper.make_tensor_value_info("in_domain", TensorProto.BOOL, None))
    g.node.extend(nodes)
    g.output.extend(outputs)
    return bytes(model.SerializeToString())


def _one_column(manifest: Manifest, score: str) -> bool:
    spec = next(o for o in manifest.outputs if o.name == score)
    return manifest.task == "regression" and len(spec.shape) == 2 and spec.shape[1] == 1


def check_decision(graph: bytes, model: Any) -> None:
    """Run ``graph`` on the golden input and demand exactly ``model.predict``'s labels and scores.

    Raises:
        ParityError: a label or score differs.
    """
    from ...session import cpu_session, session_for_batch

    inputs, _ = model.golden()
    # The session options medinfer ran the golden batch with (as the config's threads and graph level are the
    # bundle's): onnxruntime's defaults may fuse differently and move a score by an ulp, which is not the rule's doing.
    session = cpu_session(graph, session_for_batch(model.manifest.profile, len(next(iter(inputs.values())))).profile)
    names = [o.name for o in session.get_outputs() if o.name in OUTPUTS]
    got = dict(zip(names, session.run(names, {k: v for k, v in inputs.items()})))
    pred = flagged(model).predict(inputs)
    if pred.in_domain is not None and ("in_domain" not in got or
                                       not np.array_equal(np.asarray(got["in_domain"]).reshape(-1), pred.in_domain)):
        raise ParityError(f"{model.name}: the exported graph's 'in_domain' differs from Model.predict's on the "
                          "golden input; export with --decision none")
    if not np.array_equal(got["scores"], np.asarray(pred.scores)):
        raise ParityError(f"{model.name}: the exported graph's 'scores' differ from Model.predict's on the golden "
                          "input; export with --decision none")
    if pred.labels is not None and [_text(v) for v in got["labels"]] != [str(v) for v in pred.labels]:
        raise ParityError(f"{model.name}: the exported graph's 'labels' differ from Model.predict's on the golden "
                          "input; export with --decision none")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def flagged(model: Any) -> Any:
    """``model`` answering every sample with its flag (the Triton graph answers and flags; it refuses nothing)."""
    import copy

    if getattr(model, "out_of_domain", "flag") == "flag":
        return model
    return copy.copy(model).configure(audit=None, deadline_ms=model.deadline_ms, out_of_domain="flag")
