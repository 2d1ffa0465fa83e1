"""The audit trail's record format: what a record holds, its canonical bytes, and the chain that links it.

A record is one line of canonical JSON (sorted keys, no spaces, UTF-8) of its body, with ``"hash"`` appended last:
``hash = sha256(prev + canonical body)`` — or HMAC-SHA256 under a device key in keyed mode (the body then carries
``"chain": "hmac-sha256"``). :class:`Chain` computes that link for the writer and the verifier alike, and
:func:`head_mac` the MAC of a keyed head file. :func:`summary` is what an inference record says of its output.

The writer encodes its records without ``json.dumps`` per call (:func:`canonical_text`, a reused C encoder; the
one-sample output summary written directly by :func:`output_text`): ``tests/runtime/test_audit_commit.py`` proves
the bytes are those :func:`canonical` gives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from json import encoder as _json_encoder
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AuditError, InputError
from ..integrity import sha256_bytes

if TYPE_CHECKING:
    from ..prediction import Prediction

GENESIS = "0" * 64
KEYED = "hmac-sha256"
HEAD_SUFFIX = ".head"
SUMMARY_LIMIT = 16  # samples of a batch whose labels and scores a record keeps


def canonical(record: dict[str, Any]) -> bytes:
    """The canonical bytes of a record body (what its hash covers)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Chain:
    """The link of the hash chain: ``sha256(prev + raw)``, or HMAC-SHA256 of it under ``key`` (keyed mode)."""

    __slots__ = ("_mac",)

    def __init__(self, key: bytes | None = None) -> None:
        self._mac = hmac.new(key, digestmod=hashlib.sha256) if key is not None else None

    def link(self, prev: str, raw: bytes) -> str:
        """The hash of the record whose canonical body is ``raw``, following the record hashed ``prev``."""
        if self._mac is None:
            h: Any = hashlib.sha256(prev.encode())
        else:
            h = self._mac.copy()
            h.update(prev.encode())
        h.update(raw)
        return str(h.hexdigest())


def chain_hash(prev: str, body: dict[str, Any], key: bytes | None = None) -> str:
    """The hash a record with ``body`` (without ``hash``) carries after the record hashed ``prev``."""
    return Chain(key).link(prev, canonical(body))


def head_mac(key: bytes, doc: dict[str, Any]) -> str:
    """The MAC of a keyed head document (its fields without ``mac``)."""
    return raw_mac(key, canonical(doc))


def raw_mac(key: bytes, raw: bytes) -> str:
    """HMAC-SHA256 of canonical bytes (a head or counter document written directly)."""
    return hmac.new(key, raw, hashlib.sha256).hexdigest()


def torn_digest(raw: bytes) -> str:
    """The digest a recovery record carries of the torn line it seals."""
    return sha256_bytes(raw)


KEY_LIMIT = 4096  # bytes a key file may hold: a key, never a disk image or an endless device


