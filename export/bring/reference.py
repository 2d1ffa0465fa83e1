"""The reference data of a brought model (``REF.npz``) and its optional training sample (``TRAIN.npz``).

Keys (medinfer.samples' scheme): ``in.<input>`` the inputs (one array per model input, samples on axis 0),
``out.<output>`` the source framework's outputs on them (required for an ``.onnx`` source, a cross-check otherwise),
``y`` the true labels (class indices, or values for regression; optional: held-out metrics with CIs when given).
No pickles are ever loaded; any other key is refused (a typo must not drop data silently).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from medinfer.errors import UsageError
from medinfer.integrity import sha256_bytes
from medinfer.samples import INPUT, OUTPUT, key

LABELS = "y"
MIN_SAMPLES = 4


@dataclass
class Reference:
    """What REF.npz holds, by name, in the file's order."""

    path: Path
    sha256: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    y: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(next(iter(self.inputs.values())))


def read_reference(path: str | Path, what: str = "REF.npz", need_outputs: bool = False) -> Reference:
    """Read and check a reference file.

    Raises:
        UsageError: missing, not an npz, no ``in.`` key, an unknown key, arrays of different lengths, too few
            samples, object arrays, or non-finite float inputs.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} {p} does not exist (an .npz with one array per model input, keys in.<input>)")
    data = p.read_bytes()
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{what} {p} is not a readable .npz without pickles ({type(exc).__name__}: {exc})") from None
    pin, pout = key(INPUT, ""), key(OUTPUT, "")
    inputs = {k[len(pin):]: v for k, v in arrays.items() if k.startswith(pin)}
    outputs = {k[len(pout):]: v for k, v in arrays.items() if k.startswith(pout)}
    unknown = [k for k in arrays if not k.startswith((pin, pout)) and k != LABELS]
    if unknown:
        raise UsageError(f"{what} {p} has keys {unknown} that are not in.<input>, out.<output> or y")
    if not inputs:
        raise UsageError(f"{what} {p} holds no inputs: store each model input under the key in.<name> "
                         "(medinfer.samples.pair_arrays({name: X}, {}) gives the keys)")
    y = arrays.get(LABELS)
    sizes = {**{key(INPUT, k): len(v) for k, v in inputs.items() if v.ndim},
             **{key(OUTPUT, k): len(v) for k, v in outputs.items() if v.ndim},
             **({LABELS: len(y)} if y is not None else {})}
    if len(set(sizes.values())) != 1 or any(v.ndim == 0 for v in (*inputs.values(), *outputs.values())):
        raise UsageError(f"{what} {p}: every array needs the samples on axis 0, in equal numbers; got {sizes}")
    n = next(iter(sizes.values()))
    if n < MIN_SAMPLES:
        raise UsageError(f"{what} {p} holds {n} samples; at least {MIN_SAMPLES} are needed (golden self-test and "
                         "parity sample), and the parity gate is only as good as the set: give real held-out data")
    for name, arr in inputs.items():
        if arr.dtype == object:
            raise UsageError(f"{what} {p}: {key(INPUT, name)!r} is an object array; store text as a unicode array")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise UsageError(f"{what} {p}: {key(INPUT, name)!r} holds {int((~np.isfinite(arr)).sum())} non-finite "
                             "values")
    if need_outputs and not outputs:
        raise UsageError(f"{what} {p} holds no outputs: an .onnx source has no framework here to compare with, so "
                         "REF.npz must hold what the model gave in its own framework, as out.<output> arrays")
    return Reference(p, sha256_bytes(data), inputs, outputs, y)
