"""Exact contributions of a linear classifier, as an explanation graph (method ``linear``).

A scikit-learn pipeline that ends in a linear model computes ``logit_c = z . W_c + b_c`` from a feature vector
``z`` that the model's graph already computes:

- TF-IDF + logistic regression: ``z`` is the l2-normalised TF-IDF vector (the linear classifier's input in the
  graph), ``W`` the coefficients: a word's contribution is its TF-IDF weight x its coefficient (baseline: the word
  absent);
- TruncatedSVD + logistic regression: the SVD is linear too, so ``z`` is the input itself and
  ``W = coef_ @ components_`` (computed here in float64): a gene's contribution is its value x its folded weight
  (baseline: 0, the average cell of z-scored data).

The graph is the model's graph cut at ``z``, times ``W``: attributions (N, F) for a binary model (the positive
label's log-odds), (N, C, F) for a multiclass one (each class's logit). Gated against scikit-learn in float64: every
attribution, and ``bias + sum`` against ``decision_function`` (exactness).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from medinfer.explain_spec import ATTRIBUTIONS, ExplanationEntry

from . import graphs
from .context import Built, Context

EXACT_ATOL = 1e-5  # bias + sum of the float32 attributions vs the float64 logit (the bound)


def _parts(ctx: Context) -> tuple[Any, Any, str]:
    """(the featurizer steps, the linear model, the kind: ``text`` or ``linear_input``)."""
    steps = getattr(ctx.model, "steps", None)
    if not steps or not hasattr(steps[-1][1], "coef_"):
        raise TypeError(f"{ctx.spec.name}: method 'linear' explains a scikit-learn Pipeline ending in a linear model, "
                        f"got {type(ctx.model).__name__}")
    head = ctx.model[:-1]
    first = steps[0][1]
    if hasattr(first, "vocabulary_"):
        return head, steps[-1][1], "text"
    if len(steps) == 2 and hasattr(first, "components_") and not hasattr(first, "mean_"):
        return head, steps[-1][1], "linear_input"  # TruncatedSVD: x @ components_.T, no centring
    if (len(steps) == 3 and hasattr(first, "scale_") and hasattr(first, "mean_") and hasattr(steps[1][1], "components_")
            and not hasattr(steps[1][1], "mean_")):
        return head, steps[-1][1], "scaled_input"  # StandardScaler then TruncatedSVD: contributions of z-scores
    raise TypeError(f"{ctx.spec.name}: method 'linear' knows TF-IDF and [StandardScaler +] TruncatedSVD pipelines, got "
                    f"{[type(s).__name__ for _, s in steps]}")


def _weights(ctx: Context, head: Any, clf: Any, kind: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(W (C', F) in float64, bias (C',), sign): one row (the positive label's log-odds: ``sign`` x scikit-learn's
    decision function, which scores ``classes_[1]``) for binary, one per class otherwise."""
    coef, intercept = np.asarray(clf.coef_, np.float64), np.asarray(clf.intercept_, np.float64)
    if kind in ("linear_input", "scaled_input"):
        coef = coef @ np.asarray(head[-1].components_, np.float64)
    if coef.shape[0] == 1:  # binary: coef_ scores classes_[1]
        sign = 1.0 if ctx.spec.positive == 1 else -1.0
        return sign * coef, sign * intercept, sign
    return coef, intercept, 1.0


