"""PyTorch: a saved ExportedProgram (``.pt2``, ``torch.export.save``) or an ``nn.Module`` named ``module:attr``
(``pkg.mod:net`` or ``path/to/file.py:make_net``; the attribute is a module instance or a function/class that
returns one with its weights loaded). Converted by the dynamo ONNX exporter (``torch.onnx.export(...,
dynamo=True)``, the ``torch`` converter family); the input names are the module's own (``forward``'s parameters, an
ExportedProgram's user inputs)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.errors import UsageError
from medinfer.extras import optional_import

from ....train.spec import ParityTolerance
from ..sources import Loaded, Source, register_source, suffix, versions

BATCH = 64  # samples per framework call (bounded memory)


def _torch() -> Any:
    return optional_import("torch", "torch", "bringing a PyTorch model (medinfer bundle)")


def resolve_attr(source: str) -> Any:
    """The object ``module:attr`` names (a dotted module, or a ``.py`` file path, then a dotted attribute).

    Raises:
        UsageError: the module or the attribute cannot be found (with what was tried).
    """
    target, _, attr = source.rpartition(":")
    if not target or not attr:
        raise UsageError(f"{source!r}: name a PyTorch module as MODULE:ATTR (e.g. mypkg.nets:model or "
                         "nets.py:make_model) or give a .pt2 file saved with torch.export.save")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise UsageError(f"{target} does not exist")
            spec = importlib.util.spec_from_file_location(f"medinfer_brought_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise UsageError(f"{target} cannot be imported as a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as exc:
        raise UsageError(f"cannot import {target!r} for {source!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{target} has no attribute {part!r} (from {source!r})")
        obj = getattr(obj, part)
    return obj


def _load(source: str, task: str) -> Loaded:
    torch = _torch()
    if suffix(source) == ".pt2":
        if not Path(source).is_file():
            raise UsageError(f"{source} does not exist")
        try:
            ep = torch.export.load(source)
        except Exception as exc:  # noqa: BLE001 - a file torch cannot read is the user's file
            raise UsageError(f"{source} is not a torch.export ExportedProgram ({type(exc).__name__}: {exc})") from None
        return Loaded("torch", ep, source, input_names=tuple(str(n) for n in ep.graph_signature.user_inputs),
                      info={"program": True})
    obj = resolve_attr(source)
    if not isinstance(obj, torch.nn.Module) and callable(obj):
        obj = obj()
    if not isinstance(obj, torch.nn.Module):
        raise UsageError(f"{source!r} is a {type(obj).__name__}, not a torch.nn.Module (or a function returning one)")
    obj.eval()
    params = [p for p in inspect.signature(obj.forward).parameters.values()]
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        names = None  # forward(*args): the reference's order decides
    else:
        names = tuple(p.name for p in params if p.default is inspect.Parameter.empty)
    return Loaded("torch", obj, source, input_names=names, info={"program": False})


def module_of(loaded: Loaded) -> Any:
    """The callable module (an ExportedProgram's ``.module()``)."""
    return loaded.obj.module() if loaded.info.get("program") else loaded.obj


def _run(loaded: Loaded, inputs: dict[str, np.ndarray], output_names: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    torch = _torch()
    module = module_of(loaded)
    names = list(inputs)
    n = len(next(iter(inputs.values())))
    parts: list[Any] = []
    with torch.no_grad():
        for start in range(0, n, BATCH):
            args = [torch.from_numpy(np.ascontiguousarray(inputs[k][start:start + BATCH])) for k in names]
            parts.append(module(*args))
    return _named(parts, output_names)


def _named(parts: list[Any], output_names: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    first = parts[0]
    if isinstance(first, dict):
        keys = list(first)
        return {str(k): np.concatenate([p[k].detach().numpy() for p in parts]) for k in keys}
    seq = isinstance(first, (tuple, list))
    count = len(first) if seq else 1
    names = output_names or (("output",) if count == 1 else None)
    if names is None or len(names) != count:
        raise UsageError(f"the module returns {count} outputs; name them in the contract, in order: output_names = "
                         f"[{', '.join(repr(f'out{i}') for i in range(count))}]"
                         + (f" (got {list(names)})" if names else ""))
    if not seq:
        return {names[0]: np.concatenate([p.detach().numpy() for p in parts])}
    return {name: np.concatenate([p[i].detach().numpy() for p in parts]) for i, name in enumerate(names)}


def _frameworks() -> dict[str, str]:
    return {"torch": str(_torch().__version__), **versions("onnxscript", "monai")}


def _matches(source: str) -> bool:
    return suffix(source) == ".pt2" or (suffix(source) == "" and ":" in source) or (
        ".py:" in source and not Path(source).exists())


register_source(Source(
    kind="torch", family="torch", extra="torch", matches=_matches, load=_load, run=_run, frameworks=_frameworks,
    tolerance=ParityTolerance(atol=1e-4, rtol=1e-4),
    describe="a .pt2 ExportedProgram or an nn.Module as module:attr / file.py:attr"))
