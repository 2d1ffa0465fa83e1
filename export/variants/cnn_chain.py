"""Read a CNN classifier's fp32 ONNX graph as the chain it is: CT windows, convolution stages (valid 3x3 conv, ReLU,
max-pool), flatten, dense layers (:func:`parse`), so :mod:`.int8_nhwc_graph` can rewrite it channels-last
with onnxruntime's int8 kernels.

:func:`parse` refuses (:class:`Int8NhwcError`) any node it cannot prove it re-expresses: padding, strides, dilation,
groups, ceil-mode or overlapping pools, a flatten in another order, a non-constant weight. The applicability-domain
guard's nodes (``domain_*``) read the input too; they are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

GUARD_PREFIX = "domain_"


class Int8NhwcError(ValueError):
    """The graph is not a chain this rewrite re-expresses exactly (the variant is then refused, not shipped)."""


@dataclass(frozen=True)
class ConvStage:
    weight: np.ndarray  # (Cout, Cin, kh, kw), ONNX's layout
    bias: np.ndarray  # (Cout,)
    pool: int = 0  # MaxPool kernel = stride (0: none)


@dataclass(frozen=True)
class DenseStage:
    weight: np.ndarray  # (K, N)
    bias: np.ndarray  # (N,)
    activation: str  # "relu" | "sigmoid" | ""


@dataclass
class Chain:
    input: str
    output: str
    window_scale: np.ndarray  # (C,) : window c = clip(scale_c * x + offset_c, 0, 1)
    window_offset: np.ndarray
    convs: list[ConvStage] = field(default_factory=list)
    dense: list[DenseStage] = field(default_factory=list)
    last: str = ""  # the name of the fp32 graph's node that computes ``output``


class _Graph:
    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        g = model.graph
        self.g = g
        self.consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = numpy_helper.to_array(a.t)
        self.users: dict[str, list[Any]] = {}
        for n in g.node:
            if n.name.startswith(GUARD_PREFIX):  # the applicability-domain guard reads the input too; it is kept
                continue
            for i in n.input:
                self.users.setdefault(i, []).append(n)

    def const(self, name: str) -> np.ndarray:
        if name not in self.consts:
            raise Int8NhwcError(f"{name!r} is computed, expected a constant")
        return np.asarray(self.consts[name])

    def next(self, tensor: str, ops: tuple[str, ...], shape_users: tuple[str, ...] = ()) -> Any:
        """The one consumer of ``tensor`` (besides ``shape_users`` op types, e.g. a Shape read for a Reshape)."""
        users = [n for n in self.users.get(tensor, []) if n.op_type not in shape_users]
        if len(users) != 1 or users[0].op_type not in ops:
            raise Int8NhwcError(f"{tensor!r} feeds {[n.op_type for n in users]}, expected one of {ops}")
        return users[0]


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _scalar(g: _Graph, name: str) -> float:
    v = g.const(name).reshape(-1)
    if v.size != 1:
        raise Int8NhwcError(f"{name!r} has {v.size} values, expected one")
    return float(v[0])


def _window(g: _Graph, node: Any, x: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """The 1x1 window convolution from one channel + Relu + Min 1 + Max 0; returns the last node."""
    w = g.const(node.input[1])
    if node.op_type != "Conv" or w.shape[1:] != (1, 1, 1) or np.any(w <= 0):
        raise Int8NhwcError(f"the first layer is {node.op_type} {w.shape}, expected 1x1 windows of one channel")
    a = w.reshape(-1).astype(np.float64)
    b = g.const(node.input[2]).reshape(-1).astype(np.float64) if len(node.input) > 2 else np.zeros_like(a)
    n = g.next(node.output[0], ("Relu",))
    n = g.next(n.output[0], ("Min",))
    hi = _scalar(g, n.input[1])
    n = g.next(n.output[0], ("Max",))
    lo = _scalar(g, n.input[1])
    if (lo, hi) != (0.0, 1.0):
        raise Int8NhwcError(f"the windows are clipped to [{lo}, {hi}], expected [0, 1]")
    return n, a, b


def _conv(g: _Graph, node: Any) -> tuple[Any, ConvStage]:
    w = g.const(node.input[1]).astype(np.float32)
    kh, kw = w.shape[2:]
    if (_attr(node, "group", 1) != 1 or list(_attr(node, "strides", [1, 1])) != [1, 1]
            or list(_attr(node, "dilations", [1, 1])) != [1, 1] or any(_attr(node, "pads", [0] * 4))
            or _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID")):
        raise Int8NhwcError(f"{node.name}: only valid, stride-1, undilated, ungrouped convolutions are rewritten")
    bias = (g.const(node.input[2]).astype(np.float32) if len(node.input) > 2
            else np.zeros(w.shape[0], np.float32))
    n = g.next(node.output[0], ("Relu", "Add"))
    if n.op_type == "Add":
        bias = bias + g.const(n.input[1]).astype(np.float32).reshape(-1)
        n = g.next(n.output[0], ("Relu",))
    pool = 0
    after = [u for u in g.users.get(n.output[0], [])]
    if len(after) == 1 and after[0].op_type == "MaxPool":
        p = after[0]
        k = list(_attr(p, "kernel_shape"))
        if (len(set(k)) != 1 or list(_attr(p, "strides", k)) != k or any(_attr(p, "pads", [0] * 4))
                or _attr(p, "ceil_mode", 0) or list(_attr(p, "dilations", [1, 1])) != [1, 1]):
            raise Int8NhwcError(f"{p.name}: only square, non-overlapping, unpadded floor-mode pools")
        pool, n = int(k[0]), p
    return n, ConvStage(w, bias.reshape(-1), pool)


def parse(model: Any, input_name: str, output_name: str) -> Chain:
    """Read the fp32 graph's main chain: input layout change, CT windows, conv stages, flatten, dense layers.

    Raises:
        Int8NhwcError: a node the rewrite does not prove equivalent.
    """
    g = _Graph(model)
    first = g.next(input_name, ("Reshape", "Transpose"))
    shape = [int(v) for v in (_attr(first, "perm") if first.op_type == "Transpose" else g.const(first.input[1]))]
    ins = [i for i in g.g.input if i.name == input_name][0].type.tensor_type.shape.dim
    channels = ins[3].dim_value if len(ins) == 4 else 0
    if not ((first.op_type == "Transpose" and shape == [0, 3, 1, 2])
            or (first.op_type == "Reshape" and channels == 1 and len(shape) == 4 and shape[1] == 1)):
        raise Int8NhwcError(f"the input enters through {first.op_type} {shape}, expected NHWC -> NCHW")
    node = g.next(first.output[0], ("Conv",))
    last, a, b = _window(g, node, first.output[0])
    chain = Chain(input_name, output_name, a, b)
    tensor = last.output[0]
    while True:
        node = g.next(tensor, ("Conv", "Transpose"), shape_users=("Shape",))
        if node.op_type == "Transpose":
            break
        last, stage = _conv(g, node)
        chain.convs.append(stage)
        tensor = last.output[0]
    if list(_attr(node, "perm")) != [0, 2, 3, 1]:
        raise Int8NhwcError(f"the flatten transposes with {list(_attr(node, 'perm'))}, expected [0, 2, 3, 1]")
    node = g.next(node.output[0], ("Reshape", "Flatten"))
    tensor = node.output[0]
    while True:
        node = g.next(tensor, ("MatMul", "Gemm"))
        if node.op_type == "Gemm" and (_attr(node, "transA", 0) or _attr(node, "alpha", 1.0) != 1.0
                                       or _attr(node, "beta", 1.0) != 1.0):
            raise Int8NhwcError(f"{node.name}: only plain Gemm (no transA, alpha = beta = 1)")
        w = g.const(node.input[1]).astype(np.float32)
        if node.op_type == "Gemm" and _attr(node, "transB", 0):
            w = w.T
        bias = (g.const(node.input[2]).astype(np.float32).reshape(-1) if len(node.input) > 2
                else np.zeros(w.shape[1], np.float32))
        users = g.users.get(node.output[0], [])
        nxt = users[0] if len(users) == 1 else None
        if nxt is not None and nxt.op_type == "Add":
            bias = bias + g.const(nxt.input[1]).astype(np.float32).reshape(-1)
            node, users = nxt, g.users.get(nxt.output[0], [])
            nxt = users[0] if len(users) == 1 else None
        act = ""
        if nxt is not None and nxt.op_type in ("Relu", "Sigmoid"):
            act, node = nxt.op_type.lower(), nxt
        chain.dense.append(DenseStage(w, np.broadcast_to(bias, (w.shape[1],)).astype(np.float32), act))
        if output_name in node.output:
            chain.last = node.name
            break
        tensor = node.output[0]
        if act != "relu":
            raise Int8NhwcError(f"a dense layer ends in {act or 'no activation'} before the output")
    if not chain.convs or not chain.dense:
        raise Int8NhwcError("no convolution stage or no dense layer found")
    return chain


