"""A bundle as a CycloneDX 1.6 ML-BOM (see :mod:`.sbom` for what it holds and why ``modelCard``/``data`` are added
to the library's JSON)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import medinfer
from medinfer.integrity import sha256_bytes
from medinfer.manifest import Manifest, read_manifest_bytes

from .sbom import canonical, cdx, purl, sha256_hash, to_json, validated

_HEX = re.compile(r"^[0-9a-f]{64}$")


def graph_operators(bundle: Path, manifest: Manifest) -> dict[str, list[str]]:
    """Operator types per ONNX domain over every graph of the bundle ({} when the onnx package is missing)."""
    try:
        import onnx
    except ImportError:
        return {}
    ops: dict[str, set[str]] = {}
    for name, entry in manifest.files.items():
        if entry.role not in ("model", "variant"):
            continue
        graph = onnx.load_model_from_string((bundle / name).read_bytes())
        for node in graph.graph.node:
            ops.setdefault(node.domain or "ai.onnx", set()).add(node.op_type)
    return {d: sorted(v) for d, v in sorted(ops.items())}


def _property(name: str, value: Any) -> Any:
    model, _, _ = cdx()
    return model.Property(name=name, value=str(value))


def bundle_bom(bundle: str | Path) -> dict[str, Any]:
    """The ML-BOM of a bundle, verified first (:func:`medinfer.load`: digests, a present signature, self-test)."""
    _, bom_mod, component = cdx()
    bundle = Path(bundle)
    loaded = medinfer.load(bundle)
    m = loaded.manifest if loaded.variant == "default" else medinfer.load_manifest(bundle)
    raw = read_manifest_bytes(bundle)
    files = [component.Component(type=component.ComponentType.FILE, name=name, hashes=[sha256_hash(e.sha256)],
                                 properties=[_property("medinfer:role", e.role), _property("medinfer:size", e.size)],
                                 bom_ref=f"file:{name}") for name, e in sorted(m.files.items())]
    files.append(component.Component(type=component.ComponentType.FILE, name="manifest.json",
                                     hashes=[sha256_hash(sha256_bytes(raw))], bom_ref="file:manifest.json"))
    props = [_property("medinfer:task", m.task), _property("medinfer:created", m.created)]
    if m.requires is not None:
        props.append(_property("medinfer:requires-onnxruntime", m.requires.onnxruntime))
        props += [_property(f"medinfer:opset:{d}", v) for d, v in sorted(m.requires.opsets.items())]
    for domain, ops in graph_operators(bundle, m).items():
        props.append(_property(f"medinfer:operators:{domain}", ", ".join(ops)))
    if m.lineage is not None:
        props.append(_property("medinfer:release", m.lineage.release))
        if m.lineage.parent_sha256:
            props.append(_property("medinfer:parent-sha256", m.lineage.parent_sha256))
    if loaded.signature is not None and loaded.signature.key_id:
        props.append(_property("medinfer:signature-key-id", loaded.signature.key_id))
    model_comp = component.Component(
        type=component.ComponentType.MACHINE_LEARNING_MODEL, name=m.name, version=m.version, bom_ref="model",
        hashes=[sha256_hash(sha256_bytes(raw))], description=m.description or m.card.summary, properties=props,
        components=files)
    bom = bom_mod.Bom()
    bom.metadata.component = model_comp
    datasets = []
    for i, src in enumerate(m.data.sources):
        source_purl = purl(src.package, src.version) if src.package not in ("", "none", "-") else None
        hashes = [sha256_hash(src.sha256)] if _HEX.match(src.sha256) and set(src.sha256) != {"0"} else []
        ds = component.Component(type=component.ComponentType.DATA, name=src.name, version=src.version or None,
                                 purl=source_purl, hashes=hashes, bom_ref=f"data:{i}:{src.name}",
                                 description=f"{src.file} — {src.citation}"[:1000],
                                 properties=[_property("medinfer:licence", src.licence),
                                             _property("medinfer:synthetic", m.data.synthetic)])
        bom.components.add(ds)
        datasets.append(ds)
    producers = _producers(m)
    for p in producers:
        bom.components.add(p)
    bom.register_dependency(model_comp, datasets)
    doc = to_json(bom)
    _add_model_card(doc, m)
    _add_data(doc, m)
    return validated(doc)


def _producers(m: Manifest) -> list[Any]:
    _, _, component = cdx()
    tools = {"medinfer": m.producer.medinfer, "onnx": m.producer.onnx, "onnxruntime": m.producer.onnxruntime,
             **m.producer.frameworks, **m.producer.converter}
    out = []
    for name, version in sorted(tools.items()):
        if not version or version in ("test", "unknown"):
            continue
        out.append(component.Component(
            type=component.ComponentType.LIBRARY, name=name, version=version, purl=purl(name, version),
            scope=component.ComponentScope.EXCLUDED, bom_ref=f"producer:{canonical(name)}@{version}",
            properties=[_property("medinfer:role", "made the bundle (export); not shipped")]))
    return out


def _add_model_card(doc: dict[str, Any], m: Manifest) -> None:
    metrics = []
    for name, metric in m.metrics.heldout.items():
        entry: dict[str, Any] = {"type": name, "value": f"{metric.value:.6g}", "slice": "held-out"}
        if metric.ci95 is not None:
            entry["confidenceInterval"] = {"lowerBound": f"{metric.ci95[0]:.6g}",
                                           "upperBound": f"{metric.ci95[1]:.6g}"}
        metrics.append(entry)
    card = {
        "bom-ref": "model-card",
        "modelParameters": {
            "approach": {"type": "supervised"},
            "task": m.task,
            "modelArchitecture": m.description[:500] or m.name,
            "datasets": [{"ref": c["bom-ref"]} for c in doc.get("components", []) if c.get("type") == "data"],
            "inputs": [{"format": f"{t.name}: {t.dtype} {list(t.shape)}" + (f" {t.units}" if t.units else "")}
                       for t in m.inputs],
            "outputs": [{"format": f"{t.name}: {t.dtype} {list(t.shape)}"} for t in m.outputs],
        },
        "quantitativeAnalysis": {"performanceMetrics": metrics},
        "considerations": {
            "useCases": [m.card.intended_use],
            "technicalLimitations": list(m.card.limitations) + [f"Out of scope: {s}" for s in m.card.out_of_scope],
            "ethicalConsiderations": [{"name": e} for e in m.card.ethical_considerations],
        },
    }
    doc["metadata"]["component"]["modelCard"] = card


def _add_data(doc: dict[str, Any], m: Manifest) -> None:
    sources = {f"data:{i}:{s.name}": s for i, s in enumerate(m.data.sources)}
    for comp in doc.get("components", []):
        src = sources.get(comp.get("bom-ref", ""))
        if src is None:
            continue
        comp["data"] = [{"type": "dataset", "name": src.name,
                         "description": (src.description or m.data.description or src.file)[:1000],
                         "classification": "synthetic" if m.data.synthetic else "real",
                         "governance": {"owners": [{"organization": {"name": src.citation[:200] or src.package}}]}}]
