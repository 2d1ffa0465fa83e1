"""Canonical bytes for exported graphs: the same model gives the same ``model.onnx`` on every export.

Converters leave traces of the converting process in the graph: skl2onnx names the graph with a random uuid and
lists opset imports in set order (which follows the process's string-hash seed); tf2onnx's rewrites depend on the
hash seed too (handled by converting in a child process, ``isolated.py``). Here the fields whose content carries
no meaning get one canonical value; nothing that changes what the graph computes is touched.
"""

from __future__ import annotations

import re
from typing import Any


def canonicalize(onx: Any, name: str) -> Any:
    """Give ``onx`` (an ``onnx.ModelProto``, changed in place and returned) canonical non-semantic fields: the graph
    named ``name``, opset imports sorted by domain, metadata properties sorted by key."""
    onx.graph.name = name
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, version in opsets:
        entry = onx.opset_import.add()
        entry.domain, entry.version = domain, version
    props = sorted((p.key, p.value) for p in onx.metadata_props)
    del onx.metadata_props[:]
    for key, value in props:
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value
    return onx


def canonical_bytes(data: bytes, name: str) -> bytes:
    """:func:`canonicalize` on serialized graph bytes."""
    import onnx

    return canonicalize(onnx.load_from_string(data), name).SerializeToString()  # type: ignore[no-any-return]


_COUNTER = re.compile(r"__\d+")
_SUFFIX = re.compile(r"(_\d+)+$")


def _stem(name: str) -> str:
    """``lstm_1_2/zeros_1/packed_Concat__151:0`` -> ``lstm/zeros/packed_Concat``: the name without the numbers a
    converter or framework appends to keep names unique (which of them a name got is what varies)."""
    parts = [_SUFFIX.sub("", _COUNTER.sub("", p)) or p for p in name.split(":")[0].split("/")]
    return "/".join(parts)


def canonical_names(onx: Any) -> Any:
    """Rename a graph's internal tensors and nodes from its STRUCTURE, and order its nodes canonically.

    A converter whose rewrites walk sets of objects (tf2onnx) numbers generated names, and picks which of two merged
    duplicates keeps its name, in an order that changes from process to process, though the computation is the
    same. Here every tensor gets a digest of what computes it (operator, attributes, the digests of its inputs;
    initializers by dtype, shape and values; graph inputs by name), the nodes are topologically sorted with that
    digest as the tie-break, and each internal name becomes its stem (numbers stripped) plus its position in that
    order. Graph inputs and outputs keep their names. A graph with subgraphs (If, Loop, Scan) is left as it is.

    Returns:
        ``onx``, changed in place.
    """
    from medinfer.integrity import sha256_bytes
    from onnx import AttributeProto, numpy_helper

    g = onx.graph
    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        return onx
    keep = {v.name for v in g.input} | {v.name for v in g.output}

    def h(*parts: Any) -> str:
        return sha256_bytes(repr(parts).encode())

    digest = {v.name: h("input", v.name) for v in g.input}
    for t in g.initializer:
        arr = numpy_helper.to_array(t)
        digest[t.name] = h("initializer", t.data_type, tuple(arr.shape), sha256_bytes(arr.tobytes()))
    node_digest = []
    for node in g.node:  # ONNX graphs list nodes in a topological order
        d = h(node.op_type, node.domain, tuple(a.SerializeToString() for a in node.attribute),
              tuple(digest.get(i, h("missing", i)) for i in node.input))
        node_digest.append(d)
        for k, out in enumerate(node.output):
            digest[out] = h(d, k)
    order = _topological(list(g.node), node_digest)
    mapping: dict[str, str] = {}
    count = 0
    for node in order:
        for name in [*node.input, *node.output]:
            if name and name not in keep and name not in mapping:
                mapping[name] = f"{_stem(name)}__{count}"
                count += 1
        node.name = f"{_stem(node.name or node.op_type)}__{count}"
        count += 1
        node.input[:] = [mapping.get(i, i) for i in node.input]
        node.output[:] = [mapping.get(o, o) for o in node.output]
    inits = sorted(g.initializer, key=lambda t: (t.name not in mapping, mapping.get(t.name, ""), digest[t.name]))
    for t in inits:
        t.name = mapping.get(t.name, t.name)
    infos = [v for v in g.value_info if v.name in mapping]
    for v in infos:
        v.name = mapping[v.name]
    del g.node[:]
    g.node.extend(order)
    new_inits = [type(t)() for t in inits]
    for new, old in zip(new_inits, inits):
        new.CopyFrom(old)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    new_infos = []
    for v in sorted(infos, key=lambda v: v.name):
        copy = type(v)()
        copy.CopyFrom(v)
        new_infos.append(copy)
    del g.value_info[:]
    g.value_info.extend(new_infos)
    return onx


def _topological(nodes: list[Any], keys: list[str]) -> list[Any]:
    """Kahn's algorithm, always taking the ready node with the smallest key (ties: the original position)."""
    import heapq

    produced = {o: i for i, n in enumerate(nodes) for o in n.output}
    waiting = [sum(1 for x in set(n.input) if x in produced) for n in nodes]
    users: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        for x in set(n.input):
            if x in produced:
                users.setdefault(produced[x], []).append(i)
    ready = [(keys[i], i) for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, i = heapq.heappop(ready)
        out.append(nodes[i])
        for j in users.get(i, []):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, (keys[j], j))
    if len(out) != len(nodes):
        raise ValueError("the graph has a cycle: cannot order its nodes")
    return out
