"""Add a spec's applicability-domain guard to the exported graph as the output ``domain_score`` (N,) float32.

Each part of :mod:`medinfer.train.domain` becomes a few standard ONNX operators on a tensor the graph already
computes; the guard's score is their element-wise Max. The native reference (numpy) is the guard's own ``score``;
the parity gate compares the two on the held-out set and the edge inputs. The guard must cost little next to the
model (benchmarks/domain.py measures it at batch 1 and 64): scales are folded into constants, distances are matrix
products (no (N, classes, D) broadcasts), and one part writes ``domain_score`` itself (no Max or Identity).

The graph of each part kind is a builder in :data:`PARTS`: the statistical kinds here, the plausibility rules'
in :mod:`.domain_rules_graph`, a source ``@patch_stats:<input>`` (the CT's HU statistics) in
:mod:`.patch_stats_graph`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from medinfer.registry import Registry

from ..train.domain import OUTPUT, DomainGuard, Part
from . import domain_rules_graph
from .patch_stats_graph import resolve


class _Builder:
    def __init__(self, onx: Any) -> None:
        from onnx import helper, numpy_helper

        self.onx, self.helper, self.numpy_helper = onx, helper, numpy_helper
        self.graph = onx.graph
        self.opset = next((o.version for o in onx.opset_import if o.domain in ("", "ai.onnx")), 17)
        self.count = 0
        self._floats: dict[str, str] = {}
        self._flats: dict[str, str] = {}
        self._dtypes: dict[str, int] | None = None
        self._ranks: dict[str, int] = {}

    def _dtype(self, name: str) -> int | None:
        """The element type of tensor ``name`` as the graph declares it (inputs, outputs, value_info), None when it
        does not: onnx's shape inference is not run (onnx 1.23 crashes the process on the TF-IDF graph's string
        operators); an undeclared type only costs a Cast."""
        if self._dtypes is None:
            g = self.graph
            values = [*g.value_info, *g.input, *g.output]
            self._dtypes = {v.name: v.type.tensor_type.elem_type for v in values}
            self._dtypes.update({i.name: i.data_type for i in g.initializer})
            self._ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in values
                           if v.type.tensor_type.HasField("shape")}
        return self._dtypes.get(name)

    def rank(self, name: str) -> int | None:
        self._dtype(name)
        if name not in self._ranks:  # an undeclared inner tensor: a 2-D product of 2-D tensors is 2-D
            node = next((n for n in self.graph.node if name in n.output), None)
            if node is not None and node.op_type in ("MatMul", "Gemm") and all(
                    self.rank(i) == 2 or self._init_rank(i) == 2 for i in node.input[:2]):
                self._ranks[name] = 2
        return self._ranks.get(name)

    def _init_rank(self, name: str) -> int | None:
        return next((len(i.dims) for i in self.graph.initializer if i.name == name), None)

    def source(self, name: str) -> str:
        """Tensor ``name`` as float32: cast once, shared by every part that reads it (no Cast when it is float)."""
        if name not in self._floats:
            self._floats[name] = name if self._is_float(name) else self.node("Cast", [name], "cast", to=1)
        return self._floats[name]

    def _is_float(self, name: str, depth: int = 8) -> bool:
        """Declared float32, or made by an arithmetic node from float32 inputs (undeclared inner tensors)."""
        dtype = self._dtype(name)
        if dtype is not None or depth == 0:
            return dtype == 1
        node = next((n for n in self.graph.node if name in n.output), None)
        return node is not None and node.op_type in ("MatMul", "Gemm", "Add", "Sub", "Mul") and all(
            self._is_float(i, depth - 1) for i in node.input if i)

    def flat_source(self, name: str) -> str:
        """Tensor ``name`` as float32 (N, -1), shared by every part that reads it."""
        if name not in self._flats:
            x = self.source(name)
            self._flats[name] = x if self.rank(name) == 2 else self.flat(x)
        return self._flats[name]

    def vector_source(self, name: str) -> str:
        """Tensor ``name`` (one value per sample) as float32 (N,)."""
        x = self.source(name)
        return x if self.rank(name) == 1 else self.node("Reshape", [x, self.const([-1], "shape1", np.int64)], "vec")

    def name(self, hint: str) -> str:
        self.count += 1
        return f"domain_{hint}_{self.count}"

    def const(self, value: Any, hint: str, dtype: Any = np.float32) -> str:
        name = self.name(hint)
        self.graph.initializer.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.name(hint)
        self.graph.node.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def reduce(self, op: str, x: str, axis: int | list[int], keepdims: int = 0) -> str:
        """ReduceX over one axis (or several), in the form this opset wants (axes as input from opset 18, 13 for
        ReduceSum)."""
        axes = [axis] if isinstance(axis, int) else list(axis)
        axes_as_input = self.opset >= (13 if op == "ReduceSum" else 18)
        if axes_as_input:
            return self.node(op, [x, self.const(axes, "axis", np.int64)], op.lower(), keepdims=keepdims)
        return self.node(op, [x], op.lower(), axes=axes, keepdims=keepdims)

    def flat(self, x: str) -> str:
        return self.node("Reshape", [x, self.const([0, -1], "shape", np.int64)], "flat")


def add_domain_output(onx: Any, guard: DomainGuard, output: str = OUTPUT, rows: str = "N",
                      builder: _Builder | None = None) -> str:
    """Append the guard's nodes and the ``output`` (``domain_score``) output to ``onx`` (in place); returns its
    name. ``rows``: the output's first dimension (``K`` for the windows of a whole-slice graph); ``builder``: the
    builder that already added nodes to ``onx`` (so that names stay unique)."""
    from onnx import TensorProto

    b = builder or _Builder(onx)
    # A rule's score is RULE_GAIN x max(excess, 0); next to a part that is never negative (every other kind) the
    # Max of the parts already clamps it, so its Relu is left out.
    alone = len(guard.parts) == 1 or all(p.rule for p in guard.parts)
    scores = [part_score(b, part, guard.sources, clamp=alone) for part in guard.parts]
    last = next((n for n in reversed(b.graph.node) if scores[0] in n.output), None)
    used = any(scores[0] in n.input for n in b.graph.node) or any(o.name == scores[0] for o in b.graph.output)
    if len(scores) == 1 and last is not None and last.name.startswith("domain_") and not used:
        last.output[list(last.output).index(scores[0])] = output  # the part's own last node writes the output
    elif len(scores) == 1:
        b.graph.node.append(b.helper.make_node("Identity", scores, [output], name=output))
    else:
        b.graph.node.append(b.helper.make_node("Max", scores, [output], name=output))
    b.graph.output.append(b.helper.make_tensor_value_info(output, TensorProto.FLOAT, [rows]))
    return output


#: ``(builder, part, source, scale, *more) -> (output name, already scaled)``: ``more`` are the tensors of
#: ``part.more``; "scaled" means divided by the scale (a rule: multiplied by RULE_GAIN) in its constants.
PartGraph = Callable[..., "tuple[str, bool]"]

#: The graph of each part kind (the plausibility rules' from :mod:`.domain_rules_graph`).
PARTS: Registry[PartGraph] = Registry("domain part kind", hint="; add its graph with @_graph_of(kind)")


def _graph_of(kind: str) -> Callable[[PartGraph], PartGraph]:
    def add(fn: PartGraph) -> PartGraph:
        return PARTS.add(kind, fn)
    return add


for _kind, _fn in domain_rules_graph.GRAPHS.items():
    PARTS.add(_kind, _fn)


def part_score(b: _Builder, part: Part, sources: dict[str, str], clamp: bool = True) -> str:
    """One part's normalized score (N,): a rule's RULE_GAIN x excess (clamped at 0 when ``clamp``), any other
    part's raw statistic / its scale (folded into constants where it can be)."""
    names = [resolve(b, n) or n for n in (sources.get(s, s) for s in (part.source, *part.more))]
    scale = float(part.scale)
    b.source(names[0])  # the float32 view of the source first (shared by the parts that read it)
    out, scaled = PARTS.get(part.kind)(b, part, names[0], scale, *names[1:])
    if part.rule:
        return b.node("Relu", [out], "rule") if clamp else out
    return out if scaled or scale == 1.0 else b.node("Mul", [out, b.const(1.0 / scale, "inv_scale")], "part")


