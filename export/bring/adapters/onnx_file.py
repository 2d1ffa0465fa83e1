"""An existing ``.onnx`` graph, wrapped without its framework: the reference outputs in REF.npz are what the parity
gate compares with (``out.<name>``, required)."""

from __future__ import annotations

from pathlib import Path

from medinfer.errors import UsageError

from ....train.spec import ParityTolerance
from ..sources import Loaded, Source, register_source, suffix


def _load(source: str, task: str) -> Loaded:
    import onnx

    path = Path(source)
    if not path.is_file():
        raise UsageError(f"ONNX file {source} does not exist")
    try:
        onx = onnx.load_from_string(path.read_bytes())
        onnx.checker.check_model(onx)
    except Exception as exc:  # noqa: BLE001 - any parse/check failure is the user's file
        raise UsageError(f"{source} is not a valid ONNX model ({type(exc).__name__}: {exc})") from None
    inits = {t.name for t in onx.graph.initializer}
    names = tuple(i.name for i in onx.graph.input if i.name not in inits)
    return Loaded("onnx", onx, str(path), input_names=names)


def _frameworks() -> dict[str, str]:
    return {}


register_source(Source(
    kind="onnx", family="onnx", extra="train", matches=lambda s: suffix(s) == ".onnx", load=_load, run=None,
    frameworks=_frameworks, tolerance=ParityTolerance(atol=1e-5, rtol=1e-5),
    describe="an .onnx file (REF.npz must hold its outputs as out.<name>)"))
