"""A CNN's int8 variant written channels-last with the onnxruntime kernels that are fast on each CPU class.

Measured on an Intel Xeon with AMX (1 thread, batch 1, interleaved with LiteRT; see ``benchmarks/cnn_int8.py``),
the static QDQ int8 graph onnxruntime's quantizer writes loses to LiteRT's dynamic-range int8 for three reasons
this rewrite removes:

- the first convolution has 3 input channels; onnxruntime's symmetric int8 convolution (indirect, VNNI) needs a
  multiple of 4, so it fell back to a slow path: the window codes get a 4th, all-zero channel (``pad_channels``);
- the Dense(512) layer on the 12800-value flattened map reads 6.5 MB of int8 weights per patch: as
  ``com.microsoft.MatMulNBits`` (4-bit weights in blocks of 256, int8 compute with the activations quantized per
  row on the fly, ``accuracy_level`` 4) it reads half as much (``dense="nbits4"``);
- the score passed through a uint8 quantizer (256 levels of probability): the head (the last dense layer and the
  sigmoid) stays fp32.

Each convolution stage runs either as ``com.microsoft.QLinearConv`` with ``channels_last`` (onnxruntime's symmetric
kernel: AVX-512 VNNI / AVX2) or as a matrix product over patches (im2col with ``Slice`` + ``Concat`` on uint8,
then ``com.microsoft.MatMulIntegerToFloat``: onnxruntime's quantized GEMM, which runs on AMX where the CPU has it).
Activation scales are static (the largest value of each stage's output over the calibration samples, like
onnxruntime's MinMax calibrator) or per sample (``ReduceMax`` per sample: dynamic-range quantization that keeps a
patch's score independent of its batch mates; only with matrix-product stages).

:func:`build` with ``quantize=False`` writes the same chain in fp32: export checks it against the validated graph
before the int8 graph is gated on clinical metrics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cnn_chain import Chain, Int8NhwcError, parse

MS = "com.microsoft"
NBITS_BLOCK = 256  # measured: 10 µs faster than 128 on the CNN's Dense, the same held-out AUC


@dataclass(frozen=True)
class Plan:
    """How each part of the chain runs.

    Attributes:
        convs: per convolution stage, ``"qlinearconv"`` or ``"matmul"`` (a shorter tuple repeats its last entry).
        scales: ``"static"`` (calibrated) or ``"per_sample"`` (matrix-product stages only).
        dense: the first dense layer: ``"nbits4"`` (4-bit blocks, int8 compute), ``"int8"``
            (MatMulIntegerToFloat) or ``"fp32"``; the layers after it (the head) stay fp32.
        pad_channels: pad the first stage's input channels to a multiple of 4 (onnxruntime's symmetric kernel).
        block: the rows per 4-bit block of ``dense="nbits4"`` (a power of two, at least 16).
        row_taps: the first convolution's horizontal taps as input channels (a ``kh x 1`` kernel; QLinearConv).
    """

    convs: tuple[str, ...] = ("qlinearconv",)
    scales: str = "static"
    dense: str = "nbits4"
    pad_channels: bool = True
    block: int = NBITS_BLOCK
    row_taps: bool = False

    def conv(self, i: int) -> str:
        return self.convs[min(i, len(self.convs) - 1)]

    def check(self) -> None:
        bad = {c for c in self.convs} - {"qlinearconv", "matmul"}
        if bad or self.scales not in ("static", "per_sample") or self.dense not in ("nbits4", "int8", "fp32"):
            raise ValueError(f"unknown plan {self}")
        if self.block < 16 or self.block & (self.block - 1):
            raise ValueError(f"a 4-bit block of {self.block} rows: a power of two of at least 16")
        if self.scales == "per_sample" and "qlinearconv" in self.convs:
            raise ValueError("per-sample scales need matrix-product stages: QLinearConv takes a fixed output scale")

    @property
    def label(self) -> str:
        convs = "+".join(self.convs)
        dense = f"{self.dense}/{self.block}" if self.dense == "nbits4" else self.dense
        return (f"convs={convs} scales={self.scales} dense={dense}" + (" pad4" if self.pad_channels else "")
                + (" row-taps" if self.row_taps else ""))


def _quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output column of a (K, N) matrix: (int8 weights, float32 scales)."""
    scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def _nbits4(w: np.ndarray, block: int = NBITS_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """``MatMulNBits`` weights: 4-bit symmetric per block of ``block`` rows of each column (default zero point 8),
    as (packed uint8 [N, blocks, block/2], float32 scales [N * blocks])."""
    k, n = w.shape
    blocks = -(-k // block)
    padded = np.zeros((blocks * block, n), np.float32)
    padded[:k] = w
    wt = padded.T.reshape(n, blocks, block)
    scale = np.maximum(np.abs(wt).max(axis=2), 1e-12) / 7.0
    q = (np.clip(np.round(wt / scale[..., None]), -7, 7) + 8).astype(np.uint8)
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8), scale.astype(np.float32).reshape(-1)


class _Builder:
    """Nodes and constants of the rewritten chain (names prefixed ``cl_``)."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.taps: list[str] = []  # fp32: each stage's output before its quantizer (calibration reads them)
        self.n = 0

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        self.n += 1
        name = f"cl_c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op: str, inputs: list[str], outputs: int | list[str] = 1, domain: str = "", **attrs: Any) -> Any:
        from onnx import helper

        self.n += 1
        names = outputs if isinstance(outputs, list) else [f"cl_{op.lower()}_{self.n}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, name=f"cl_{op.lower()}_{self.n}", domain=domain or None,
                                           **attrs))
        return names[0] if len(names) == 1 else names

    def reduce_max(self, x: str, axes: list[int]) -> str:
        if self.opset >= 18:
            return self.op("ReduceMax", [x, self.const(axes, np.int64)], keepdims=0)
        return self.op("ReduceMax", [x], axes=axes, keepdims=0)


@dataclass
class _Act:
    """An activation on its way through the chain: float (``scale`` empty), or uint8 codes (zero point 0) with
    a constant scale or a per-sample (N,) scale tensor."""

    name: str
    height: int
    width: int
    channels: int
    scale: str = ""
    per_sample: bool = False
    static: float = 0.0  # the constant scale's value (QLinearConv's bias is in its units)


def _slices(b: _Builder, x: str, axis: int, count: int, size: int) -> list[str]:
    ax = b.const([axis], np.int64)
    return [b.op("Slice", [x, b.const([i], np.int64), b.const([i + size], np.int64), ax]) for i in range(count)]


def _patches(b: _Builder, x: _Act, kh: int, kw: int) -> tuple[str, int, int]:
    """im2col, channels-last: (N, H, W, C) -> (N, Ho, Wo, kh*kw*C), each row in (i, j, c) order. Built in two
    steps (the kw horizontal shifts, then the kh vertical shifts of that) for fewer, longer copies."""
    ho, wo = x.height - kh + 1, x.width - kw + 1
    row = b.op("Concat", _slices(b, x.name, 2, kw, wo), axis=3) if kw > 1 else x.name
    return (b.op("Concat", _slices(b, row, 1, kh, ho), axis=3) if kh > 1 else row), ho, wo


def _windows(b: _Builder, chain: Chain, x: str, hw: tuple[int, int], quantize: bool, pad_to: int,
             taps: int = 1) -> str:
    """The CT windows clip(a_c x + b_c, 0, 1) channels-last, (N, H, W - taps + 1, pad_to): as uint8 codes in steps
    of 1/255 (QuantizeLinear saturates: it IS the clip), with all-zero padding channels.

    With ``taps`` > 1, channel ``j * P + c`` (``P = pad_to / taps``) holds window ``c`` of the pixel ``j`` columns
    to the right: the first convolution's horizontal taps become input channels (its kernel becomes ``kh x 1``).
    Built channels-first in a handful of whole-tensor ops (the input expanded to one plane per channel, one
    per-channel shift, one per-channel QuantizeLinear whose padding channels have a scale no value reaches) and
    transposed once: measured faster than one op per window and a concatenation of one-byte channels. The input is
    viewed as (N, H, W) first: onnxruntime's elementwise Add on a tensor whose last dimension is 1 took ~95 µs for a
    100x100 patch, against ~6 µs without it (onnxruntime 1.32).
    """
    c = len(chain.window_scale)
    per_tap = pad_to // taps
    if pad_to % taps or per_tap < c:
        raise Int8NhwcError(f"{pad_to} channels do not hold {taps} taps of {c} windows")
    width = hw[1] - taps + 1
    flat = b.op("Reshape", [x, b.const([-1, 1, 1, *hw], np.int64)])  # (N, 1, 1, H, W)
    stacked = b.op("Concat", _slices(b, flat, 4, taps, width), axis=1) if taps > 1 else flat  # (N, T, 1, H, Wt)
    planes = b.op("Reshape", [b.op("Expand", [stacked, b.const([1, 1, per_tap, 1, 1], np.int64)]),
                              b.const([-1, pad_to, hw[0], width], np.int64)])  # (N, T * P, H, Wt)
    a = np.ones(per_tap)
    a[:c] = chain.window_scale
    off = np.zeros(per_tap)
    off[:c] = chain.window_offset
    if quantize:  # round(255 (a x + b)) = round((x + b/a) / (1 / (255 a))): the shift keeps it exact
        scale = np.where(np.arange(per_tap) < c, 1.0 / (255.0 * a), 3e38)  # a padding channel's codes are all 0
        shifted = b.op("Add", [planes, b.const(np.tile(off / a, taps).reshape(-1, 1, 1))])
        out = b.op("QuantizeLinear", [shifted, b.const(np.tile(scale, taps)), b.const(np.zeros(pad_to), np.uint8)],
                   axis=1)
    else:
        out = b.op("Clip", [b.op("Add", [b.op("Mul", [planes, b.const(np.tile(a, taps).reshape(-1, 1, 1))]),
                                         b.const(np.tile(off, taps).reshape(-1, 1, 1))]), b.const(0.0), b.const(1.0)])
    return b.op("Transpose", [out], perm=[0, 2, 3, 1])


def _row_taps_weight(weight: np.ndarray, channels: int) -> np.ndarray:
    """(Cout, C, kh, kw) -> (Cout, channels, kh, 1): tap ``j`` of channel ``c`` moved to channel ``j * P + c``,
    ``P = channels / kw`` (the padding channels meet zero weights)."""
    cout, c, kh, kw = weight.shape
    per_tap = channels // kw
    out = np.zeros((cout, channels, kh, 1), np.float32)
    for j in range(kw):
        out[:, j * per_tap:j * per_tap + c, :, 0] = weight[:, :, :, j]
    return out


def _quantizer(b: _Builder, y: str, plan: Plan, static: float | None, rank: int) -> tuple[str, str, float]:
    """uint8 codes (zero point 0: negative values saturate to 0, so the stage's ReLU is the quantizer itself)."""
    if plan.scales == "static":
        assert static is not None
        s = b.const(static)
        return b.op("QuantizeLinear", [y, s, b.const(0, np.uint8)]), s, static
    peak = b.reduce_max(y, list(range(1, rank)))  # (N,)
    scale = b.op("Max", [b.op("Mul", [peak, b.const(1.0 / 255.0)]), b.const(np.finfo(np.float32).tiny)])
    return b.op("QuantizeLinear", [y, scale], axis=0), scale, 0.0


def _int_matmul(b: _Builder, x: _Act, w: np.ndarray, bias: np.ndarray, rank: int) -> str:
    """x (uint8 codes) @ w with per-channel int8 weights: float out, the bias added."""
    wq, ws = _quantize_weight(w)
    zero = b.const(0, np.uint8)
    if not x.per_sample:  # one scale for the whole tensor: rescale and bias fused into the product
        return b.op("MatMulIntegerToFloat", [x.name, b.const(wq, np.int8), x.scale, b.const(ws), zero, "",
                                             b.const(bias)], domain=MS)
    acc = b.op("MatMulIntegerToFloat", [x.name, b.const(wq, np.int8), b.const(1.0), b.const(ws), zero], domain=MS)
    per_row = b.op("Reshape", [x.scale, b.const([-1] + [1] * (rank - 1), np.int64)])
    return b.op("Add", [b.op("Mul", [acc, per_row]), b.const(bias)])


def _qlinear_conv(b: _Builder, x: _Act, weight: np.ndarray, bias: np.ndarray, out_scale: float) -> str:
    """``com.microsoft.QLinearConv`` channels-last, symmetric per-channel int8 weights, uint8 out (ReLU by
    saturation at zero point 0)."""
    cout, cin = weight.shape[:2]
    if x.channels > cin:  # padded input channels meet zero weights
        weight = np.concatenate([weight, np.zeros((cout, x.channels - cin, *weight.shape[2:]), np.float32)], axis=1)
    flat = weight.reshape(cout, -1).T
    wq, ws = _quantize_weight(flat)
    wq = wq.T.reshape(weight.shape)
    qbias = np.round(bias / (x.static * ws)).astype(np.int32)
    return b.op("QLinearConv", [x.name, x.scale, b.const(0, np.uint8), b.const(wq, np.int8), b.const(ws),
                                b.const(np.zeros(cout, np.int8), np.int8), b.const(out_scale), b.const(0, np.uint8),
                                b.const(qbias, np.int32)], domain=MS, channels_last=1)


def _float_pool(b: _Builder, y: str, k: int) -> str:
    nchw = b.op("Transpose", [y], perm=[0, 3, 1, 2])
    return b.op("Transpose", [b.op("MaxPool", [nchw], kernel_shape=[k, k], strides=[k, k])], perm=[0, 2, 3, 1])


def _emit(b: _Builder, chain: Chain, hw: tuple[int, int], plan: Plan, scales: list[float] | None) -> None:
    quantize = scales is not None
    channels = len(chain.window_scale)
    ql_first = quantize and plan.conv(0) == "qlinearconv"
    taps = chain.convs[0].weight.shape[3] if ql_first and plan.row_taps else 1
    per_tap = channels
    while ql_first and plan.pad_channels and (per_tap * taps) % 4:  # the symmetric kernel wants multiples of 4
        per_tap += 1
    pad_to = per_tap * taps
    x = _Act(_windows(b, chain, chain.input, hw, quantize, pad_to, taps), hw[0], hw[1] - taps + 1, pad_to,
             b.const(1.0 / 255.0) if quantize else "", static=1.0 / 255.0)
    for i, stage in enumerate(chain.convs):
        cout, cin, kh, kw = stage.weight.shape
        if cin != channels:
            raise Int8NhwcError(f"a convolution takes {cin} channels, its input has {channels}")
        ho, wo = x.height - kh + 1, x.width - kw + 1
        if i == 0 and taps > 1:  # the horizontal taps are channels now
            stage = dataclasses.replace(stage, weight=_row_taps_weight(stage.weight, x.channels))
            wo = x.width
        if not quantize:
            patches, _, _ = _patches(b, x, kh, kw)
            w = stage.weight.transpose(2, 3, 1, 0).reshape(kh * kw * cin, cout)
            y = b.op("Add", [b.op("MatMul", [patches, b.const(w)]), b.const(stage.bias)])
            b.taps.append(y)
            y = b.op("Relu", [y])
            x = _Act(_float_pool(b, y, stage.pool) if stage.pool else y, ho, wo, cout)
        else:
            static = scales[i] if plan.scales == "static" else None
            if plan.conv(i) == "qlinearconv":
                assert static is not None
                q, s = _qlinear_conv(b, x, stage.weight, stage.bias, static), b.const(static)
            else:
                if x.channels != cin:
                    raise Int8NhwcError("padded channels feed a matrix-product stage")
                patches, _, _ = _patches(b, x, kh, kw)
                w = stage.weight.transpose(2, 3, 1, 0).reshape(kh * kw * cin, cout)
                y = _int_matmul(b, _Act(patches, ho, wo, kh * kw * cin, x.scale, x.per_sample), w, stage.bias, 4)
                q, s, static = _quantizer(b, y, plan, static, 4)
            if stage.pool:  # max commutes with a monotone quantizer: pool the uint8 codes
                q = b.op("NhwcMaxPool", [q], domain=MS, kernel_shape=[stage.pool] * 2, strides=[stage.pool] * 2)
            x = _Act(q, ho, wo, cout, s, plan.scales == "per_sample", static or 0.0)
        channels = cout
        if stage.pool:
            x.height, x.width = x.height // stage.pool, x.width // stage.pool
    _dense(b, chain, x, plan, quantize)


def _dense(b: _Builder, chain: Chain, x: _Act, plan: Plan, quantize: bool) -> None:
    k = x.height * x.width * x.channels
    flat = b.op("Reshape", [x.name, b.const([-1, k], np.int64)])  # channels-last: Keras' Flatten order
    for i, layer in enumerate(chain.dense):
        if layer.weight.shape[0] != k:
            raise Int8NhwcError(f"a dense layer takes {layer.weight.shape[0]} inputs, it gets {k}")
        mode = plan.dense if (i == 0 and quantize) else "fp32"
        if i == 0 and quantize and mode != "int8":  # the uint8 codes back to float
            flat = b.op("DequantizeLinear", [flat, x.scale, *([] if x.per_sample else [b.const(0, np.uint8)])],
                        **({"axis": 0} if x.per_sample else {}))
        if mode == "int8":
            y = _int_matmul(b, _Act(flat, 1, 1, k, x.scale, x.per_sample), layer.weight, layer.bias, 2)
        elif mode == "nbits4":
            blob, sc = _nbits4(layer.weight, plan.block)
            kk, nn = layer.weight.shape
            y = b.op("Add", [b.op("MatMulNBits", [flat, b.const(blob, np.uint8), b.const(sc)], domain=MS, K=kk, N=nn,
                                  bits=4, block_size=plan.block, accuracy_level=4), b.const(layer.bias)])
        else:
            y = b.op("Add", [b.op("MatMul", [flat, b.const(layer.weight)]), b.const(layer.bias)])
        last = i == len(chain.dense) - 1
        if layer.activation:
            y = b.op(layer.activation.capitalize(), [y], [chain.output] if last else 1)
        elif last:
            y = b.op("Identity", [y], [chain.output])
        flat, k = y, layer.weight.shape[1]


def _graph(model_bytes: bytes, input_name: str, output_name: str, plan: Plan,
           scales: list[float] | None) -> tuple[Any, _Builder]:
    import onnx
    from onnx import helper

    model = onnx.load_from_string(model_bytes)
    chain = parse(model, input_name, output_name)
    dims = [d.dim_value for d in next(i for i in model.graph.input if i.name == input_name).type.tensor_type.shape.dim]
    if len(dims) != 4 or not dims[1] or not dims[2] or dims[3] != 1:
        raise Int8NhwcError(f"the input {input_name!r} has shape {dims}, expected (N, H, W, 1) with fixed H, W")
    b = _Builder(next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17))
    _emit(b, chain, (dims[1], dims[2]), plan, scales)
    g = model.graph
    nodes = [n for n in g.node if n.name != chain.last] + b.nodes
    needed = {o.name for o in g.output} | set(b.taps)
    live = []
    for n in reversed(nodes):  # drop what no output depends on any more (the fp32 chain)
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(n.input)
    live.reverse()
    del g.node[:]
    g.node.extend(live)
    inits = [i for i in g.initializer if i.name in needed] + [i for i in b.inits if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    if scales is not None and not any(o.domain == MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS, 1))
    return model, b


def calibrate(model_bytes: bytes, input_name: str, output_name: str, samples: np.ndarray,
              batch: int = 32) -> list[float]:
    """Each convolution stage's static output scale: its largest output over ``samples`` / 255 (MinMax)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    model, b = _graph(model_bytes, input_name, output_name, Plan(), None)
    for tap in b.taps:
        model.graph.output.append(helper.make_tensor_value_info(tap, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    peaks = np.zeros(len(b.taps))
    for i in range(0, len(samples), batch):
        outs = session.run(b.taps, {input_name: np.asarray(samples[i:i + batch], np.float32)})
        peaks = np.maximum(peaks, [float(np.max(o)) for o in outs])
    return [max(p, 1e-12) / 255.0 for p in peaks]


def build(model_bytes: bytes, input_name: str, output_name: str, plan: Plan | None = None, *,
          calibration: np.ndarray | None = None, quantize: bool = True) -> bytes:
    """The rewritten graph (every other output, e.g. the domain guard's, kept as it was).

    Args:
        model_bytes: the validated fp32 graph.
        input_name: its image input, channels-last (N, H, W, 1), in the CT windows' units.
        output_name: the score output the chain computes.
        plan: how each part runs (default: :class:`Plan`'s defaults).
        calibration: training samples for the static scales (needed unless ``plan.scales`` is per sample).
        quantize: False gives the same chain in fp32 (export's equivalence check).

    Raises:
        Int8NhwcError: the graph is not a chain :mod:`.cnn_chain` proves it re-expresses.
        ValueError: an unknown plan, or static scales without calibration samples.
    """
    import onnx

    plan = plan or Plan()
    plan.check()
    scales: list[float] | None = None
    if quantize:
        if plan.scales == "static":
            if calibration is None or not len(calibration):
                raise ValueError("static activation scales need calibration samples")
            scales = calibrate(model_bytes, input_name, output_name, calibration)
        else:
            scales = []
    model, _ = _graph(model_bytes, input_name, output_name, plan, scales)
    onnx.checker.check_model(model)
    return model.SerializeToString()