@_graph_of("knn")
def _knn(b: _Builder, part: Part, source: str, scale: float) -> tuple[str, bool]:
    p = part.params
    z = b.node("Mul", [b.node("Sub", [b.flat_source(source), b.const(p["mean"], "mean")], "centred"),
                       b.const(p["inv_std"], "inv_std")], "z")
    ref = p["reference"].astype(np.float32)
    zz = b.reduce("ReduceSum", b.node("Mul", [z, z], "zsq"), 1, keepdims=1)
    zr = b.node("MatMul", [z, b.const(ref.T, "reference_t")], "zr")
    d2 = b.node("Sub", [b.node("Add", [zz, b.const((ref.astype(np.float64) ** 2).sum(1)[None], "rr")], "zzrr"),
                        b.node("Mul", [zr, b.const(2.0, "two")], "twozr")], "d2")
    d2 = b.node("Max", [d2, b.const(0.0, "zero")], "d2pos")
    k = b.const([int(p["k"][0])], "k", np.int64)
    nearest, unused = b.name("topk"), b.name("topk_index")
    b.graph.node.append(b.helper.make_node("TopK", [d2, k], [nearest, unused], name=nearest, axis=1, largest=0,
                                           sorted=1))
    return b.node("Sqrt", [b.reduce("ReduceMean", nearest, 1)], "knn"), False