def _graph(ctx: Context, W: np.ndarray, kind: str) -> Any:
    from onnx import helper, numpy_helper

    if kind == "text":
        clf = next(n for n in ctx.onx.graph.node if n.op_type == "LinearClassifier")
        z = clf.input[0]
    elif kind == "scaled_input":  # the z-scores the graph's Scaler computes from the input
        z = next(n for n in ctx.onx.graph.node if n.op_type == "Scaler").output[0]
    else:
        z = ctx.input_name
    onx = graphs.cut(ctx.onx, z)
    g = onx.graph
    if W.shape[0] == 1:
        g.initializer.append(numpy_helper.from_array(W[0].astype(np.float32), "explain_weights"))
        g.node.append(helper.make_node("Mul", [z, "explain_weights"], [ATTRIBUTIONS]))
        shape: list[Any] = ["N", W.shape[1]]
    else:
        opset = next(o.version for o in onx.opset_import if o.domain in ("", "ai.onnx"))
        g.initializer.append(numpy_helper.from_array(W.astype(np.float32), "explain_weights"))
        if opset >= 13:
            g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "explain_axis"))
            g.node.append(helper.make_node("Unsqueeze", [z, "explain_axis"], ["explain_rows"]))
        else:
            g.node.append(helper.make_node("Unsqueeze", [z], ["explain_rows"], axes=[1]))
        g.node.append(helper.make_node("Mul", ["explain_rows", "explain_weights"], [ATTRIBUTIONS]))
        shape = ["N", W.shape[0], W.shape[1]]
    from onnx import TensorProto

    g.output.append(helper.make_tensor_value_info(ATTRIBUTIONS, TensorProto.FLOAT, shape))
    return onx


def build(ctx: Context) -> Built:
    """The ``linear`` explanation of ``ctx``'s pipeline: graph, data, manifest entry (gated; raises ParityError)."""
    head, clf, kind = _parts(ctx)
    W, bias, sign = _weights(ctx, head, clf, kind)
    what = "a word's TF-IDF weight x its coefficient" if kind == "text" else \
        "a feature's z-score (the graph's centring and scaling) x its weight through the SVD and the logistic " \
        "regression (components_ x coef_)" if kind == "scaled_input" else \
        "a feature's value x its weight through the SVD and the logistic regression (components_ x coef_)"
    data = graphs.finish(_graph(ctx, W, kind), ctx.spec.name, ctx.metadata, f"exact linear contributions: {what}")
    session = ctx.session(data)
    X = ctx.dataset.X_test
    ctx.progress(f"[{ctx.spec.name}] explanation (linear): gating {len(X)} held-out samples against scikit-learn")
    got = ctx.run(session, X)
    if kind == "text":
        Z = head.transform(ctx.native_rows(X))
        Z = Z.toarray() if hasattr(Z, "toarray") else np.asarray(Z)
        names = [str(t) for t in head[0].get_feature_names_out()]
    elif kind == "scaled_input":
        Z = head[0].transform(np.asarray(X, np.float64))
        names = []
    else:
        Z = np.asarray(X, np.float64)
        names = []
    Z = np.asarray(Z, np.float64)
    ref = Z[:, None, :] * W[None] if W.shape[0] > 1 else Z * W[0]
    tol = ctx.spec.parity
    report = {"reference": "scikit-learn in float64 (the pipeline's transform x coef_; decision_function)",
              "attributions": graphs.gate(ctx.spec.name, "per-feature contributions", got, ref, tol.atol, tol.rtol)}
    logits = sign * np.asarray(ctx.model.decision_function(ctx.native_rows(X)), np.float64)
    if W.shape[0] == 1:
        logits = logits.reshape(-1)
        summed = bias[0] + got.astype(np.float64).sum(axis=1)
    else:
        summed = bias[None, :] + got.astype(np.float64).sum(axis=2)
    report["exactness"] = graphs.gate(ctx.spec.name, "bias + sum of the contributions vs the logit", summed, logits,
                                      EXACT_ATOL)
    entry = ExplanationEntry(
        method="linear", explains=str(ctx.settings.get("explains", "logit")),
        units="log-odds" if W.shape[0] == 1 else "logit",
        file=ctx.graph_file, data=ctx.data_file, exact=True, bias=tuple(float(b) for b in bias),
        baseline="the word absent from the text (TF-IDF weight 0)" if kind == "text" else
        "each feature at the training data's mean (the graph's own centring)" if kind == "scaled_input" else
        "the feature at 0 (for z-scored data: the average of the training data)",
        params={"kind": kind, "features": "vocabulary" if kind == "text" else "input"},
        parity=report, atol=max(tol.atol, 1e-6))
    arrays: dict[str, np.ndarray] = {} if kind == "text" else {
        "baseline": np.asarray(head[0].mean_ if kind == "scaled_input" else np.zeros(W.shape[1]), np.float32)}
    if names:
        arrays["names"] = np.array(names, dtype=str)
    return Built(entry, data, arrays, session)
