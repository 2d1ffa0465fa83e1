"""The SOUP register (IEC 62304 §5.3.3, §7.1.2: software of unknown provenance), derived from the SBOMs.

One row per third-party distribution of the environment SBOM: name, version, licence, purl, supplier, why medinfer
has it (the base install, an extra, or a transitive dependency), the requirement medinfer places on it and how that
requirement is verified. onnxruntime's requirement comes from the bundles: the oldest release their ``requires``
accept, and the operators their graphs use (e.g. ``onnxruntime >= 1.18: ai.onnx.ml TreeEnsembleClassifier``).
``soup.json`` holds the rows for machines, ``soup.md`` a table for the technical file. Known anomalies (§7.1.3) are
the manufacturer's review of each supplier's published issues for the listed version: the column is left to fill.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from .sbom import canonical

#: What medinfer uses each extra for (the requirement on the distributions it brings).
EXTRA_PURPOSE = {
    "train": "training and export on a build machine (never on a device)",
    "dicom": "reading CT slices and writing DICOM SR / Parametric Map / Secondary Capture",
    "fhir": "FHIR R4 resource models and validation of every result bundle",
    "sign": "Ed25519 key generation and bundle signing (verification is medinfer's own code)",
    "serve": "the HTTP inference server and its Prometheus metrics",
    "triton": "the Triton client in tests and the decision graph of export-triton",
    "score": "batch scoring of Parquet/CSV archives",
    "dask": "distributed batch scoring",
    "spark": "distributed batch scoring",
    "lifecycle": "TUF secure updates (python-tuf) and CycloneDX SBOMs (cyclonedx-python-lib)",
    "dev": "tests, lint, type checks, import contracts (never on a device)",
}
BASE_PURPOSE = {
    "numpy": "arrays for input validation, the decision rule and the golden self-test comparison",
    "onnxruntime": "executes the bundle graphs",
}


def _medinfer_requirements() -> dict[str, list[tuple[str, str]]]:
    """{distribution: [(extra or 'base', specifier)]} from medinfer's own metadata."""
    out: dict[str, list[tuple[str, str]]] = {}
    try:
        requires = metadata.requires("medinfer") or []
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
        requires = []
    for req in requires:
        spec, _, marker = req.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        name = canonical(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0])
        version = spec.strip()[len(name):].strip() if spec.strip().lower().startswith(name) else ""
        out.setdefault(name, []).append((extra.group(1) if extra else "base", version.strip("[]") or "any"))
    return out


def _onnxruntime_requirement(bundles: list[dict[str, Any]]) -> str:
    parts, oldest = [], []
    for doc in bundles:
        comp = doc["metadata"]["component"]
        props = {p["name"]: p["value"] for p in comp.get("properties", [])}
        if "medinfer:requires-onnxruntime" in props:
            oldest.append(props["medinfer:requires-onnxruntime"])
        ops = "; ".join(f"{k.split(':', 2)[2]}: {v}" for k, v in props.items() if k.startswith("medinfer:operators:"))
        parts.append(f"{comp['name']} {comp['version']}" + (f" ({ops})" if ops else ""))
    if not parts:
        return ""
    floor = max(oldest, key=lambda v: tuple(int(x) for x in v.split("."))) if oldest else "(none declared)"
    return f"onnxruntime >= {floor}: runs " + "; ".join(parts)


def soup_register(environment: dict[str, Any], bundles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The register's rows from an environment SBOM and the bundles' ML-BOMs."""
    requirements = _medinfer_requirements()
    by_ref = {c["bom-ref"]: c for c in environment.get("components", [])}
    needed_by: dict[str, list[str]] = {}
    for dep in environment.get("dependencies", []):
        parent = by_ref.get(dep["ref"])
        for child in dep.get("dependsOn", []):
            if parent is not None and child in by_ref:
                needed_by.setdefault(child, []).append(parent["name"])
    rows = []
    for comp in environment.get("components", []):
        if comp.get("type") != "library" or canonical(comp["name"]) == "medinfer":
            continue
        name = canonical(comp["name"])
        direct = requirements.get(name, [])
        why = ", ".join(f"medinfer {'base install' if e == 'base' else f'[{e}]'} ({spec})" for e, spec in direct) \
            or "transitive: needed by " + ", ".join(sorted(set(needed_by.get(comp["bom-ref"], []))) or ["(none)"])
        requirement = BASE_PURPOSE.get(name, "")
        if not requirement and direct:
            requirement = "; ".join(EXTRA_PURPOSE.get(e, e) for e, _ in direct if e != "base")
        if name == "onnxruntime" and bundles:
            requirement = _onnxruntime_requirement(bundles) + " — " + requirement
        verification = ("golden self-test at every load (medinfer.load); parity gate at export" if name == "onnxruntime"
                        else "the test suite (make test; make test-device for the base install)" if direct
                        else "through the tests of the distribution that needs it")
        licences = [lic.get("license", {}).get("id") or lic.get("license", {}).get("name") or lic.get("expression")
                    for lic in comp.get("licenses", [])]
        rows.append({"name": comp["name"], "version": comp.get("version", ""), "purl": comp.get("purl", ""),
                     "licence": ", ".join(str(x) for x in licences if x) or "not declared",
                     "supplier": comp.get("publisher", ""), "why": why, "requirement": requirement or
                     "no direct use by medinfer", "verification": verification, "known_anomalies_reviewed": ""})
    return rows


def write_soup(out: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """Write ``soup.json`` and ``soup.md``; returns their paths."""
    json_path, md_path = out / "soup.json", out / "soup.md"
    json_path.write_text(json.dumps({"register": "SOUP (IEC 62304)", "items": rows}, indent=2) + "\n")
    head = ["name", "version", "licence", "why", "requirement", "verification", "known anomalies reviewed"]
    lines = ["# SOUP register", "", "Derived from environment.cdx.json by `medinfer sbom`; fill in the review of "
             "each supplier's known anomalies for the listed version (IEC 62304 §7.1.3).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], r["version"], r["licence"], r["why"], r["requirement"], r["verification"],
                 r["known_anomalies_reviewed"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    md_path.write_text("\n".join(lines) + "\n")
    return [json_path, md_path]