def read_key(source: str | Path | bytes) -> bytes:
    """A device key for the keyed chain: bytes, or a file holding at least 16 bytes (e.g. ``head -c 32
    /dev/urandom > audit.key``).

    One rule for both forms: the key is the bytes with leading and trailing ASCII whitespace removed (so a key file
    written with a final newline and the same key given as bytes chain alike). A key file must be a regular file
    (a FIFO is refused before it is read, never waited on) of at most 4096 bytes (``/dev/zero`` is refused, never
    read into memory); a symbolic link to such a file is followed (secret mounts use them).

    Raises:
        AuditError: the file cannot be read, is not a regular file, is larger than 4096 bytes, or fewer than 16
            bytes remain.
    """
    if isinstance(source, (bytes, bytearray)):
        key = bytes(source).strip()
    else:
        key = _read_key_file(Path(source)).strip()
    if len(key) < 16:
        raise AuditError("an audit key needs at least 16 bytes (e.g. head -c 32 /dev/urandom > audit.key)")
    return key


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO opens at once, then is refused
    except OSError as exc:
        raise AuditError(f"audit key {path} cannot be read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AuditError(f"audit key {path} is not a regular file (a FIFO, device or folder); give the file "
                             "holding the key")
        data = os.read(fd, KEY_LIMIT + 1)
    except OSError as exc:
        raise AuditError(f"audit key {path} cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > KEY_LIMIT:
        raise AuditError(f"audit key {path} holds more than {KEY_LIMIT} bytes: not a key file")
    return data


json_string = _json_encoder.encode_basestring  # a str as JSON, exactly as json.dumps(ensure_ascii=False) writes it
_FLOAT_REPR = float.__repr__
_INF = float("inf")


def _make_canonical_text() -> Any:
    """``obj -> canonical JSON text`` (the same text as :func:`canonical`, without building a JSONEncoder per
    call)."""
    make = getattr(_json_encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the C accelerator
        return json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    plain = json.JSONEncoder()
    encode = make(None, plain.default, json_string, None, ":", ",", True, False, True)
    return lambda obj: "".join(encode(obj, 0))


canonical_text = _make_canonical_text()


def number_text(value: Any) -> str:
    """A number as canonical JSON (floats as ``float.__repr__``, like json)."""
    if type(value) is float and value == value and value != _INF and value != -_INF:
        return _FLOAT_REPR(value)
    if type(value) is int:
        return str(value)
    return canonical_text(value)  # type: ignore[no-any-return]  # NaN, bool, numpy scalars: whatever json writes


def output_text(output: dict[str, Any]) -> str:
    """Canonical JSON of an output summary; the one-sample summary ``{n, labels: [str], scores: [float]}`` is
    written directly (the same text as the generic encoder: a tested property)."""
    if len(output) == 3:
        labels, scores = output.get("labels"), output.get("scores")
        if (type(labels) is list and type(scores) is list and len(labels) == 1 == len(scores)
                and output.get("n") == 1 and type(output["n"]) is int and type(labels[0]) is str
                and type(scores[0]) is float and -_INF < scores[0] < _INF):
            return f'{{"labels":[{json_string(labels[0])}],"n":1,"scores":[{_FLOAT_REPR(scores[0])}]}}'
    return canonical_text(output)  # type: ignore[no-any-return]


def input_digest(feeds: dict[str, Any]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the inputs: identifies the input, reveals nothing."""
    h = hashlib.sha256()
    for name in sorted(feeds) if len(feeds) > 1 else feeds:
        arr = feeds[name]
        if type(arr) is not np.ndarray:
            arr = np.asarray(arr)
        key = (name, arr.dtype, arr.shape)
        header = _HEADERS.get(key)
        if header is None:
            if len(_HEADERS) > 512:  # shapes vary with the batch: a bounded cache
                _HEADERS.clear()
            header = _HEADERS[key] = f"{name}|{arr.dtype.str}|{arr.shape}|".encode()
        h.update(header)
        if arr.dtype.kind in "OU":
            for item in arr.reshape(-1).tolist():
                h.update(str(item).encode("utf-8", "surrogatepass") + b"\x00")
        elif arr.flags.c_contiguous:
            h.update(arr)  # the buffer itself: no copy
        else:
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


_HEADERS: dict[tuple[str, Any, tuple[int, ...]], bytes] = {}


def digestible(x: Any) -> dict[str, Any] | None:
    """What the record of an input that failed validation digests (never the raw data): a plain array, else
    nothing."""
    if isinstance(x, np.ndarray) and x.dtype != object:
        return {"raw": x}
    return None


MAX_REQUEST_ID = 256


def checked_request_id(request_id: Any) -> str | None:
    """A request id that every log, header and JSON document can carry: a string of at most 256 printable
    characters, valid Unicode (no lone surrogates)."""
    if request_id is None:
        return None
    if not isinstance(request_id, str):
        raise InputError(f"request_id must be a string, got {type(request_id).__name__}")
    if not 0 < len(request_id) <= MAX_REQUEST_ID or not request_id.isprintable():
        raise InputError(f"request_id must be 1 to {MAX_REQUEST_ID} printable characters, got {len(request_id)} "
                         "characters (control characters or too long)")
    try:
        request_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("request_id is not valid Unicode (a lone surrogate): send it as UTF-8 text") from None
    return request_id


def refused_id(request_id: Any) -> str:
    """A refused request id as it goes into the record: its digest, never the raw value."""
    raw = request_id if isinstance(request_id, str) else repr(request_id)
    return "refused-id:" + sha256_bytes(raw.encode("utf-8", "surrogatepass"))[:32]


def summary(pred: Prediction, limit: int = SUMMARY_LIMIT, explained: int = 0) -> dict[str, Any]:
    """What an inference record says of its output: decisions and scores rounded to 5 decimals (numpy's rule:
    ``rint(x * 1e5) / 1e5``) of the first ``limit`` samples, the domain scores and the out-of-domain count; with
    ``explained`` > 0 and an explanation, its method and the top ``explained`` attributions of those samples."""
    labels = pred.labels
    scores = pred.scores
    n = len(pred)
    out: dict[str, Any] = {"n": n}
    if labels is not None:
        out["labels"] = [str(labels[0])] if n == 1 else [str(v) for v in labels[:limit]]
    domain = pred.domain_scores
    if domain is not None:
        out["domain_scores"] = _rounded(domain, n, limit)
        out["out_of_domain"] = n - int(np.count_nonzero(pred.in_domain))  # type: ignore[arg-type]
    out["scores"] = _rounded(scores, n, limit)
    explanation = pred.explanation if explained else None
    if explanation is not None:
        out["explanation"] = {"method": explanation.method, "top": [
            [[name, round(value, 5)] for name, value in explanation.top(i, explained)] for i in range(min(n, limit))]}
    return out


def _rounded(values: np.ndarray, n: int, limit: int) -> list[Any]:
    """The first ``limit`` values rounded to 5 decimals as numpy rounds them; finite 1-D values by Python's round()
    (numpy's rint there, and much cheaper for the one sample of a hot-path call)."""
    if values.ndim == 1:
        first = [values.item(0)] if n == 1 else values[:limit].tolist()
        if all(-1e300 < v < 1e300 for v in first):
            return [round(v * 100000.0) / 100000.0 for v in first]
    return np.round(np.asarray(values)[:limit].astype(np.float64), 5).tolist()  # type: ignore[no-any-return]


#: The longest line an audit file may hold: the writer refuses a longer record and every reader treats a longer
#: line as not a record, so a hostile line never fills memory.
MAX_LINE = 1 << 20

# The events of the chain's own bookkeeping (what the writer appends besides inference records).
RECOVERED = "recovered_torn_tail"  # seals a torn line: its length and sha256
OPENED = "audit_file_opened"  # first record of a rotated-to file: the previous file's name, sha256 and bytes
CLOSED = "audit_file_closed"  # last record of a file before rotation
RETAINED = "retention_deleted"  # whole files deleted after their retention period (written before deleting)
WITHHELD = "answer_withheld"  # the records named were written but their answers never returned


def parse_record(raw: bytes) -> dict[str, Any] | None:
    """A line as an audit record, or None: a JSON object of at most :data:`MAX_LINE` bytes with a 64-character
    ``hash`` and ``prev`` and an integer ``seq`` >= 1. Anything else (a torn line, ``{"hash": null}``, a seq of
    1e400, nesting deep enough to exhaust the parser, bytes that are not UTF-8, a NUL) is None, never an
    exception."""
    if len(raw) > MAX_LINE:
        return None
    try:
        rec = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if type(rec) is not dict:
        return None
    digest, prev, seq = rec.get("hash"), rec.get("prev"), rec.get("seq")
    if (type(digest) is not str or len(digest) != 64 or type(prev) is not str or len(prev) != 64
            or type(seq) is not int or seq < 1):
        return None
    return rec


def read_at(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset`` (``os.pread``; where there is none, a seek and a read: an ``O_APPEND``
    writer's appends go to the end whatever the offset)."""
    if _PREAD is not None:
        return _PREAD(fd, size, offset)  # type: ignore[no-any-return]
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def write_at(fd: int, data: bytes, offset: int) -> int:
    """Write ``data`` at ``offset`` (``os.pwrite``, or a seek and a write)."""
    if _PWRITE is not None:
        return _PWRITE(fd, data, offset)  # type: ignore[no-any-return]
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


_PREAD, _PWRITE = getattr(os, "pread", None), getattr(os, "pwrite", None)


def file_hasher() -> Any:
    """A sha256 object for a file read in blocks (a rotated file's digest, computed while it is verified)."""
    return hashlib.sha256()


def fd_digest(fd: int, size: int) -> str:
    """sha256 of the first ``size`` bytes of an open file (read with ``pread``: the descriptor's offset is left
    alone), what a rotated-to file's first record pins of the file before it."""
    h = hashlib.sha256()
    offset = 0
    while offset < size:
        block = read_at(fd, min(1 << 20, size - offset), offset)
        if not block:
            break
        h.update(block)
        offset += len(block)
    return h.hexdigest()


def json_or_none(raw: bytes) -> dict[str, Any] | None:
    """A JSON object, or None for anything else (a torn line, a list, garbage)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
