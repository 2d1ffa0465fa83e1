"""What every explanation graph shares: cut from the model's graph, named and pinned like it, gated like it."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from medinfer.errors import ParityError

from ..canonical import canonicalize


def needed_nodes(graph: Any, outputs: list[str]) -> list[Any]:
    """The nodes of ``graph`` that ``outputs`` depend on, in graph order (onnxruntime runs every node of a graph
    whatever is fetched, so an explanation graph keeps only these)."""
    producer = {out: node for node in graph.node for out in node.output}
    wanted, stack = set(), list(outputs)
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None or id(node) in wanted:
            continue
        wanted.add(id(node))
        stack.extend(i for i in node.input if i)
    return [node for node in graph.node if id(node) in wanted]


def cut(onx: Any, tensor: str) -> Any:
    """A copy of ``onx`` that computes ``tensor`` from the model's inputs and nothing else (no outputs yet)."""
    out = copy.deepcopy(onx)
    g = out.graph
    keep = needed_nodes(g, [tensor])
    used = {i for node in keep for i in node.input}
    del g.node[:]
    g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.output[:]
    del g.value_info[:]
    return out


def finish(onx: Any, name: str, metadata: dict[str, str], description: str) -> bytes:
    """Name, describe, pin the model's contract digest into, check and serialize an explanation graph."""
    import medinfer
    import onnx

    props = {**metadata, "medinfer.explanation": description}
    del onx.metadata_props[:]
    for key, value in props.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value
    onx.producer_name, onx.producer_version = "medinfer", medinfer.__version__
    onx.doc_string = description
    canonicalize(onx, f"{name}_explanation")
    onnx.checker.check_model(onx)
    return bytes(onx.SerializeToString())


def gate(name: str, what: str, got: np.ndarray, ref: np.ndarray, atol: float, rtol: float = 0.0) -> dict[str, Any]:
    """Compare an explanation with its native reference (fail closed).

    Returns:
        The report (n, max abs diff, tolerance).

    Raises:
        ParityError: shapes differ, or a value differs beyond ``atol + rtol * |ref|``.
    """
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        raise ParityError(f"{name}: the explanation ({what}) has shape {got.shape}, its native reference {ref.shape}")
    diff = np.abs(got - ref)
    worst = float(diff.max(initial=0.0))
    bad = int(np.sum(~(diff <= atol + rtol * np.abs(ref))))
    if bad:
        raise ParityError(f"{name}: the explanation ({what}) differs from its native reference in {bad} values, by up "
                          f"to {worst:.3g} (tolerance atol={atol:g}, rtol={rtol:g}): not shipped")
    return {"n": int(len(ref)), "max_abs_diff": worst, "tolerance": {"atol": atol, "rtol": rtol}}