@_graph_of("mahalanobis")
def _mahalanobis(b: _Builder, part: Part, source: str, scale: float) -> tuple[str, bool]:
    p = part.params
    return mahalanobis_nodes(b, b.flat_source(source), p["whiten"], p["means_w"], 1.0 / scale), True


@_graph_of("nll")
def _nll(b: _Builder, part: Part, source: str, scale: float) -> tuple[str, bool]:
    """-mean log p / scale, with two outer columns per feature for values outside its bins."""
    p = part.params
    flat = b.flat_source(source)
    table, floor = p["table"], float(p["floor"][0])
    bins = table.shape[1]
    outer = np.full((table.shape[0], 1), floor)
    wide = -np.concatenate([outer, table, outer], axis=1) / scale  # column 0: below, bins + 1: above
    i = b.node("Floor", [b.node("Div", [b.node("Sub", [flat, b.const(p["low"], "low")], "shifted"),
                                       b.const(p["width"], "width")], "scaled")], "bin")
    clipped = b.node("Clip", [i, b.const(-1.0, "lo"), b.const(float(bins), "hi")], "clipped")
    index = b.node("Add", [b.node("Cast", [clipped], "index", to=7),
                           b.const(np.arange(table.shape[0]) * (bins + 2) + 1, "offsets", np.int64)], "flat_index")
    return b.reduce("ReduceMean", b.node("Gather", [b.const(wide.reshape(-1), "table"), index], "logp", axis=0),
                    1), True


@_graph_of("low_share")
def _low_share(b: _Builder, part: Part, source: str, scale: float) -> tuple[str, bool]:
    low = b.node("LessOrEqual", [b.flat_source(source), b.const(part.params["floor"], "floor")], "low")
    return b.reduce("ReduceMean", b.node("Cast", [low], "lowf", to=1), 1), False


@_graph_of("entropy")
def _entropy(b: _Builder, part: Part, source: str, scale: float) -> tuple[str, bool]:
    q = b.node("Clip", [b.flat_source(source), b.const(1e-12, "eps"), b.const(1.0, "one")], "q")
    return b.node("Neg", [b.reduce("ReduceSum", b.node("Mul", [q, b.node("Log", [q], "logq")], "qlogq"), 1)],
                  "entropy"), False


def _series(b: _Builder, part: Part, source: str, kind: str) -> str:
    """``flat``: the share of unchanged in-range steps of one feature over T; ``step``: its largest step."""
    p = part.params
    f = b.node("Gather", [b.source(source), b.const(int(p["feature"][0]), "feature", np.int64)], "series", axis=2)
    big = b.const([np.iinfo(np.int64).max], "end", np.int64)
    later = b.node("Slice", [f, b.const([1], "s1", np.int64), big, b.const([1], "ax", np.int64)], "later")
    earlier = b.node("Slice", [f, b.const([0], "s0", np.int64), b.const([-1], "em1", np.int64),
                               b.const([1], "ax", np.int64)], "earlier")
    steps = b.node("Abs", [b.node("Sub", [later, earlier], "diff")], "steps")
    first = b.node("Slice", [f, b.const([0], "s0", np.int64), b.const([1], "e1", np.int64),
                             b.const([1], "ax", np.int64)], "first")
    zeros = b.node("Mul", [first, b.const(0.0, "zero")], "zeros")  # T = 1 has no step: 0
    if kind == "step":
        return b.reduce("ReduceMax", b.node("Concat", [steps, zeros], "steps0", axis=1), 1)
    # (number of unchanged steps) / T: the mean over T - 1 steps and one zero column
    inside = b.node("And", [b.node("Greater", [later, b.const(_finite(p["low"][0]), "low")], "above"),
                            b.node("Less", [later, b.const(_finite(p["high"][0]), "high")], "below")], "inside")
    still = b.node("Cast", [b.node("And", [b.node("LessOrEqual", [steps, b.const(p["eps"][0], "eps")], "same"),
                                           inside], "still")], "stillf", to=1)
    return b.reduce("ReduceMean", b.node("Concat", [still, zeros], "still0", axis=1), 1)


