"""The Open Inference Protocol (KServe v2 / Triton HTTP) tensor codec for ``medinfer serve`` (numpy only).

Requests and responses are JSON, optionally followed by raw tensor bytes (Triton's binary tensor data
extension, which ``tritonclient.http`` uses by default): the header ``Inference-Header-Content-Length`` gives the
length of the JSON part, and each binary tensor says its byte count in ``parameters.binary_data_size``. BYTES
tensors in binary form are 4-byte little-endian length-prefixed items.

A malformed request raises :class:`RequestError` (an :class:`~medinfer.InputError`, so HTTP 400); whether the
decoded tensors suit the model is decided by the model's own validator, exactly as for ``Model.predict``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MedinferError, RequestError
from ..manifest import Manifest
from ..model import Model
from ..prediction import Prediction

HEADER_LENGTH = "inference-header-content-length"

# manifest dtype -> protocol datatype
DATATYPES = {
    "float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32", "int16": "INT16",
    "int8": "INT8", "uint8": "UINT8", "bool": "BOOL", "string": "BYTES",
}
# protocol datatype -> little-endian numpy dtype (BYTES handled apart)
NUMPY = {
    "FP32": "<f4", "FP64": "<f8", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4", "INT16": "<i2", "INT8": "i1",
    "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2", "UINT8": "u1", "BOOL": "?",
}

_BY_DTYPE = {np.dtype(v).newbyteorder("="): k for k, v in NUMPY.items()}



@dataclass(frozen=True)
class TensorMeta:
    """Name, protocol datatype and shape (-1 for any size) of one tensor in model metadata."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def datatype_of(array: np.ndarray) -> str:
    """The protocol datatype of a numpy array (object / unicode / bytes arrays are BYTES)."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    name = _BY_DTYPE.get(array.dtype.newbyteorder("="))
    if name is None:
        raise MedinferError(f"no protocol datatype for numpy dtype {array.dtype}")
    return name


def input_metadata(manifest: Manifest) -> list[TensorMeta]:
    """The model's inputs as protocol metadata (symbolic dims such as N or T become -1)."""
    return [TensorMeta(t.name, DATATYPES[t.dtype], tuple(d if isinstance(d, int) else -1 for d in t.shape))
            for t in manifest.inputs]


def output_metadata(model: Model) -> list[TensorMeta]:
    """What ``medinfer serve`` returns for a model, derived from one run of its golden input.

    ``labels`` (BYTES, classification only) and ``scores`` are :class:`~medinfer.Prediction`'s fields; the raw
    score output keeps the graph's name (e.g. ``probabilities``) unless that name is already taken.
    """
    inputs, _ = model.golden()
    pred = model.predict(inputs)
    out = []
    if pred.labels is not None:
        out.append(TensorMeta("labels", "BYTES", (-1,)))
    scores = np.asarray(pred.scores)
    out.append(TensorMeta("scores", datatype_of(scores), (-1, *scores.shape[1:])))
    for name, raw in pred.outputs.items():
        if name not in ("labels", "scores"):
            spec = next((o for o in model.manifest.outputs if o.name == name), None)
            dims = [d if isinstance(d, int) else -1 for d in spec.shape] if spec else [-1, *raw.shape[1:]]
            out.append(TensorMeta(name, datatype_of(raw), tuple(dims) if dims else (-1,)))
    if pred.in_domain is not None:
        out.append(TensorMeta("in_domain", "BOOL", (-1,)))
    return out


def prediction_tensors(pred: Prediction) -> dict[str, np.ndarray]:
    """The response tensors of one Prediction, keyed like :func:`output_metadata`."""
    tensors: dict[str, np.ndarray] = {}
    if pred.labels is not None:
        tensors["labels"] = np.asarray([str(v) for v in pred.labels], dtype=object)
    tensors["scores"] = np.asarray(pred.scores)
    for name, raw in pred.outputs.items():
        tensors.setdefault(name, raw)
    if pred.in_domain is not None:  # the applicability-domain flag beside the raw domain_score output
        tensors["in_domain"] = pred.in_domain
    return tensors


