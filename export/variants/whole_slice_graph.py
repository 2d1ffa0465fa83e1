"""A patch classifier rewritten as the fully convolutional graph it is: a whole image in one pass.

The seed CNN is valid convolutions and pools (total stride 8) then a Dense layer on the flattened final map and
dense layers after it. Over a whole image the convolution stages run once; the first Dense layer applied to every
window of the final map is a convolution with the Dense weights as its kernel, at a stride of ``k`` cells; the
layers after it act per window. For window offsets that are multiples of the trunk's stride (8 px per cell) this
gives the very numbers patch-by-patch inference gives, for a fraction of the arithmetic (overlapping windows share
their convolutions).

:func:`fcn_graph` does this on the exported, parity-gated ONNX graph (no framework needed):

- the input ``(N, P, P, C)`` becomes ``(N, H, W, C)`` with free ``H, W``, plus ``stride_cells`` (int64, shape (1,)):
  windows are taken every ``stride_cells`` cells of the final map, i.e. every ``8 * stride_cells`` pixels;
- the flatten + first Dense becomes: for each of the ``h x w`` kernel positions a strided ``Slice`` of the final map
  (``Concat``-enated in the flatten's own order), then the unchanged ``MatMul`` with the Dense weights: one row per
  window, so the layers after it (bias, ReLU, the last Dense, the sigmoid) are the patch graph's own nodes;
- the score output holds one row per window, in row-major window order, and a ``centres`` output (int64, (K, 2))
  gives each window's centre (row, col) in input pixels: ``cell * k * (i, j) + P // 2``.

Anything that would break the equivalence (padding, dilation, ceil-mode pooling, a constant with a spatial extent,
an operator that mixes positions) is refused with :class:`FcnError`, and the export then ships no slice variant.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from medinfer.windows import CENTRES_OUTPUT, STRIDE_INPUT

from ..optimize import live_nodes

# Per-window operators: they act on each position (and channel) alone, so they commute with taking windows.
_POINTWISE = {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "Identity", "Elu", "Selu", "HardSigmoid", "Softplus",
              "BatchNormalization", "Neg", "Abs", "Exp", "Log", "Sqrt"}
_BINARY = {"Add", "Sub", "Mul", "Div", "Min", "Max"}
_POOLS = {"MaxPool", "AveragePool"}


class FcnError(ValueError):
    """The graph is not (provably) a convolutional trunk + dense head, so no whole-image graph is made."""


@dataclass(frozen=True)
class Geometry:
    """How windows sit on the input: ``patch`` px windows, one final-map cell = ``cell`` px, the Dense kernel
    covers ``kernel`` cells, and a window's centre is ``offset`` px from its top-left corner."""

    patch: int
    cell: int
    kernel: tuple[int, int]
    offset: int

    def stride_cells(self, stride_px: int) -> int:
        """The ``stride_cells`` input for a window stride in pixels.

        Raises:
            FcnError: the stride is not a positive multiple of :attr:`cell` (windows there would not share the
                trunk's grid, so one pass cannot give their numbers).
        """
        if stride_px < self.cell or stride_px % self.cell:
            raise FcnError(f"a window stride of {stride_px} px is not a multiple of the {self.cell} px cell of the "
                           f"convolution stages: one pass gives windows every {self.cell}, {2 * self.cell}, "
                           f"{3 * self.cell}, ... px only")
        return stride_px // self.cell


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _dims(value_info: Any) -> tuple[Any, ...]:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim)


