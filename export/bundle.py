"""Export a trained artifact into a bundle: a short pipeline of named stages.

    convert (+ domain guard, metadata, canonical bytes) -> parity gate -> explanation (its graphs, gated) ->
    session profile -> tails (a sub-50 µs model's batch-1 threading) -> variants (each registered builder the spec
    asks for: medinfer.export.variants) -> variant per CPU class (load(variant="auto")) -> parity sample -> gate
    every shipped session -> write (golden, plots, card, manifest, change control) -> verify (load every variant
    back) -> publish

The bundle is assembled in a temporary folder next to the destination, loaded back with ``medinfer.load``
(integrity + self-test), and only then moved into place. A failed gate leaves the previous bundle untouched.
Model-specific variants (the CT's whole-slice graphs) are registrations, not steps of this pipeline.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import medinfer
import numpy as np
from medinfer.build_records import ParitySample
from medinfer.codings import Codings
from medinfer.integrity import CONTRACT_SCHEME, CONTRACT_SCHEME_KEY, contract_digest
from medinfer.manifest import DataProvenance, Decision, Domain, Metrics, Producer, SessionProfile, TensorSpec, Variant
from medinfer.samples import Pair
from medinfer.schema import parse

from ..train.artifact import Artifact
from ..train.spec import Dataset, ModelSpec, OperatingPoint, ParityTolerance, Progress, quiet
from . import cpu_variants, parity, tails
from .canonical import canonicalize
from .change import ChangeRequest, change_fields
from .converters import convert, get_converter
from .domain_graph import add_domain_output
from .explain import build_explanation
from .feeds import feeds, n_rows, rows, take
from .profiles import chosen_profile
from .samples import build_sample, sample_indices
from .variants import VariantJob, build_variants
from .writer import golden_entry, golden_npz, publish, write_bundle

__all__ = ["export", "golden_entry", "golden_npz", "publish", "write_bundle"]

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


def _guarded(contract: dict[str, Any], art: Artifact) -> dict[str, Any]:
    """The contract with the guard's settings the digest's scheme 2 covers (medinfer.integrity.guard_settings):
    the domain section as the manifest will hold it, the spec's memory bounds, and no per-call bound on a variant
    without a contract of its own (the whole-slice variant's bound is in its own digest)."""
    from medinfer.schema import to_json

    domain = to_json(_domain_section(art)) if art.domain is not None else None
    return {**contract, "domain": domain, "profile": {"chunk": art.spec.chunk, "max_batch": art.spec.max_batch},
            "variants": {}}


@dataclass
class Build:
    """What the stages of one export hand on to each other."""

    art: Artifact
    graph: bytes = b""
    onx: Any = None
    input_name: str = ""
    contract: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)  # the parity report
    native_heldout: dict[str, np.ndarray] = field(default_factory=dict)
    golden_x: Any = None
    golden_out: dict[str, np.ndarray] = field(default_factory=dict)
    profile: SessionProfile = field(default_factory=SessionProfile)
    variants: dict[str, Variant] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # the variants' graphs by file name
    goldens: dict[str, Pair] = field(default_factory=dict)  # each variant's own golden inputs and outputs
    sample: dict[str, np.ndarray] = field(default_factory=dict)
    sample_entry: ParitySample | None = None
    explanation: Any = None  # the manifest's explanation entry (None: the spec explains nothing)
    explain_files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    change: ChangeRequest | None = None  # the parent bundle and the change log entry (change control)

    @property
    def spec(self) -> ModelSpec:
        return self.art.spec

    def patch_graphs(self) -> dict[str, bytes]:
        """The graphs that take the model's own inputs: the fp32 graph and the variants without a contract of
        their own (a whole-slice graph has one)."""
        return {"default": self.graph, **{k: self.files[v.file] for k, v in self.variants.items() if v.inputs is None}}


