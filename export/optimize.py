"""Speed at export time: static int8 variants and the rewrites that make them fast (session profiles:
profiles.py).

Every variant is gated by its accuracy delta on the held-out set, not only by max diff (variants.py).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def static_int8(model_bytes: bytes, calibration: np.ndarray, input_name: str, *, per_channel: bool = True,
                exclude_ops: tuple[str, ...] = (), exclude_name_prefixes: tuple[str, ...] = (),
                extra_feeds: dict[str, np.ndarray] | None = None) -> bytes:
    """Static QDQ int8 (uint8 activations, int8 weights; per-channel) calibrated on training samples (``extra_feeds``:
    the graph's other inputs, the same for every calibration batch).

    Dynamic int8 is deliberately not offered for convolutions: measured 6–9× SLOWER on this CPU class.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(np.array_split(calibration, max(1, len(calibration) // 16)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self._it, None)
            return None if chunk is None else {input_name: chunk, **(extra_feeds or {})}

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model_bytes)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        nodes_to_exclude = _nodes_matching(pre, exclude_ops, exclude_name_prefixes)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=nodes_to_exclude,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return dst.read_bytes()


def _nodes_matching(path: Path, ops: tuple[str, ...], prefixes: tuple[str, ...]) -> list[str]:
    if not ops and not prefixes:
        return []
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node
            if n.name and (n.op_type in ops or any(n.name.startswith(p) for p in prefixes))]


def live_nodes(nodes: list[Any], outputs: set[str]) -> list[Any]:
    """The nodes (in their order) that ``outputs`` depend on: what is left after a rewrite, without dead ends."""
    needed = set(outputs)
    live = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(n.input)
    live.reverse()
    return live


@dataclass
class _Window:
    """The input windowing of a static-int8 graph: per channel ``clip(a * x + b, 0, 1)`` from ``source``, whose
    clipped end ``q_win`` quantises."""

    a: np.ndarray
    b: np.ndarray
    source: str
    q_win: Any


def _find_window(nodes: list[Any], inits: dict[str, Any], conv_fragment: str, clip_fragment: str) -> _Window:
    from onnx import numpy_helper

    by_out = {o: n for n in nodes for o in n.output}
    consumers = _consumers(nodes)

    def value(name: str) -> np.ndarray:
        node = by_out.get(name)
        if node is None:
            return numpy_helper.to_array(inits[name]).astype(np.float64)
        if node.op_type != "DequantizeLinear":
            raise ValueError(f"{name} is computed by {node.op_type}, expected a constant")
        q, s, z = (numpy_helper.to_array(inits[i]) for i in node.input[:3])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if s.ndim and q.ndim:
            shape[axis] = -1
        return (q.astype(np.float64) - z.reshape(shape if z.ndim else ())) * s.reshape(shape if s.ndim else ())

    conv = next((n for n in nodes if n.op_type == "Conv" and conv_fragment in n.name), None)
    q_win = next((n for n in nodes if n.op_type == "QuantizeLinear" and clip_fragment in n.input[0]
                  and getattr(by_out.get(n.input[0]), "op_type", "") == "Max"), None)  # quantizes the clip's end
    if conv is None or q_win is None:
        raise ValueError(f"no Conv '*{conv_fragment}*' / QuantizeLinear of '*{clip_fragment}*' in the int8 graph")
    a = value(conv.input[1])
    if a.shape[1:] != (1, 1, 1):
        raise ValueError(f"window conv weights have shape {a.shape}, expected (C, 1, 1, 1)")
    a = a.reshape(-1)
    b = value(conv.input[2]).reshape(-1) if len(conv.input) > 2 else np.zeros_like(a)
    chain: list[Any] = []
    tensor = conv.output[0]
    while tensor != q_win.input[0]:
        nxt = [n for n in consumers.get(tensor, []) if n.op_type != "DequantizeLinear" or n.input[0] == tensor]
        if len(nxt) != 1:
            raise ValueError(f"the window output {tensor} has {len(nxt)} consumers before quantisation; cannot fold")
        chain.append(nxt[0])
        tensor = nxt[0].output[0]
    ops = [n.op_type for n in chain]
    bounds = {n.op_type: float(value(n.input[1]).reshape(-1)[0]) for n in chain if n.op_type in ("Min", "Max")}
    # Relu (or the Q/DQ pair the quantizer put in its place) is subsumed by the final clip to [0, 1].
    if (set(ops) - {"Relu", "QuantizeLinear", "DequantizeLinear", "Min", "Max"} or bounds != {"Min": 1.0, "Max": 0.0}
            or np.any(a <= 0)):
        raise ValueError(f"window chain is {ops} with bounds {bounds}; expected a clip to [0, 1] and a > 0")
    dq_in = by_out[conv.input[0]]
    source = by_out[dq_in.input[0]].input[0] if dq_in.op_type == "DequantizeLinear" else conv.input[0]
    return _Window(a, b, source, q_win)


def _consumers(nodes: list[Any]) -> dict[str, list[Any]]:
    consumers: dict[str, list[Any]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return consumers


def fold_window_into_quantize(int8_bytes: bytes, conv_fragment: str, clip_fragment: str) -> bytes:
    """Rewrite a static-int8 graph whose input goes through ``clip(a_c * x + b_c, 0, 1)`` per channel (a 1×1 Conv
    from one channel, Relu, Min 1, Max 0 — e.g. CT windows on Hounsfield units) into the input quantizer itself:
    ``q_c = saturate(round(x / s_c) + z_c)`` with ``s_c = 1/(255 a_c)``, ``z_c = round(255 b_c)`` IS the uint8 code
    of the clipped window (one QuantizeLinear per channel, concatenated). The consumer DequantizeLinear is set to
    scale 1/255, zero point 0.

    Measured on the CNN: the window sub-graph took ~150 µs of ~700 µs per patch as a quantised 1×1 conv; folded
    it takes ~18 µs. The zero-point rounding shifts a window by at most 0.5/255 of its width; the variant's
    held-out gate decides whether that is acceptable.

    Raises:
        ValueError: the expected pattern is not in the graph (the variant is then refused, not shipped).
    """
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load_from_string(int8_bytes)
    g = m.graph
    nodes = list(g.node)
    win = _find_window(nodes, {i.name: i for i in g.initializer}, conv_fragment, clip_fragment)
    scales = (1.0 / (255.0 * win.a)).astype(np.float32)
    zero_points = np.clip(np.round(255.0 * win.b), 0, 255).astype(np.uint8)
    new_inits = [numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), "fold_win_dq_scale"),
                 numpy_helper.from_array(np.array(0, np.uint8), "fold_win_dq_zp")]
    # One per-tensor QuantizeLinear per window, then a uint8 Concat: the same codes as one per-channel quantizer of
    # the input repeated per channel, but fast after onnxruntime's channels-last rewrite, where a per-channel
    # quantizer on a whole CT slice took 15 ms (measured: 41 -> 26 ms for the int8 slice graph on 580x580 px).
    new_nodes = []
    for c in range(len(win.a)):
        new_inits += [numpy_helper.from_array(scales[c], f"fold_win_scale_{c}"),
                      numpy_helper.from_array(zero_points[c], f"fold_win_zp_{c}")]
        new_nodes.append(helper.make_node("QuantizeLinear", [win.source, f"fold_win_scale_{c}", f"fold_win_zp_{c}"],
                                          [f"fold_win_q{c}"], name=f"fold_win_quantize_{c}"))
    new_nodes.append(helper.make_node("Concat", [f"fold_win_q{c}" for c in range(len(win.a))], [win.q_win.output[0]],
                                      axis=1, name="fold_win_concat"))
    dqs = [n for n in _consumers(nodes)[win.q_win.output[0]] if n.op_type == "DequantizeLinear"]
    for d in dqs:
        d.input[1], d.input[2] = "fold_win_dq_scale", "fold_win_dq_zp"
    kept = [n for n in nodes if n is not win.q_win]
    at = kept.index(dqs[0])
    live = live_nodes(kept[:at] + new_nodes + kept[at:], {o.name for o in g.output})  # drop what is dead now
    del g.node[:]
    g.node.extend(live)
    used = {i for n in live for i in n.input}
    keep_inits = [i for i in g.initializer if i.name in used] + new_inits
    del g.initializer[:]
    g.initializer.extend(keep_inits)
    onnx.checker.check_model(m)
    return bytes(m.SerializeToString())