def _const(inits: dict[str, Any], name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    return numpy_helper.to_array(inits[name]) if name in inits else None


def _check_trunk(nodes: list[Any], inits: dict[str, Any]) -> int:
    """Refuse what would break window equivalence; return the trunk's total stride (px per final-map cell)."""
    stride = 1
    for n in nodes:
        op, where = n.op_type, f"{n.op_type} '{n.name}'"
        if op in ("Conv", *_POOLS):
            pads = list(_attr(n, "pads", []) or [])
            if any(pads) or (_attr(n, "auto_pad", b"NOTSET") or b"NOTSET") not in (b"NOTSET", b"VALID"):
                raise FcnError(f"{where} pads its input: windows near each other would see different borders")
            if any(d != 1 for d in (_attr(n, "dilations", []) or [])) or _attr(n, "ceil_mode", 0):
                raise FcnError(f"{where} is dilated or uses ceil mode")
            strides = list(_attr(n, "strides", [1, 1]) or [1, 1])
            if len(set(strides)) != 1:
                raise FcnError(f"{where} has unequal strides {strides}")
            stride *= int(strides[0])
        elif op in _BINARY:
            consts = [_const(inits, i) for i in n.input]
            if not any(c is not None for c in consts):
                continue  # two computed maps of the same shape, position by position
            for c in consts:
                if c is not None and c.size > 1 and not (c.ndim >= 3 and c.shape[-2:] == (1, 1)):
                    raise FcnError(f"{where} adds a constant of shape {c.shape} that varies over positions")
        elif op not in _POINTWISE:
            raise FcnError(f"{where} is not a convolution, pooling or pointwise operator: a whole-image pass "
                           "cannot be proved equal to patch-by-patch inference")
    return stride


def _keep_only_path_to(graph: Any, output: str) -> None:
    """Drop every node, initializer and output that ``output`` does not depend on (in place)."""
    producer = {o: n for n in graph.node for o in n.output}
    needed: set[str] = set()
    stack = [output]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None:
            stack.extend(i for i in node.input if i)
    keep = [n for n in graph.node if any(o in needed for o in n.output)]
    inits = [i for i in graph.initializer if i.name in needed]
    outputs = [o for o in graph.output if o.name == output]
    for field, items in ((graph.node, keep), (graph.initializer, inits), (graph.output, outputs)):
        del field[:]
        field.extend(items)


@dataclass
class _Patch:
    """The patch graph as the rewrite reads it: nodes, constants, inferred shapes, who makes and who reads what."""

    model: Any
    inits: dict[str, Any]
    shapes: dict[str, tuple[Any, ...]]
    nodes: list[Any]
    producer: dict[str, Any]
    consumers: dict[str, list[Any]]

    @staticmethod
    def read(model_bytes: bytes, score_output: str) -> _Patch:
        import onnx
        from onnx import shape_inference

        m = onnx.load_from_string(model_bytes)
        _keep_only_path_to(m.graph, score_output)  # other outputs (e.g. the domain guard) are not rewritten
        inferred = shape_inference.infer_shapes(m)
        shapes = {v.name: _dims(v) for v in [*inferred.graph.value_info, *inferred.graph.input,
                                              *inferred.graph.output]}
        nodes = list(m.graph.node)
        consumers: dict[str, list[Any]] = defaultdict(list)
        for n in nodes:
            for i in n.input:
                consumers[i].append(n)
        return _Patch(m, {i.name: i for i in m.graph.initializer}, shapes, nodes,
                      {o: n for n in nodes for o in n.output}, consumers)


@dataclass
class _Dense:
    """The flatten of the final feature map into the first Dense layer, and that map."""

    flat: Any
    dense: Any
    weights: np.ndarray
    trunk_out: str  # the final feature map, channels first
    nhwc: str  # the same map channels last (made by the head when the flatten read channels first)
    permute: bool
    chw: tuple[int, int, int]


def _entry(patch: _Patch, input_name: str) -> tuple[Any, int, int]:
    """The input's one layout change to channels first (a Reshape that tf2onnx writes for C == 1 becomes a
    Transpose): (that node, the patch size, the channels)."""
    from onnx import helper

    graph_input = next((i for i in patch.model.graph.input if i.name == input_name), None)
    dims = _dims(graph_input) if graph_input is not None else ()
    if len(dims) != 4 or not isinstance(dims[1], int) or dims[1] != dims[2] or not isinstance(dims[3], int):
        raise FcnError(f"input {input_name!r} has shape {dims}; expected (N, P, P, C) square patches, channels last")
    size, channels = int(dims[1]), int(dims[3])
    entry = patch.consumers[input_name]
    if len(entry) != 1:
        raise FcnError(f"input {input_name!r} feeds {len(entry)} nodes; expected one layout change")
    first = entry[0]
    shape_const = _const(patch.inits, first.input[1]) if first.op_type == "Reshape" and len(first.input) > 1 else None
    if first.op_type == "Transpose" and list(_attr(first, "perm", [])) == [0, 3, 1, 2]:
        return first, size, channels
    if shape_const is not None and channels == 1 and list(shape_const[1:]) == [1, size, size]:
        patch.nodes[patch.nodes.index(first)] = helper.make_node(
            "Transpose", [input_name], [first.output[0]], perm=[0, 3, 1, 2], name=first.name or "fcn/to_nchw")
        return first, size, channels
    raise FcnError(f"input {input_name!r} goes into {first.op_type}; expected a channels-first Transpose")


def _first_dense(patch: _Patch) -> _Dense:
    from onnx import numpy_helper

    flat = None
    for n in patch.nodes:
        if n.op_type in ("Reshape", "Flatten") and len(patch.shapes.get(n.input[0], ())) == 4:
            users = patch.consumers[n.output[0]]
            if len(users) == 1 and users[0].op_type == "MatMul" and users[0].input[1] in patch.inits:
                flat = n
    if flat is None:
        raise FcnError("no flatten of the final feature map into a MatMul with constant weights (the first Dense)")
    dense = patch.consumers[flat.output[0]][0]
    weights = numpy_helper.to_array(patch.inits[dense.input[1]])
    before = patch.producer.get(flat.input[0])
    if before is not None and before.op_type == "Transpose" and list(_attr(before, "perm", [])) == [0, 2, 3, 1]:
        trunk_out, nhwc, permute = before.input[0], flat.input[0], False  # the flatten reads channels last
    else:
        trunk_out, nhwc, permute = flat.input[0], "fcn/final_map_nhwc", True  # channels first: reorder the rows
    trunk_shape = patch.shapes.get(trunk_out, ())
    if len(trunk_shape) != 4 or not all(isinstance(d, int) for d in trunk_shape[1:]):
        raise FcnError(f"the final feature map has shape {trunk_shape}; expected (N, C, h, w)")
    c, h, w = (int(d) for d in trunk_shape[1:])
    if weights.ndim != 2 or weights.shape[0] != c * h * w:
        raise FcnError(f"the first Dense has weights {weights.shape}; expected ({c * h * w}, D)")
    return _Dense(flat, dense, weights, trunk_out, nhwc, permute, (c, h, w))


def _trunk_cell(patch: _Patch, first: Any, trunk_out: str) -> int:
    """The checked stride (px per final-map cell) of the nodes between the entry and the final map."""
    ancestors: set[int] = set()
    stack = [trunk_out]
    while stack:
        node = patch.producer.get(stack.pop())
        if node is None or node is first or id(node) in ancestors:
            continue
        ancestors.add(id(node))
        stack.extend(node.input)
    return _check_trunk([n for n in patch.nodes if id(n) in ancestors], patch.inits)


def _window_rows(d: _Dense, cell: int, size: int) -> tuple[list[Any], list[Any]]:
    """The head that makes one row per window of the final map (what the first Dense then reads): (nodes,
    constants); the Dense's weights are reordered when the flatten read channels first."""
    from onnx import helper, numpy_helper

    c, h, w = d.chw
    consts = [numpy_helper.from_array(a, name) for name, a in (
        ("fcn/kernel", np.array([h, w], np.int64)), ("fcn/hw_idx", np.array([1, 2], np.int64)),
        ("fcn/axes", np.array([1, 2], np.int64)), ("fcn/zero", np.array(0, np.int64)),
        ("fcn/zero2", np.zeros(2, np.int64)), ("fcn/one", np.array(1, np.int64)),
        ("fcn/one2", np.ones(2, np.int64)), ("fcn/cell", np.array(cell, np.int64)),
        ("fcn/offset", np.array(size // 2, np.int64)), ("fcn/rows", np.array([-1, c * h * w], np.int64)),
        ("fcn/pairs", np.array([-1, 2], np.int64)), ("fcn/ax0", np.array([0], np.int64)),
        ("fcn/ax1", np.array([1], np.int64)), ("fcn/ax2", np.array([2], np.int64)))]
    head = [] if not d.permute else [helper.make_node("Transpose", [d.trunk_out], [d.nhwc], perm=[0, 2, 3, 1],
                                                      name="fcn/to_nhwc")]
    head += [
        helper.make_node("Concat", [STRIDE_INPUT, STRIDE_INPUT], ["fcn/k2"], axis=0, name="fcn/k2"),
        helper.make_node("Shape", [d.nhwc], ["fcn/shape"], name="fcn/shape"),
        helper.make_node("Gather", ["fcn/shape", "fcn/hw_idx"], ["fcn/hw"], axis=0, name="fcn/hw"),
        helper.make_node("Sub", ["fcn/hw", "fcn/kernel"], ["fcn/room"], name="fcn/room"),
        helper.make_node("Add", ["fcn/room", "fcn/k2"], ["fcn/room_k"], name="fcn/room_k"),
        helper.make_node("Div", ["fcn/room_k", "fcn/k2"], ["fcn/count0"], name="fcn/count0"),
        helper.make_node("Max", ["fcn/count0", "fcn/zero2"], ["fcn/count"], name="fcn/count"),  # windows per axis
        helper.make_node("Sub", ["fcn/count", "fcn/one2"], ["fcn/count_1"], name="fcn/count_1"),
        helper.make_node("Mul", ["fcn/count_1", "fcn/k2"], ["fcn/span0"], name="fcn/span0"),
        helper.make_node("Add", ["fcn/span0", "fcn/one2"], ["fcn/span1"], name="fcn/span1"),
        helper.make_node("Max", ["fcn/span1", "fcn/zero2"], ["fcn/span"], name="fcn/span"),  # never a negative end
    ]
    pieces = []
    for dy in range(h):
        for dx in range(w):
            start = f"fcn/start_{dy}_{dx}"
            consts.append(numpy_helper.from_array(np.array([dy, dx], np.int64), start))
            head += [helper.make_node("Add", ["fcn/span", start], [f"fcn/end_{dy}_{dx}"], name=f"fcn/end_{dy}_{dx}"),
                     helper.make_node("Slice", [d.nhwc, start, f"fcn/end_{dy}_{dx}", "fcn/axes", "fcn/k2"],
                                      [f"fcn/win_{dy}_{dx}"], name=f"fcn/win_{dy}_{dx}")]
            pieces.append(f"fcn/win_{dy}_{dx}")
    head += [helper.make_node("Concat", pieces, ["fcn/windows"], axis=3, name="fcn/windows"),
             helper.make_node("Reshape", ["fcn/windows", "fcn/rows"], ["fcn/window_rows"], name="fcn/window_rows")]
    if d.permute:  # the flatten read (c, h, w); the slices give (h, w, c)
        weights = d.weights.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
        consts.append(numpy_helper.from_array(np.ascontiguousarray(weights), "fcn/dense_weights"))
        d.dense.input[1] = "fcn/dense_weights"
    d.dense.input[0] = "fcn/window_rows"
    return head, consts


def _centres() -> list[Any]:
    """The ``centres`` output: cell * k * (i, j) + P // 2, row-major like the score rows."""
    from onnx import helper

    return [
        helper.make_node("Gather", [STRIDE_INPUT, "fcn/zero"], ["fcn/k"], axis=0, name="fcn/k"),
        helper.make_node("Mul", ["fcn/k", "fcn/cell"], ["fcn/step"], name="fcn/step"),
        helper.make_node("Gather", ["fcn/count", "fcn/zero"], ["fcn/n_rows"], axis=0, name="fcn/n_rows"),
        helper.make_node("Gather", ["fcn/count", "fcn/one"], ["fcn/n_cols"], axis=0, name="fcn/n_cols"),
        helper.make_node("Range", ["fcn/zero", "fcn/n_rows", "fcn/one"], ["fcn/i"], name="fcn/i"),
        helper.make_node("Range", ["fcn/zero", "fcn/n_cols", "fcn/one"], ["fcn/j"], name="fcn/j"),
        helper.make_node("Mul", ["fcn/i", "fcn/step"], ["fcn/i_px"], name="fcn/i_px"),
        helper.make_node("Mul", ["fcn/j", "fcn/step"], ["fcn/j_px"], name="fcn/j_px"),
        helper.make_node("Add", ["fcn/i_px", "fcn/offset"], ["fcn/r"], name="fcn/r"),
        helper.make_node("Add", ["fcn/j_px", "fcn/offset"], ["fcn/c"], name="fcn/c"),
        helper.make_node("Unsqueeze", ["fcn/r", "fcn/ax1"], ["fcn/r2"], name="fcn/r2"),
        helper.make_node("Unsqueeze", ["fcn/c", "fcn/ax0"], ["fcn/c2"], name="fcn/c2"),
        helper.make_node("Expand", ["fcn/r2", "fcn/count"], ["fcn/rr"], name="fcn/rr"),
        helper.make_node("Expand", ["fcn/c2", "fcn/count"], ["fcn/cc"], name="fcn/cc"),
        helper.make_node("Unsqueeze", ["fcn/rr", "fcn/ax2"], ["fcn/rr3"], name="fcn/rr3"),
        helper.make_node("Unsqueeze", ["fcn/cc", "fcn/ax2"], ["fcn/cc3"], name="fcn/cc3"),
        helper.make_node("Concat", ["fcn/rr3", "fcn/cc3"], ["fcn/grid"], axis=2, name="fcn/grid"),
        helper.make_node("Reshape", ["fcn/grid", "fcn/pairs"], [CENTRES_OUTPUT], name="fcn/centres"),
    ]


def fcn_graph(model_bytes: bytes, *, input_name: str, score_output: str,
              metadata: dict[str, str] | None = None) -> tuple[bytes, Geometry]:
    """The whole-image graph of a patch classifier (see the module docstring); ``metadata`` is added to the patch
    graph's own ``metadata_props``.

    Returns:
        (graph bytes, window geometry).

    Raises:
        FcnError: the graph does not have the form (or the operators) that make the rewrite exact.
    """
    patch = _Patch.read(model_bytes, score_output)
    first, size, channels = _entry(patch, input_name)
    dense = _first_dense(patch)
    cell = _trunk_cell(patch, first, dense.trunk_out)
    head, consts = _window_rows(dense, cell, size)
    head += _centres()
    # entry + trunk + head + the patch graph's nodes after the first Dense, then drop what is dead
    at = patch.nodes.index(dense.dense)
    ordered = [n for n in patch.nodes[:at] if n is not dense.flat] + head + patch.nodes[at:]
    data = _assemble(patch, ordered, consts, input_name, score_output, channels, metadata)
    return data, Geometry(patch=size, cell=cell, kernel=dense.chw[1:], offset=size // 2)


def _assemble(patch: _Patch, ordered: list[Any], consts: list[Any], input_name: str, score_output: str,
              channels: int, metadata: dict[str, str] | None) -> bytes:
    """The live nodes of ``ordered`` as a checked model with the whole-image inputs and outputs."""
    import onnx
    from onnx import TensorProto, helper

    m, g = patch.model, patch.model.graph
    live = live_nodes(ordered, {score_output, CENTRES_OUTPUT})
    used = {i for n in live for i in n.input}
    graph_input = next(i for i in g.input if i.name == input_name)
    graph = helper.make_graph(
        live, f"{g.name}_slice",
        [helper.make_tensor_value_info(input_name, graph_input.type.tensor_type.elem_type, ["N", "H", "W", channels]),
         helper.make_tensor_value_info(STRIDE_INPUT, TensorProto.INT64, [1])],
        [helper.make_tensor_value_info(score_output, TensorProto.FLOAT, ["K", 1]),
         helper.make_tensor_value_info(CENTRES_OUTPUT, TensorProto.INT64, ["K", 2])],
        initializer=[i for i in g.initializer if i.name in used] + [i for i in consts if i.name in used])
    out = helper.make_model(graph, opset_imports=list(m.opset_import), producer_name=m.producer_name,
                            producer_version=m.producer_version, doc_string=m.doc_string)
    out.ir_version = m.ir_version
    for key, value in {**{p.key: p.value for p in m.metadata_props}, **(metadata or {})}.items():
        entry_prop = out.metadata_props.add()
        entry_prop.key, entry_prop.value = key, value
    onnx.checker.check_model(out)
    return bytes(out.SerializeToString())
