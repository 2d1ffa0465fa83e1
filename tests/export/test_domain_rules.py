"""The plausibility rules and cheap statistics of medinfer.train.domain_rules: the graph computes what numpy does, a
rule scores 0 within its limit and RULE_GAIN x the excess beyond it, and the guard's cost stays a few operators."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from medinfer.export.domain_graph import add_domain_output
from medinfer.train import domain, domain_rules
from onnx import TensorProto, helper

RNG = np.random.default_rng(1)
TABLE = RNG.normal(size=(200, 6)).astype(np.float32)
LATENT = RNG.normal(size=(200, 3)).astype(np.float32)
SERIES = np.abs(RNG.normal(size=(40, 30, 4))).astype(np.float32) * 3


def _graph(inputs: dict[str, list]) -> object:
    values = [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n, dims in inputs.items()]
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n in inputs]
    outs = [helper.make_tensor_value_info(f"{n}_out", TensorProto.FLOAT, dims) for n, dims in inputs.items()]
    m = helper.make_model(helper.make_graph(nodes, "g", values, outs), opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


def _run(onx, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([domain.OUTPUT], feeds)[0]


def _check(part: domain.Part, feeds: dict[str, np.ndarray], dims: dict[str, list], calibrate: bool = True) -> None:
    guard = domain.DomainGuard([part], "test", features=lambda X: X)
    if calibrate and not part.rule:
        guard.calibrate(feeds)
    onx = _graph(dims)
    add_domain_output(onx, guard)
    np.testing.assert_allclose(_run(onx, feeds), guard.score(feeds), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rule", [False, True])
@pytest.mark.parametrize("lo,hi", [("floor", None), (None, "ceiling"), ("floor", "ceiling"), ("mixed", None)])
def test_bound_matches_numpy_for_tables_and_sequences(lo, hi, rule: bool) -> None:
    lows = {"floor": TABLE.min(0), "mixed": np.r_[TABLE.min(0)[:3], [-np.inf] * 3]}
    bounds = {"floor": lows.get(lo) if lo else None, "ceiling": TABLE.max(0)}
    part = domain_rules.bound("x", bounds["floor"] if lo else None, bounds["ceiling"] if hi else None,
                              np.ptp(TABLE, axis=0), "bound", rule=rule)
    shifted = np.concatenate([TABLE[:20], TABLE[:20] * 3, TABLE[:20] - 2]).astype(np.float32)
    _check(part, {"x": shifted}, {"x": ["N", 6]})
    seq = np.concatenate([SERIES[:10], SERIES[:10] * 4]).astype(np.float32)
    seq_part = domain_rules.bound("x", SERIES.reshape(-1, 4).min(0) if lo else None,
                                  SERIES.reshape(-1, 4).max(0) if hi else None, np.ones(4), "bound", rule=rule)
    _check(seq_part, {"x": seq}, {"x": ["N", "T", 4]})


@pytest.mark.parametrize("steps", [1, 5, 12, 13, 30])
def test_window_sums_match_numpy_for_any_sequence_length(steps: int) -> None:
    part = domain_rules.window_sum("x", (1, 3), 12, (20.0, 30.0), "per hour")
    x = np.ascontiguousarray(SERIES[:12, -steps:]).copy()
    x[:4, :, 1] = 9.0  # far above 20 per 12 steps when steps >= 3
    _check(part, {"x": x}, {"x": ["N", "T", 4]})


def test_a_rule_scores_zero_within_its_limit_and_its_gain_beyond() -> None:
    part = domain_rules.window_sum("x", (0,), 3, (10.0,), "at most 10 per 3 steps")
    x = np.zeros((3, 6, 1), np.float32)
    x[1, :3, 0] = 10.0 / 3  # exactly at the limit
    x[2, 2:5, 0] = 4.0  # 12 in 3 steps: 20 % over
    np.testing.assert_allclose(part.score(x), [0.0, 0.0, domain.RULE_GAIN * 0.2], atol=1e-6)
    guard = domain.DomainGuard([part], "t", features=lambda X: {"x": X})
    guard.check_rules(x[:2])
    with pytest.raises(ValueError, match="broken by 1 training samples"):
        guard.check_rules(x)


def test_identities_floor_share_zscore_and_pinned_share_match_numpy() -> None:
    coef = domain_rules.identity_columns([f"f{i}" for i in range(6)], [(("f0",), ("f1", "f2")), (("f3",), ("f9",))])
    assert coef.shape == (6, 1)  # an identity naming an unknown feature is skipped
    ok = TABLE.copy()
    ok[:, 0] = ok[:, 1] + ok[:, 2]
    mixed = ok.copy()
    mixed[:, 0] = ok[::-1, 0]
    _check(domain_rules.identities("x", coef, np.array([1e-3]), "identity"), {"x": np.concatenate([ok, mixed])},
           {"x": ["N", 6]})
    _check(domain_rules.floor_share_residual("x", "z", TABLE, LATENT, "floor share"),
           {"x": np.concatenate([TABLE, np.maximum(TABLE, 0.5)]), "z": np.concatenate([LATENT, LATENT])},
           {"x": ["N", 6], "z": ["N", 3]})
    _check(domain_rules.zscore("x", TABLE, (0, 4), "z"), {"x": TABLE * 2}, {"x": ["N", 6]})
    pinned = SERIES.copy()
    pinned[:5, :, 2] = 0.0
    _check(domain_rules.at_bounds("x", 2, 0.01, 10.0, "pinned", min_scale=0.5), {"x": pinned}, {"x": ["N", "T", 4]})


def test_the_mahalanobis_graph_is_matrix_products_without_a_class_by_feature_cube() -> None:
    """C classes: MatMul, ReduceSumSquare, Gemm, Add, ReduceMin (no (N, C, D) broadcast); one class: Gemm,
    ReduceSumSquare. Each writes domain_score itself (no Max or Identity after a lone part)."""
    for y, ops in ((RNG.integers(0, 4, 200), ["MatMul", "ReduceSumSquare", "Gemm", "Add", "ReduceMin"]),
                   (None, ["Gemm", "ReduceSumSquare"])):
        part = domain.mahalanobis("x", TABLE, y)
        guard = domain.DomainGuard([part], "t", features=lambda X: {"x": X}).calibrate(TABLE)
        onx = _graph({"x": ["N", 6]})
        before = len(onx.graph.node)
        add_domain_output(onx, guard)
        assert [n.op_type for n in onx.graph.node[before:]] == ops
        assert onx.graph.node[-1].output[0] == domain.OUTPUT
        assert all(len(i.dims) <= 2 for i in onx.graph.initializer)
        np.testing.assert_allclose(_run(onx, {"x": TABLE * 2}), guard.score(TABLE * 2), rtol=1e-4)


def test_the_gene_guard_is_a_few_passes_over_the_input_and_products_on_the_svd_coordinates() -> None:
    """The SVD's guard: no per-gene table lookup (Floor/Gather), no (N, classes, D) tensor; the latent distance and
    the expected floor share are matrix products on the 40 coordinates the model computes anyway."""
    from medinfer.train.specs.gene_expression_svd import _gene_parts

    genes, d = 80, 5
    x = np.where(RNG.random((300, genes)) < 0.6, -0.5, RNG.gamma(2.0, 1.0, (300, genes))).astype(np.float32)
    v = RNG.normal(size=(genes, d)).astype(np.float32)
    guard = domain.DomainGuard(_gene_parts({"input": x, "latent": x @ v}, RNG.integers(0, 4, 300)), "t",
                               features=lambda X: {"input": X, "latent": X @ v}).calibrate(x)
    onx = _graph({"x": ["N", genes]})
    onx.graph.initializer.append(__import__("onnx").numpy_helper.from_array(v, "svd"))
    onx.graph.node.append(helper.make_node("MatMul", ["x", "svd"], ["latent"]))
    guard.sources = {"input": "x"}
    before = len(onx.graph.node)
    add_domain_output(onx, guard)
    ops = [n.op_type for n in onx.graph.node[before:]]
    assert not {"Floor", "Gather", "Unsqueeze", "Clip"} & set(ops) and len(ops) <= 17, ops
    assert all(len(i.dims) <= 2 for i in onx.graph.initializer)
    shifted = np.concatenate([x[:20], x[:20][:, ::-1], x[:20] * 2]).astype(np.float32)
    np.testing.assert_allclose(_run(onx, {"x": shifted}), guard.score(shifted), rtol=1e-3, atol=1e-3)
