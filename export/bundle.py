"""Export a trained artifact into a bundle: convert, gate on parity, add golden I/O, write, verify, publish.

The bundle is assembled in a temporary folder next to the destination, loaded back with ``medinfer.load``
(integrity + self-test), and only then moved into place. A failed gate leaves the previous bundle untouched.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import platform
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.integrity import contract_digest, outputs_digest, sha256_bytes
from medinfer.manifest import (
    MANIFEST_NAME,
    DataProvenance,
    Decision,
    Domain,
    FileEntry,
    Golden,
    Manifest,
    Metrics,
    Producer,
    TensorSpec,
    Variant,
    dump_manifest,
    parse_manifest,
)
from medinfer.schema import parse

from ..train.artifact import Artifact
from ..train.spec import Dataset, ModelSpec, OperatingPoint, ParityTolerance, Progress, quiet
from . import cpu_variants, parity, tails
from .canonical import canonicalize
from .card import render
from .change import ChangeRequest, change_fields
from .converters import convert, get_converter
from .domain_graph import add_domain_output
from .profiles import chosen_profile
from .requires import requirements
from .samples import build_sample
from .slice import build_slice_variants
from .variants import build_variants

log = logging.getLogger(__name__)
GOLDEN_SAMPLES = 4
DOMAIN_OUTPUT = "domain_score"
DOMAIN_SPEC = TensorSpec(DOMAIN_OUTPUT, "float32", ("N",),
                         description="distance of each sample from the training data (larger = further); "
                                     "in the domain when at most manifest.domain.threshold")


def _set_metadata(onx: Any, props: dict[str, str]) -> None:
    existing = {p.key: p for p in onx.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = onx.metadata_props.add()
            entry.key, entry.value = key, value


def _producer(spec: ModelSpec, onx: Any, frameworks: dict[str, str]) -> Producer:
    import onnx
    import onnxruntime

    converter = get_converter(spec.family).tool
    try:
        from importlib.metadata import version

        conv = {converter: version(converter)}
    except Exception:  # noqa: BLE001 - converter without metadata: record the name only
        conv = {converter: "unknown"}
    return Producer(
        medinfer=medinfer.__version__, onnx=onnx.__version__, onnxruntime=onnxruntime.__version__,
        opset={(o.domain or "ai.onnx"): int(o.version) for o in onx.opset_import},
        frameworks=frameworks, converter=conv, python=sys.version.split()[0], platform=platform.platform(),
    )


def _domain_section(art: Artifact) -> Domain:
    d = art.report["domain"]
    return Domain(output=DOMAIN_OUTPUT, threshold=float(d["threshold"]), coverage=float(d["coverage"]),
                  method=d.get("method") or art.spec.domain_method, calibration=d.get("calibration", {}),
                  evaluation=d.get("evaluation", {}))


def _contract(spec: ModelSpec, dataset: Dataset, point: OperatingPoint, domain: bool = False) -> dict[str, Any]:
    """The behaviour-defining part of the manifest (also digested into the ONNX metadata)."""
    from medinfer.schema import to_json

    decision = Decision(score_output=spec.score_output, label_output=spec.label_output,
                        positive_label=spec.positive_label, threshold=point.threshold,
                        rationale=point.rationale, evidence=spec.evidence)
    return {
        "name": spec.name, "version": spec.version, "task": spec.task,
        "inputs": to_json(spec.inputs(dataset)),
        "outputs": to_json(spec.outputs() + spec.extra_outputs() + ((DOMAIN_SPEC,) if domain else ())),
        "labels": list(spec.labels) if spec.labels else None, "decision": to_json(decision),
    }


def export(art: Artifact, out: str | Path = "bundles", *, progress: Progress = quiet,
           change: ChangeRequest | None = None) -> Path:
    """Convert, gate, and write ``out/<name>``; returns the bundle path. ``change`` names the parent bundle and the
    change log entry (see :mod:`medinfer.export.change`); every bundle declares a PCCP.

    Raises:
        ParityError: the exported graph does not reproduce the native model (nothing is written).
    """
    import onnx

    spec, ds = art.spec, art.dataset
    progress(f"[{spec.name}] converting ({spec.family})")
    onx = convert(spec, art.model, ds)
    spec.augment_graph(onx, art.model, ds)
    guard = art.domain
    if guard is not None:
        guard.sources = spec.domain_sources(onx)
        add_domain_output(onx, guard)

    def native(X: Any) -> dict[str, np.ndarray]:
        """The native model's outputs, and the guard's native domain score when there is one."""
        out = spec.native_outputs(art.model, X)
        return {**out, DOMAIN_OUTPUT: guard.score(X)} if guard is not None else out

    contract = _contract(spec, ds, art.point, guard is not None)
    _set_metadata(onx, {
        "medinfer.name": spec.name, "medinfer.version": spec.version,
        "medinfer.contract_sha256": contract_digest(contract), "medinfer.task": spec.task,
    })
    onx.producer_name, onx.producer_version = "medinfer", medinfer.__version__
    onx.doc_string = spec.description
    canonicalize(onx, spec.name)  # no random graph name, no set-ordered fields: same model, same bytes
    onnx.checker.check_model(onx)
    model_bytes = onx.SerializeToString()

    # Edge inputs: one array (``dataset.edge``), or named sets from the spec when they cannot share one array
    # (e.g. sequences of different lengths for a dynamic time axis).
    edge_sets = spec.parity_sets(ds)
    progress(f"[{spec.name}] parity gate on {len(ds.y_test)} held-out samples"
             + (f" + {sum(len(x) for x in edge_sets.values())} edge inputs" if edge_sets else ""))
    session = parity.ort_session(model_bytes)
    input_name = spec.inputs(ds)[0].name
    sets = {"heldout": (native(ds.X_test), parity.run_batched(session, input_name, ds.X_test))}
    for set_name, X_edge in edge_sets.items():
        sets[set_name] = (native(X_edge), parity.run_batched(session, input_name, X_edge))
    report = parity.gate(spec, sets, art.point.threshold)
    progress(f"[{spec.name}] parity passed: max abs diff {report['max_abs_diff']:.3g}, "
             f"{report['decision_flips']} decision flips over {report['n_samples']} inputs")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=out))
    try:
        golden_x = ds.X_test[:GOLDEN_SAMPLES]
        golden_names = [spec.score_output]
        golden_out = dict(zip(golden_names, session.run(golden_names, {input_name: golden_x})))
        variants, variant_files, variant_report, variant_goldens = build_variants(
            spec, ds, model_bytes, input_name, golden_x, art.point.threshold, progress,
            seed=int(art.report.get("seed") or 0))
        sample, sample_entry = build_sample(spec, ds.X_test, input_name, {
            "default": model_bytes, **{k: variant_files[v.file] for k, v in variants.items()}})
        profile = dataclasses.replace(
            chosen_profile(spec, model_bytes, input_name, sample[f"in.{input_name}"], progress),
            chunk=spec.chunk, max_batch=spec.max_batch)
        if spec.measure_profile:  # a sub-50 µs model: a setting that lowers p99.9 without raising p50 (tails.py)
            x1 = np.asarray(sample[f"in.{input_name}"][:1])
            profile = tails.tail_profile(profile, model_bytes, {input_name: x1.astype(object) if x1.dtype.kind == "U"
                                                                else x1}, [spec.score_output])
        report["variants"] = variant_report
        by_cpu, by_cpu_evidence = cpu_variants.preference(  # load(variant="auto"): the variant per CPU class
            {"default": model_bytes, **{k: variant_files[v.file] for k, v in variants.items()}},
            {input_name: sample[f"in.{input_name}"][:1]}, [spec.score_output], progress=progress, name=spec.name)
        profile = dataclasses.replace(profile, variant_by_cpu=by_cpu,
                                      measured={**profile.measured, "variant_by_cpu": by_cpu_evidence})
        progress(f"[{spec.name}] gating every shipped session (graph x profile) on the {len(ds.y_test)} held-out "
                 "samples")
        native_heldout = sets["heldout"][0]
        references = {"default": native_heldout}
        tolerances = {"default": spec.parity}
        for key, variant in variants.items():
            references[key] = parity.run_batched(parity.ort_session(variant_files[variant.file]), input_name,
                                                 ds.X_test)
            tolerances[key] = ParityTolerance(atol=variant.golden_atol or spec.parity.atol, rtol=spec.parity.rtol)
        report["profiles"] = parity.gate_profiles(
            spec, {"default": model_bytes, **{k: variant_files[v.file] for k, v in variants.items()}}, profile,
            input_name, ds.X_test, references, tolerances, art.point.threshold)
        slices, slice_files, slice_report, slice_goldens = build_slice_variants(
            spec, ds, model_bytes, {"default": Variant(file="model.onnx"), **variants}, profile, art.point.threshold,
            progress)
        report["variants"].update(slice_report)
        variants.update(slices)
        variant_files.update(slice_files)
        plots = _plots(spec, art, staging, progress)
        extra_golden = {f"@{k}.{name}": v for k, outs in variant_goldens.items() for name, v in outs.items()}
        extra_golden.update({f"@{k}.{name[4:]}": v for k, arrays in slice_goldens.items()
                             for name, v in arrays.items() if name.startswith("out.")})
        extra_inputs = {f"@{k}.{name[3:]}": v for k, arrays in slice_goldens.items()
                        for name, v in arrays.items() if name.startswith("in.")}
        files: dict[str, tuple[bytes, str]] = {
            "model.onnx": (model_bytes, "model"),
            **{name: (data, "variant") for name, data in variant_files.items()},
            "golden.npz": golden_npz({input_name: golden_x, **extra_inputs}, {**golden_out, **extra_golden}),
            sample_entry.file: (_npz(sample), "parity"),
            **{rel: ((staging / rel).read_bytes(), "plot") for rel in plots.values()},
        }
        fields = {
            **contract,
            "description": spec.description,
            "producer": _producer(spec, onx, art.report.get("frameworks", {})),
            "profile": profile,
            "variants": {"default": Variant(file="model.onnx", precision="fp32", description="the validated graph"),
                         **variants},
            "data": DataProvenance(sources=ds.sources, split=ds.split, synthetic=ds.synthetic,
                                   description=ds.description, preprocessing=ds.preprocessing),
            "metrics": parse(Metrics, art.report["metrics"], doc="train.json metrics"),
            "parity": report,
            "golden": golden_entry(golden_out, spec.parity.atol, spec.parity.rtol),
            "card": dataclasses.replace(spec.card, plots=plots),
            "domain": _domain_section(art) if guard is not None else None,
            "parity_sample": sample_entry,
            **change_fields(spec.name, spec.version, spec.task, art.report["metrics"], change),
        }
        write_bundle(staging, fields, files)

        progress(f"[{spec.name}] verifying the written bundle (sha256 of every file + golden self-test)")
        for key in ("default", *variants):
            medinfer.load(staging, variant=key)  # integrity + each variant's own golden self-test
        return publish(staging, out / spec.name)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def golden_npz(inputs: dict[str, Any], outputs: dict[str, np.ndarray]) -> tuple[bytes, str]:
    """The golden file entry: inputs under ``in.<name>``, expected outputs under ``out.<name>`` (and a variant's
    own under ``in@<variant>.<name>`` / ``out@<variant>.<name>``, given here as keys ``@<variant>.<name>``)."""
    arrays = {**{(f"in{k}" if k.startswith("@") else f"in.{k}"): v for k, v in inputs.items()},
              **{(f"out{k}" if k.startswith("@") else f"out.{k}"): v for k, v in outputs.items()}}
    return _npz(arrays), "golden"


def golden_entry(outputs: dict[str, np.ndarray], atol: float, rtol: float = 0.0) -> Golden:
    return Golden(file="golden.npz", output_digest=outputs_digest(outputs, tuple(outputs)), atol=atol, rtol=rtol,
                  outputs=tuple(outputs))


def write_bundle(folder: Path, fields: dict[str, Any], files: dict[str, tuple[bytes, str]]) -> Manifest:
    """Write ``files`` ({name: (bytes, role)}), the rendered model card and manifest.json into ``folder``.

    ``fields`` holds every manifest field except ``schema_version``, ``created`` and ``files``, which are
    filled in here (files pinned by sha256 and size), and ``requires``, derived from the graphs unless given.
    The manifest is validated by the runtime's schema.
    """
    from medinfer.schema import to_json

    folder = Path(folder)
    files = dict(files)
    if "requires" not in fields:
        fields = {**fields, "requires": requirements(b for b, role in files.values() if role in ("model", "variant"))}

    def build() -> Manifest:
        pinned = {n: FileEntry(sha256=sha256_bytes(b), size=len(b), role=r) for n, (b, r) in files.items()}
        data = {**fields, "schema_version": 1, "files": pinned, "created": fields.get("created") or build_time()}
        return parse_manifest(to_json(data))

    files["model_card.md"] = (render(build()).encode("utf-8"), "card")
    for name, (data, _) in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    manifest = build()
    (folder / MANIFEST_NAME).write_bytes(dump_manifest(manifest))
    return manifest


def build_time() -> str:
    """Now (UTC, ISO 8601), or ``$SOURCE_DATE_EPOCH`` when set (the reproducible-builds convention): the one
    time a bundle records (manifest ``created``)."""
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else datetime.now(timezone.utc)
    return when.isoformat(timespec="seconds")


def _plots(spec: ModelSpec, art: Artifact, staging: Path, progress: Progress) -> dict[str, str]:
    """Model-card figures (PNG) from the spec, if it draws any. Returns {title: relative path}."""
    folder = staging / "plots"
    folder.mkdir(exist_ok=True)
    progress(f"[{spec.name}] drawing model-card plots")
    drawn = spec.plots(art.model, art.dataset, folder, art.point)
    if art.domain is not None and art.domain_arrays:
        from ..train.domain import figure

        drawn["Applicability domain: who is flagged, and the error among the answered"] = figure(
            art.domain_arrays, art.report["domain"], folder / "domain.png")
    if not drawn:
        folder.rmdir()
    return drawn


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    plain = {k: np.asarray(v) for k, v in arrays.items()}
    # text as fixed-width unicode (loadable without pickle), as narrow as its longest string: the same strings give
    # the same bytes whether they came as objects or from a wider array (e.g. the artifact's held-out set)
    plain = {k: np.array(v.tolist(), dtype=str).reshape(v.shape) if v.dtype.kind in "OU" else v
             for k, v in plain.items()}
    np.savez(buf, **plain)
    return buf.getvalue()


def publish(staging: Path, dest: Path) -> Path:
    """Move the verified staging folder into place, replacing an older bundle only after success."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        if old.exists():
            shutil.rmtree(old)
        dest.rename(old)
    staging.chmod(0o755)
    staging.rename(dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest
