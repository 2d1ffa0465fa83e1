"""Per-feature path contributions of a random forest (Saabas), as an explanation graph (method ``saabas``).

In one tree, the positive class's probability at the leaf a sample reaches equals the root's value plus, at each
split on the way, the change of value from the node to its child; crediting each change to the split's feature gives
the feature's path contribution (Saabas, "Interpreting random forests", 2014). The forest averages its trees, so a
feature's contribution is the mean of its per-tree contributions and ``bias`` (the mean root value) + the sum of
the contributions = the forest's probability, exactly.

Per leaf, the contributions are constants: the explanation graph is a TreeEnsembleRegressor with the model graph's
very splits (its nodes are copied from the model's TreeEnsembleClassifier, thresholds included, so the two take the
same paths) and one target per feature, whose leaf weights are the path contributions / number of trees. Gated at
export against the shap package (``shap.TreeExplainer(model).shap_values(X, approximate=True)`` is Saabas) and
against the forest's probability (exactness). TreeSHAP is not used: its values depend on the other branches of
each split, which no per-leaf constant can express.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from medinfer.errors import ParityError
from medinfer.explain_spec import ATTRIBUTIONS, ExplanationEntry

from ...train.artifact import calibration_indices
from . import graphs
from .context import Built, Context

EXACT_ATOL = 1e-5
NODE_ATTRIBUTES = ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                   "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true", "nodes_hitrates")


def _leaf_targets(tree: Any, column: int, n_trees: int) -> dict[int, dict[int, float]]:
    """{leaf: {feature: contribution / n_trees}} of one fitted scikit-learn tree (positive class ``column``)."""
    value = np.asarray(tree.value[:, 0, :], np.float64)
    value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)  # proportions (older sklearn: counts)
    v = value[:, column]
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    out: dict[int, dict[int, float]] = {}
    stack: list[tuple[int, dict[int, float]]] = [(0, {})]
    while stack:
        node, acc = stack.pop()
        if left[node] == -1:
            out[node] = {f: c / n_trees for f, c in acc.items()}
            continue
        f = int(feature[node])
        for child in (int(left[node]), int(right[node])):
            stack.append((child, {**acc, f: acc.get(f, 0.0) + float(v[child] - v[node])}))
    return out


def _graph(ctx: Context, forest: Any, column: int) -> tuple[Any, float]:
    """The explanation graph (a TreeEnsembleRegressor on the model's splits) and the bias (mean root value)."""
    import onnx
    from onnx import helper

    source = next((n for n in ctx.onx.graph.node if n.op_type == "TreeEnsembleClassifier"), None)
    if source is None:
        raise TypeError(f"{ctx.spec.name}: method 'saabas' needs a TreeEnsembleClassifier in the model's graph")
    attrs = {a.name: helper.get_attribute_value(a) for a in source.attribute}
    trees = forest.estimators_
    n_features = int(forest.n_features_in_)
    leaves = [_leaf_targets(t.tree_, column, len(trees)) for t in trees]
    target: dict[str, list[Any]] = {"target_treeids": [], "target_nodeids": [], "target_ids": [], "target_weights": []}
    for tree_id, node_id, mode, feat in zip(attrs["nodes_treeids"], attrs["nodes_nodeids"], attrs["nodes_modes"],
                                            attrs["nodes_featureids"]):
        sk = trees[tree_id].tree_
        is_leaf = sk.children_left[node_id] == -1
        if is_leaf != (mode == b"LEAF") or (not is_leaf and sk.feature[node_id] != feat):
            raise ParityError(f"{ctx.spec.name}: the model graph's tree {tree_id} node {node_id} is not scikit-learn's "
                              "(the converter renumbered the nodes): the path contributions cannot be attached")
        if is_leaf:
            weights = leaves[tree_id][node_id] or {0: 0.0}
            for f, w in sorted(weights.items()):
                target["target_treeids"].append(tree_id)
                target["target_nodeids"].append(node_id)
                target["target_ids"].append(f)
                target["target_weights"].append(w)
    node = helper.make_node("TreeEnsembleRegressor", [ctx.input_name], [ATTRIBUTIONS], domain="ai.onnx.ml",
                            n_targets=n_features, aggregate_function="SUM", post_transform="NONE",
                            **{k: attrs[k] for k in NODE_ATTRIBUTES if k in attrs}, **target)
    onx = graphs.cut(ctx.onx, ctx.input_name)
    onx.graph.node.append(node)
    onx.graph.output.append(helper.make_tensor_value_info(ATTRIBUTIONS, onnx.TensorProto.FLOAT, ["N", n_features]))
    bias = float(np.mean([_leaf_root(t.tree_, column) for t in trees]))
    return onx, bias


def _leaf_root(tree: Any, column: int) -> float:
    root = np.asarray(tree.value[0, 0, :], np.float64)
    return float(root[column] / max(root.sum(), 1e-300))


def build(ctx: Context) -> Built:
    """The ``saabas`` explanation of ``ctx``'s forest: graph, data, manifest entry (gated; raises ParityError)."""
    import shap

    forest = ctx.model
    if not hasattr(forest, "estimators_") or not hasattr(forest, "classes_"):
        raise TypeError(f"{ctx.spec.name}: method 'saabas' explains a fitted scikit-learn forest classifier, got "
                        f"{type(forest).__name__}")
    column = list(forest.classes_).index(ctx.spec.positive)
    onx, bias = _graph(ctx, forest, column)
    data = graphs.finish(onx, ctx.spec.name, ctx.metadata, "Saabas path contributions of the forest's trees")
    session = ctx.session(data)
    X = np.asarray(ctx.dataset.X_test)
    ctx.progress(f"[{ctx.spec.name}] explanation (saabas): gating {len(X)} held-out samples against shap "
                 f"{shap.__version__} (TreeExplainer, approximate=True)")
    got = ctx.run(session, X)
    ref = np.asarray(shap.TreeExplainer(forest).shap_values(X.astype(np.float64), approximate=True))
    ref = ref[..., column] if ref.ndim == 3 else ref
    tol = ctx.spec.parity
    report = {"reference": f"shap {shap.__version__} TreeExplainer(model).shap_values(X, approximate=True) (Saabas)",
              "attributions": graphs.gate(ctx.spec.name, "Saabas contributions vs shap", got, ref, tol.atol, tol.rtol)}
    probability = np.asarray(forest.predict_proba(X), np.float64)[:, column]
    report["exactness"] = graphs.gate(ctx.spec.name, "bias + sum of the contributions vs the forest's probability",
                                      bias + got.astype(np.float64).sum(axis=1), probability, EXACT_ATOL)
    X_train = np.asarray(ctx.dataset.X_train, np.float32)  # the rows an artifact keeps: fresh and saved agree
    calib = X_train[calibration_indices(len(X_train), ctx.seed)]
    entry = ExplanationEntry(
        method="saabas", explains=str(ctx.settings.get("explains", "probability")), units="probability",
        file=ctx.graph_file, data=ctx.data_file, exact=True, bias=(bias,),
        baseline="the feature at its median over the training rows the artifact keeps (deletion curves only: path "
        "contributions need no baseline)",
        params={"trees": len(forest.estimators_), "features": "input"}, parity=report, atol=max(tol.atol, 1e-6))
    return Built(entry, data, {"baseline": np.median(calib, axis=0).astype(np.float32)}, session)
