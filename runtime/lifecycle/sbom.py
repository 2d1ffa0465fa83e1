"""``medinfer sbom``: CycloneDX 1.6 (JSON) bills of materials, built with cyclonedx-python-lib ([lifecycle] extra).

- :func:`environment_bom`: the installed environment (a device install): every Python distribution with version,
  licence, purl, its supplier, and each of its files with its sha256 as a nested ``file`` component (native
  libraries such as onnxruntime's ``.so`` marked ``medinfer:native``; ``medinfer:record-match`` says whether the
  file still has the digest its installer recorded), the interpreter, and the dependency graph.
- :func:`bundle_bom`: one bundle as an ML-BOM: the ``machine-learning-model`` component (identity = sha256 of
  ``manifest.json``) with every file by sha256, its ``modelCard`` (task, inputs, outputs, datasets, held-out metrics
  with their 95 % CIs, intended use, limitations, ethical considerations), the datasets as ``data`` components
  (source package as purl, file sha256, licence, citation), and the producers (medinfer, onnx, onnxruntime, the
  framework and converter, with versions) as ``excluded``-scope components: they made the bundle, they do not ship.

cyclonedx-python-lib 11 has no model for ``modelCard`` and ``data``: those are added to the JSON it writes, and every
document is validated against the CycloneDX 1.6 JSON schema (the library's strict validator) before it is written.
"""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import medinfer
from medinfer.errors import MedinferError
from medinfer.extras import optional_import
from medinfer.integrity import sha256_file

NATIVE = re.compile(r"\.(so(\.\d+)*|dylib|dll|pyd)$")
_CANON = re.compile(r"[-_.]+")


def cdx() -> Any:
    optional_import("cyclonedx.model.bom", "lifecycle", "medinfer sbom")
    from cyclonedx import model
    from cyclonedx.model import bom, component

    return model, bom, component


def canonical(name: str) -> str:
    return _CANON.sub("-", name).lower()


def purl(name: str, version: str) -> Any:
    from packageurl import PackageURL

    return PackageURL(type="pypi", name=canonical(name), version=version)


def _licences(meta: Any) -> list[Any]:
    from cyclonedx.factory.license import LicenseFactory

    text = meta.get("License-Expression") or ""
    if not text:
        lic = (meta.get("License") or "").strip()
        text = lic if lic and len(lic) < 100 and "\n" not in lic else ""
    if not text:
        classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
        text = classifiers[0] if classifiers else ""
    return [LicenseFactory().make_from_string(text)] if text else []


def sha256_hash(hexdigest: str) -> Any:
    model, _, _ = cdx()
    return model.HashType(alg=model.HashAlgorithm.SHA_256, content=hexdigest)


def _record_sha256(entry: Any) -> str | None:
    """The sha256 the installer recorded (RECORD's urlsafe base64), as hex."""
    import base64

    h = getattr(entry, "hash", None)
    if h is None or h.mode != "sha256":
        return None
    return base64.urlsafe_b64decode(h.value + "=" * (-len(h.value) % 4)).hex()


def _file_components(dist: Any) -> list[Any]:
    model, _, component = cdx()
    out = []
    for entry in sorted(dist.files or [], key=str):
        path = Path(str(dist.locate_file(entry)))
        if not path.is_file() or path.suffix == ".pyc":
            continue
        digest = sha256_file(path)
        recorded = _record_sha256(entry)
        props = [model.Property(name="medinfer:native", value="true")] if NATIVE.search(path.name) else []
        if recorded is not None:
            props.append(model.Property(name="medinfer:record-match", value=str(recorded == digest).lower()))
        out.append(component.Component(type=component.ComponentType.FILE, name=str(entry), hashes=[
            sha256_hash(digest)], properties=props, bom_ref=f"file:{canonical(dist.metadata['Name'])}:{entry}"))
    return out


def environment_bom(distributions: list[str] | None = None) -> dict[str, Any]:
    """The CycloneDX document of this Python environment (``distributions``: only these, by name).

    Raises:
        MissingExtraError: cyclonedx-python-lib is not installed (the [lifecycle] extra).
    """
    model, bom_mod, component = cdx()
    wanted = {canonical(d) for d in distributions} if distributions else None
    dists: dict[str, Any] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and (wanted is None or canonical(name) in wanted):
            dists.setdefault(canonical(name), dist)
    missing = sorted((wanted or set()) - set(dists))
    if missing:
        raise MedinferError(f"no installed distribution named {', '.join(missing)}")
    bom = bom_mod.Bom()
    root = component.Component(type=component.ComponentType.APPLICATION, name="medinfer device environment",
                               version=medinfer.__version__, bom_ref="environment",
                               description=f"Python {sys.version.split()[0]} on {sys.platform}: {sys.prefix}")
    bom.metadata.component = root
    by_name = {}
    for key, dist in sorted(dists.items()):
        meta = dist.metadata
        supplier = meta.get("Author") or meta.get("Maintainer") or meta.get("Author-email") or ""
        comp = component.Component(
            type=component.ComponentType.LIBRARY, name=meta["Name"], version=dist.version,
            purl=purl(meta["Name"], dist.version), bom_ref=f"pkg:pypi/{key}@{dist.version}",
            licenses=_licences(meta), description=(meta.get("Summary") or "")[:500] or None,
            publisher=supplier[:200] or None, components=_file_components(dist))
        bom.components.add(comp)
        by_name[key] = comp
    bom.register_dependency(root, list(by_name.values()))
    for key, dist in dists.items():
        needs = [by_name[n] for n in _requirements(dist) if n in by_name and n != key]
        bom.register_dependency(by_name[key], needs)
    python = component.Component(type=component.ComponentType.PLATFORM, name="python",
                                 version=sys.version.split()[0], bom_ref="python",
                                 purl=None, description=sys.version.replace("\n", " "))
    bom.components.add(python)
    return validated(to_json(bom))


def _requirements(dist: Any) -> list[str]:
    """Names of the distributions ``dist`` requires in this environment (extras' requirements excluded)."""
    names = []
    for req in dist.requires or []:
        if "extra ==" in req.replace(" ", "").replace("extra==", "extra =="):
            continue
        names.append(canonical(re.split(r"[\s;<>=!~\[(]", req.strip(), maxsplit=1)[0]))
    return names


def to_json(bom: Any) -> dict[str, Any]:
    from cyclonedx.output.json import JsonV1Dot6

    return json.loads(JsonV1Dot6(bom).output_as_string())  # type: ignore[no-any-return]


def validated(doc: dict[str, Any]) -> dict[str, Any]:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))
    if error is not None:
        raise MedinferError(f"medinfer built a CycloneDX document that does not validate (please report it): "
                            f"{error}")
    return doc


def write_sboms(out: str | Path, bundles: list[Path], *, environment: bool = True,
                distributions: list[str] | None = None) -> list[Path]:
    """Write ``environment.cdx.json``, ``<bundle>.cdx.json`` per bundle and the SOUP register (``soup.md``,
    ``soup.json``) into ``out``; returns the paths written."""
    from .mlbom import bundle_bom
    from .soup import soup_register, write_soup

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    env = environment_bom(distributions) if environment else None
    if env is not None:
        written.append(_dump(out / "environment.cdx.json", env))
    docs = []
    for bundle in bundles:
        doc = bundle_bom(bundle)
        docs.append(doc)
        name = doc["metadata"]["component"]["name"]
        written.append(_dump(out / f"{name}.cdx.json", doc))
    if env is not None:
        written += write_soup(out, soup_register(env, docs))
    return written


def _dump(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return path