# -- request ----------------------------------------------------------------------------------------------
@dataclass
class InferRequest:
    """A decoded inference request."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None  # names asked for (None: all)
    binary: dict[str, bool]  # per requested output: send as binary?
    binary_default: bool
    parameters: dict[str, Any]


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    """Parse an inference request body (JSON, or JSON + binary tensors).

    Raises:
        RequestError: bad JSON, missing fields, unknown datatype, or data that does not match its shape.
    """
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise RequestError(f"Inference-Header-Content-Length must be an integer, got {header_length!r}") from None
        if not 0 <= n <= len(body):
            raise RequestError(f"Inference-Header-Content-Length {n} is outside the body's {len(body)} bytes")
        head, rest = body[:n], memoryview(body)[n:]
    else:
        head, rest = body, memoryview(b"")
    doc = parse_json(head)
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise RequestError("the request must be a JSON object with a non-empty 'inputs' list")
    params = _mapping(doc.get("parameters"), "parameters")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(doc["inputs"]):
        if not isinstance(item, dict):
            raise RequestError(f"inputs[{i}] must be an object with name, shape, datatype and data")
        name, shape, datatype = tensor_head(item, f"inputs[{i}]")
        if name in inputs:
            raise RequestError(f"input '{name}' appears twice in the request")
        size = _mapping(item.get("parameters"), f"inputs[{i}].parameters").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(rest):
                raise RequestError(f"input '{name}': binary_data_size {size!r} does not fit the "
                                   f"{len(rest) - offset} binary bytes left in the body")
            inputs[name] = from_binary(rest[offset:offset + size], name, shape, datatype)  # no copy
            offset += size
        elif "data" in item:
            inputs[name] = _from_json(item["data"], name, shape, datatype)
        else:
            raise RequestError(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
    if offset != len(rest):
        raise RequestError(f"{len(rest) - offset} binary bytes after the last tensor belong to no input")
    outputs, binary = None, {}
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise RequestError("'outputs' must be a list of {name, parameters}")
        outputs = []
        for j, item in enumerate(doc["outputs"]):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise RequestError(f"outputs[{j}] must be an object with a 'name'")
            outputs.append(item["name"])
            flag = _mapping(item.get("parameters"), f"outputs[{j}].parameters").get("binary_data")
            if flag is not None:
                binary[item["name"]] = bool(flag)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(f"'id' must be a string, got {type(request_id).__name__}")
    return InferRequest(request_id, inputs, outputs, binary, bool(params.get("binary_data_output", False)),
                        dict(params))


def parse_json(raw: bytes | memoryview) -> Any:
    """A request's JSON (orjson when installed: no Python number objects beyond what the document holds).

    Raises:
        RequestError: not JSON, nested deeper than any tensor, or a number no double can hold (a 5,000-digit
            integer) — never a ValueError of the parser.
    """
    try:
        try:
            return _loads(raw)
        except ValueError as exc:
            if "surrogate" not in str(exc) or _loads is json.loads:
                raise
            # orjson refuses a lone surrogate (\ud800) that JSON allows; the json module reads it, and the model's
            # validator refuses it where it matters (an id, a text) with a record in the audit trail.
            return json.loads(bytes(raw))
    except RecursionError:
        raise RequestError("the request nests JSON deeper than any tensor: send data as a flat list") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limits of the json module
        text = str(exc)
        if "depth" in text or "recursion" in text:
            raise RequestError("the request nests JSON deeper than any tensor: send data as a flat list") from None
        raise RequestError(f"the request is not valid JSON: {text[:200]}") from None


def dump_json(doc: Any, finite: bool = True) -> bytes:
    """Compact JSON bytes (orjson when installed and every float is finite; the json module writes NaN/Infinity
    the way the protocol's JSON readers take them, where orjson would write null)."""
    if finite and _dumps is not None:
        return bytes(_dumps(doc))
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()


def _load_json() -> Any:
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


_loads = _load_json()
try:
    from orjson import dumps as _dumps
except ImportError:
    _dumps = None  # type: ignore[assignment]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"'{where}' must be an object")
    return value


def tensor_head(item: Mapping[str, Any], where: str) -> tuple[str, tuple[int, ...], str]:
    name, shape, datatype = item.get("name"), item.get("shape"), item.get("datatype")
    if not isinstance(name, str) or not name:
        raise RequestError(f"{where} needs a 'name' (string)")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise RequestError(f"input '{name}' needs a 'shape': a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_DIMS:
        raise RequestError(f"input '{name}' has {len(shape)} dimensions; at most {MAX_DIMS} are accepted")
    if _count(shape) > MAX_ELEMENTS:
        raise RequestError(f"input '{name}' declares shape {shape} ({_count(shape)} elements); at most {MAX_ELEMENTS} "
                           "elements fit one request")
    if datatype != "BYTES" and datatype not in NUMPY:
        raise RequestError(f"input '{name}' has datatype {datatype!r}; use one of BYTES, {', '.join(NUMPY)}")
    return name, tuple(shape), datatype


MAX_DIMS = 16
MAX_ELEMENTS = 1 << 28  # beyond any body the server accepts (64 MiB by default)


def _count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:  # Python ints: no overflow for shapes like [2**62, 4]
        count *= int(dim)
    return count


def from_binary(raw: bytes | memoryview, name: str, shape: tuple[int, ...], datatype: str) -> np.ndarray:
    """A binary tensor as numpy: numbers are a view of the request's bytes (no copy when little-endian, as every
    client sends, and aligned), BYTES items are copied out of their length prefixes."""
    n = _count(shape)
    if datatype == "BYTES":
        items: list[bytes] = []
        pos = 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise RequestError(f"input '{name}': truncated BYTES length prefix at byte {pos}")
            (length,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + length > len(raw):
                raise RequestError(f"input '{name}': BYTES item {len(items)} claims {length} bytes, "
                                   f"{len(raw) - pos} left")
            items.append(bytes(raw[pos:pos + length]))
            pos += length
        if len(items) != n:
            raise RequestError(f"input '{name}' holds {len(items)} BYTES items but shape {list(shape)} needs {n}")
        return np.array(items, dtype=object).reshape(shape)
    dtype = np.dtype(NUMPY[datatype])
    if len(raw) != n * dtype.itemsize:
        raise RequestError(f"input '{name}' has {len(raw)} bytes but shape {list(shape)} of {datatype} needs "
                           f"{n * dtype.itemsize}")
    arr = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
    # A view of the body when its offset suits the dtype; a tensor after a JSON head of odd length is copied once,
    # so onnxruntime never gets an unaligned buffer.
    return (arr if arr.flags.aligned else arr.copy()).reshape(shape)


def _from_json(data: Any, name: str, shape: tuple[int, ...], datatype: str) -> np.ndarray:
    n = _count(shape)
    if datatype == "BYTES":
        flat = _flatten(data)
        if not all(isinstance(v, str) for v in flat):
            raise RequestError(f"input '{name}' is BYTES: its JSON data must hold strings only")
        if len(flat) != n:
            raise RequestError(f"input '{name}' has {len(flat)} values but shape {list(shape)} needs {n}")
        return np.array(flat, dtype=object).reshape(shape)
    want = np.dtype(NUMPY[datatype])
    if type(data) is list and want.kind != "b":
        fast = _flat_numbers(data, name, shape, datatype, want)
        if fast is not None:
            return fast.reshape(shape)
    flat = _flatten(data)
    if want.kind == "b":
        if not all(type(v) is bool for v in flat):
            raise RequestError(f"input '{name}' is BOOL: its JSON data must hold true/false only")
    elif any(type(v) is bool or not isinstance(v, (int, float)) for v in flat):
        bad = next(v for v in flat if type(v) is bool or not isinstance(v, (int, float)))
        kind = {bool: "booleans", str: "strings", type(None): "nulls"}.get(type(bad), type(bad).__name__)
        raise RequestError(f"input '{name}' is {datatype}, but its JSON data holds {kind} ({bad!r}); send numbers "
                           "(no conversions are made)")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise RequestError(f"input '{name}': 'data' is ragged or holds numbers too large for {datatype}; send a "
                           "flat (row-major) or rectangular list") from None
    kinds = "b" if want.kind == "b" else ("iu" if want.kind in "iu" else "iuf")
    if arr.dtype.kind not in kinds or arr.dtype == object:
        raise RequestError(f"input '{name}' is {datatype}, but its JSON data holds {arr.dtype.kind!r}-kind values "
                           f"({_kind_text(arr)}); send numbers of that type")
    if arr.size != n:
        raise RequestError(f"input '{name}' has {arr.size} values but shape {list(shape)} needs {n}")
    try:
        with np.errstate(over="raise", invalid="ignore"):
            return arr.astype(want.newbyteorder("=")).reshape(shape)  # JSON numbers are doubles: FP32 is exact
    except (OverflowError, FloatingPointError):
        raise RequestError(f"input '{name}' holds values that do not fit {datatype}") from None


def _flat_numbers(data: list[Any], name: str, shape: tuple[int, ...], datatype: str, want: np.dtype
                  ) -> np.ndarray | None:
    """A flat list of JSON numbers straight into numpy (None when it holds anything else: the general path then
    finds and names it). The type check runs in C (``set(map(type, ...))``), not per item in Python."""
    kinds = set(map(type, data))
    if not kinds or not kinds <= {float, int}:
        return None
    if want.kind in "iu" and float in kinds:
        raise RequestError(f"input '{name}' is {datatype}, but its JSON data holds 'f'-kind values (floats); send "
                           "numbers of that type")
    n = _count(shape)
    if len(data) != n:
        raise RequestError(f"input '{name}' has {len(data)} values but shape {list(shape)} needs {n}")
    try:
        arr = np.array(data, dtype=np.float64 if want.kind == "f" or float in kinds else np.int64)
        with np.errstate(over="raise", invalid="ignore"):
            return arr.astype(want.newbyteorder("="), copy=False)
    except (OverflowError, FloatingPointError, ValueError):
        raise RequestError(f"input '{name}' holds values that do not fit {datatype}") from None


def _kind_text(arr: np.ndarray) -> str:
    return {"U": "strings", "b": "booleans", "f": "floats", "O": "mixed types"}.get(arr.dtype.kind, str(arr.dtype))


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out



# -- response ---------------------------------------------------------------------------------------------
def encode_response(model_name: str, model_version: str, request_id: str | None, tensors: Mapping[str, np.ndarray],
                    binary: Mapping[str, bool], parameters: Mapping[str, Any]) -> tuple[bytes, int | None]:
    """Serialize a response; returns ``(body, json_length)`` where json_length is set when binary parts follow."""
    outputs, blobs = [], []
    for name, arr in tensors.items():
        item: dict[str, Any] = {"name": name, "datatype": datatype_of(arr), "shape": list(arr.shape)}
        if binary.get(name, False):
            blob = to_binary(arr)
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item["data"] = [str(v) for v in arr.reshape(-1)] if arr.dtype.kind in "OUS" else arr.reshape(-1).tolist()
        outputs.append(item)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    head = dump_json(doc, finite=all(arr.dtype.kind != "f" or bool(np.isfinite(arr).all())
                                     for arr in tensors.values()))
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def to_binary(arr: np.ndarray) -> bytes:
    if arr.dtype.kind in "OUS":
        parts = []
        for v in arr.reshape(-1).tolist():
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def error_body(message: str) -> bytes:
    """The protocol's error JSON: ``{"error": "..."}``."""
    return json.dumps({"error": message}).encode()