@_graph_of("flat")
def _flat(b: _Builder, part: Part, source: str, scale: float) -> tuple[str, bool]:
    return _series(b, part, source, "flat"), False


@_graph_of("step")
def _step(b: _Builder, part: Part, source: str, scale: float) -> tuple[str, bool]:
    return _series(b, part, source, "step"), False


@_graph_of("value")
def _value(b: _Builder, part: Part, source: str, scale: float) -> tuple[str, bool]:
    return b.vector_source(source), False


@_graph_of("inverse")
def _inverse(b: _Builder, part: Part, source: str, scale: float) -> tuple[str, bool]:
    """1 / (1 + count) / scale = (1 / scale) / (1 + count)."""
    one = b.const(1.0, "one")
    return b.node("Div", [b.const(1.0 / scale, "inv_scale"), b.node("Add", [one, b.vector_source(source)],
                                                                     "one_plus")], "inverse"), True


@_graph_of("stats")
def _stats(b: _Builder, part: Part, source: str, scale: float) -> tuple[str, bool]:
    """max(|mean - mu| / sigma, |std - mu_s| / sigma_s) / scale: the scale folded into the sigmas."""
    p = part.params
    flat = b.flat_source(source)
    mean = b.reduce("ReduceMean", flat, 1, keepdims=1)
    centred = b.node("Sub", [flat, mean], "centred")
    std = b.node("Sqrt", [b.reduce("ReduceMean", b.node("Mul", [centred, centred], "sq"), 1)], "std")
    m = b.node("Squeeze", [mean, b.const([1], "axis1", np.int64)], "mean")
    zm = b.node("Div", [b.node("Abs", [b.node("Sub", [m, b.const(p["mean"][0], "mu")], "dm")], "adm"),
                        b.const(p["mean"][1] * scale, "sigma")], "zm")
    zs = b.node("Div", [b.node("Abs", [b.node("Sub", [std, b.const(p["std"][0], "mus")], "ds")], "ads"),
                        b.const(p["std"][1] * scale, "sigmas")], "zs")
    return b.node("Max", [zm, zs], "zstats"), True


def mahalanobis_nodes(b: _Builder, x: str, whiten: np.ndarray, means_w: np.ndarray, gain: float) -> str:
    """gain x min over classes c of |x W - m_c W|^2, as matrix products: one class is |x W + b|^2 (Gemm, then
    ReduceSumSquare); C classes are |u|^2 + min_c (|m_c W|^2 - 2 u . m_c W) with u = x W (MatMul, ReduceSumSquare,
    Gemm, Add, ReduceMin): no (N, C, D) tensor. The gain is folded into W."""
    root = np.sqrt(gain)
    w = np.asarray(whiten, dtype=np.float64) * root
    m = np.asarray(means_w, dtype=np.float64) * root
    if len(m) == 1:
        d = b.node("Gemm", [x, b.const(w, "whiten"), b.const(-m[0], "mean_w")], "centred_w")
        return b.reduce("ReduceSumSquare", d, 1)
    u = b.node("MatMul", [x, b.const(w, "whiten")], "z_w")
    uu = b.reduce("ReduceSumSquare", u, 1, keepdims=1)
    cross = b.node("Gemm", [u, b.const(-2.0 * m.T, "means_w_t"), b.const((m ** 2).sum(1), "means_sq")], "cross")
    return b.reduce("ReduceMin", b.node("Add", [uu, cross], "d2"), 1)


def _finite(value: float) -> float:
    """A bound as float32: infinite bounds become the largest float32 (inputs are finite, checked before)."""
    return float(np.clip(value, -np.finfo(np.float32).max, np.finfo(np.float32).max))