def export(art: Artifact, out: str | Path = "bundles", *, progress: Progress = quiet,
           change: ChangeRequest | None = None, graph: Any = None) -> Path:
    """Convert, gate, and write ``out/<name>``; returns the bundle path (the stages: the module docstring).
    ``change`` names the parent bundle and the change log entry (see :mod:`medinfer.export.change`); every bundle
    declares a PCCP. ``graph``: the ``onnx.ModelProto`` the spec's converter made already (a brought model is
    converted while its contract is inferred: :mod:`medinfer.export.bring`), else the converter runs here.

    Raises:
        ParityError: the exported graph (or a shipped session of it) does not reproduce the native model; nothing
            is written.
    """
    build = convert_graph(art, progress, graph)
    build.change = change
    gate_parity(build, progress)
    explain(build, progress)
    choose_profile(build, progress)
    shorten_tails(build)
    make_variants(build, progress)
    prefer_variant_per_cpu(build, progress)
    take_parity_sample(build)
    gate_sessions(build, progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{art.spec.name}.", dir=out))
    try:
        write(build, staging, progress)
        verify(build, staging, progress)
        return publish(staging, out / art.spec.name)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def convert_graph(art: Artifact, progress: Progress, graph: Any = None) -> Build:
    """Convert the native model (+ the spec's extra outputs and the domain guard), stamp the contract into the
    graph's metadata, and make its bytes canonical (same model, same bytes). ``graph``: converted already."""
    import onnx

    spec, ds = art.spec, art.dataset
    if graph is None:
        progress(f"[{spec.name}] converting ({spec.family})")
    onx = convert(spec, art.model, ds) if graph is None else graph
    spec.augment_graph(onx, art.model, ds)
    if art.domain is not None:
        art.domain.sources = spec.domain_sources(onx)
        add_domain_output(onx, art.domain)
    contract = _contract(spec, ds, art.point, art.domain is not None)
    _set_metadata(onx, {"medinfer.name": spec.name, "medinfer.version": spec.version,
                        "medinfer.contract_sha256": contract_digest(_guarded(contract, art), CONTRACT_SCHEME),
                        CONTRACT_SCHEME_KEY: CONTRACT_SCHEME, "medinfer.task": spec.task})
    onx.producer_name, onx.producer_version = "medinfer", medinfer.__version__
    onx.doc_string = spec.description
    canonicalize(onx, spec.name)  # no random graph name, no set-ordered fields: same model, same bytes
    onnx.checker.check_model(onx)
    return Build(art, onx.SerializeToString(), onx, spec.inputs(ds)[0].name, contract)


def _native(art: Artifact, X: Any) -> dict[str, np.ndarray]:
    """The native model's outputs, and the guard's native domain score when there is one."""
    out = art.spec.native_outputs(art.model, X)
    return {**out, DOMAIN_OUTPUT: art.domain.score(X)} if art.domain is not None else out


def gate_parity(build: Build, progress: Progress) -> None:
    """The fail-closed parity gate on the whole held-out set and the spec's edge inputs (one array, or named sets
    when they cannot share one, e.g. sequences of different lengths); the golden outputs come from the same session."""
    spec, ds = build.spec, build.art.dataset
    edge_sets = spec.parity_sets(ds)
    progress(f"[{spec.name}] parity gate on {n_rows(ds.X_test)} held-out samples"
             + (f" + {sum(n_rows(x) for x in edge_sets.values())} edge inputs" if edge_sets else ""))
    session = parity.ort_session(build.graph)
    sets = {"heldout": (_native(build.art, ds.X_test), parity.run_batched(session, build.input_name, ds.X_test))}
    for set_name, X_edge in edge_sets.items():
        sets[set_name] = (_native(build.art, X_edge), parity.run_batched(session, build.input_name, X_edge))
    build.report = parity.gate(spec, sets, build.art.point.threshold)
    build.native_heldout = sets["heldout"][0]
    progress(f"[{spec.name}] parity passed: max abs diff {build.report['max_abs_diff']:.3g}, "
             f"{build.report['decision_flips']} decision flips over {build.report['n_samples']} inputs")
    build.golden_x = rows(ds.X_test, 0, GOLDEN_SAMPLES)
    names = [spec.score_output]
    build.golden_out = dict(zip(names, session.run(names, feeds(build.input_name, build.golden_x))))


def explain(build: Build, progress: Progress) -> None:
    """The bundle's explanation graphs and files, made and gated here (the device only runs them)."""
    art = build.art
    build.explanation, build.explain_files = build_explanation(
        art.spec, art.model, art.dataset, build.onx, build.graph, {p.key: p.value for p in build.onx.metadata_props},
        seed=int(art.report.get("seed") or 0), golden_x=build.golden_x, progress=progress)


def choose_profile(build: Build, progress: Progress) -> None:
    """The session profile to ship, measured on held-out inputs (the parity sample's rows), with the spec's
    memory bounds."""
    spec, X = build.spec, build.art.dataset.X_test
    held = take(X, sample_indices(X))
    build.profile = dataclasses.replace(chosen_profile(spec, build.graph, build.input_name, held, progress),
                                        chunk=spec.chunk, max_batch=spec.max_batch)


def _batch1(build: Build) -> dict[str, Any]:
    """One held-out row (the parity sample's first) as the graphs' feed: the input of the batch-1 measurements."""
    X = build.art.dataset.X_test
    return feeds(build.input_name, take(X, sample_indices(X)[:1]))


def shorten_tails(build: Build) -> None:
    """A model that takes under 50 µs at batch 1 ships the batch-1 threading that lowers its p99.9 without raising
    its p50, when one does (:mod:`medinfer.export.tails`; the evidence in ``profile.measured["tails"]``)."""
    if build.spec.measure_profile:
        build.profile = tails.tail_profile(build.profile, build.graph, _batch1(build), [build.spec.score_output])


def make_variants(build: Build, progress: Progress) -> None:
    """Every variant the spec asks for, by its registered builder (each gates its own)."""
    art = build.art
    job = VariantJob(art.spec, art.dataset, build.graph, build.input_name, build.golden_x, art.point.threshold,
                     build.profile, seed=int(art.report.get("seed") or 0), progress=progress, guard=art.domain)
    build.variants, build.files, build.report["variants"], build.goldens = build_variants(job)


def prefer_variant_per_cpu(build: Build, progress: Progress) -> None:
    """``profile.variant_by_cpu``: the patch variant ``load(variant="auto")`` runs on each CPU class, by measurement
    on this CPU (:mod:`medinfer.export.cpu_variants`; the evidence in ``profile.measured["variant_by_cpu"]``)."""
    by_cpu, evidence = cpu_variants.preference(build.patch_graphs(), _batch1(build), [build.spec.score_output],
                                               progress=progress, name=build.spec.name)
    build.profile = dataclasses.replace(build.profile, variant_by_cpu=by_cpu,
                                        measured={**build.profile.measured, "variant_by_cpu": evidence})


def take_parity_sample(build: Build) -> None:
    """A seeded sample of the held-out set with every patch graph's CPU outputs (``parity.npz``)."""
    build.sample, build.sample_entry = build_sample(build.spec, build.art.dataset.X_test, build.input_name,
                                                    build.patch_graphs())


def gate_sessions(build: Build, progress: Progress) -> None:
    """Every session a device will build — each patch graph under each shipped profile — on the held-out set."""
    spec, ds = build.spec, build.art.dataset
    progress(f"[{spec.name}] gating every shipped session (graph x profile) on the {n_rows(ds.X_test)} held-out "
             "samples")
    graphs = build.patch_graphs()
    references = {"default": build.native_heldout}
    tolerances = {"default": spec.parity}
    for key in graphs.keys() - {"default"}:
        references[key] = parity.run_batched(parity.ort_session(graphs[key]), build.input_name, ds.X_test)
        tolerances[key] = ParityTolerance(atol=build.variants[key].golden_atol or spec.parity.atol,
                                          rtol=spec.parity.rtol)
    build.report["profiles"] = parity.gate_profiles(spec, graphs, build.profile, build.input_name, ds.X_test,
                                                    references, tolerances, build.art.point.threshold)


def write(build: Build, staging: Path, progress: Progress) -> None:
    """The bundle's files (graphs, golden, parity sample, plots) and its manifest and card, into ``staging``."""
    from medinfer.samples import npz_bytes

    art, spec = build.art, build.spec
    plots = _plots(spec, art, staging, progress)
    files: dict[str, tuple[bytes, str]] = {
        "model.onnx": (build.graph, "model"),
        **{name: (data, "variant") for name, data in build.files.items()},
        "golden.npz": golden_npz(feeds(build.input_name, build.golden_x), build.golden_out, build.goldens),
        **({build.sample_entry.file: (npz_bytes(build.sample), "parity")} if build.sample_entry else {}),
        **{rel: ((staging / rel).read_bytes(), "plot") for rel in plots.values()},
        **build.explain_files,
    }
    write_bundle(staging, _fields(build, plots), files)


def _fields(build: Build, plots: dict[str, str]) -> dict[str, Any]:
    art, spec, ds = build.art, build.spec, build.art.dataset
    return {
        **build.contract,
        "description": spec.description,
        "producer": _producer(spec, build.onx, art.report.get("frameworks", {})),
        "profile": build.profile,
        "variants": {"default": Variant(file="model.onnx", precision="fp32", description="the validated graph"),
                     **build.variants},
        "data": DataProvenance(sources=ds.sources, split=ds.split, synthetic=ds.synthetic,
                               description=ds.description, preprocessing=ds.preprocessing),
        "metrics": parse(Metrics, art.report["metrics"], doc="train.json metrics"),
        "parity": build.report,
        "golden": golden_entry(build.golden_out, spec.parity.atol, spec.parity.rtol),
        "card": dataclasses.replace(spec.card, plots=plots),
        "domain": _domain_section(art) if art.domain is not None else None,
        "parity_sample": build.sample_entry,
        "codings": spec.codings or Codings(),  # written even when empty: no fallback for a new bundle
        **change_fields(spec.name, spec.version, spec.task, art.report["metrics"], build.change),
        "explanation": build.explanation,
    }


def verify(build: Build, staging: Path, progress: Progress) -> None:
    """Load the written bundle back, every variant: the sha256 of every file and each variant's golden self-test."""
    progress(f"[{build.spec.name}] verifying the written bundle (sha256 of every file + golden self-test)")
    for key in ("default", *build.variants):
        medinfer.load(staging, variant=key)


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
