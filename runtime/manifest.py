"""The bundle manifest (``manifest.json``), schema version 1.

The frozen dataclasses below are the schema: :func:`load_manifest` refuses any document that does not fit them,
naming the offending field. The exporter builds the same dataclasses, so a written manifest is valid by
construction. See docs in the README ("Bundle format") for the meaning of each section.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .build_records import (
    Baseline,
    DataProvenance,
    DataSource,
    Metric,
    Metrics,
    ParityReport,
    ParitySample,
    Producer,
    ProfileEvidence,
    Reproducibility,
    Requires,
)
from .change import Lineage, Pccp
from .codings import Codings
from .decision import score_column
from .errors import ManifestError
from .explain_spec import ExplanationEntry
from .files import read_regular_file
from .schema import parse, to_json

__all__ = ["MANIFEST_NAME", "SCHEMA_VERSION", "SIGNATURE_NAME", "Baseline", "Card", "DataProvenance", "DataSource",
           "Decision", "Domain", "Evidence", "FileEntry", "Golden", "Manifest", "Metric", "Metrics", "ParityReport",
           "ParitySample", "Producer", "ProfileEvidence", "Reproducibility", "Requires", "SessionProfile",
           "TensorSpec", "Variant", "decode_manifest", "dump_manifest", "load_manifest", "parse_manifest",
           "read_manifest_bytes"]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"

DType = Literal["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool", "string"]
Task = Literal["binary_classification", "multiclass_classification", "regression"]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_RELEASE = re.compile(r"^\d+\.\d+(\.\d+)?$")


def _bad(doc: str, path: str, message: str) -> ManifestError:
    return ManifestError(f"{doc}: field '{path}' {message}")


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle, pinned by digest."""

    sha256: str
    size: int
    role: Literal["model", "variant", "card", "golden", "parity", "plot", "explain", "other"] = "other"

    def _check(self, doc: str, path: str) -> None:
        if not _SHA256.match(self.sha256):
            raise _bad(doc, f"{path}.sha256", f"must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.size < 0:
            raise _bad(doc, f"{path}.size", f"must be >= 0, got {self.size}")


@dataclass(frozen=True)
class TensorSpec:
    """An input or output tensor: the contract the runtime validates against."""

    name: str
    dtype: DType
    shape: tuple[int | str, ...]
    description: str = ""
    units: str | None = None
    range: tuple[float, float] | None = None
    names: tuple[str, ...] | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    # Per feature of the last axis: [low, high] each (e.g. a glucose sensor's 39..600 mg/dL); checked on top of
    # ``range``, the offending feature named in the error.
    feature_ranges: tuple[tuple[float, float], ...] | None = None

    def _check(self, doc: str, path: str) -> None:
        for i, dim in enumerate(self.shape):
            if isinstance(dim, int) and dim <= 0:
                raise _bad(doc, f"{path}.shape[{i}]", f"must be a positive size or a symbolic name, got {dim}")
        if self.range is not None:
            if len(self.range) != 2 or not self.range[0] <= self.range[1]:
                raise _bad(doc, f"{path}.range", f"must be [low, high] with low <= high, got {list(self.range)}")
        if self.names is not None:
            if not self.shape or self.shape[-1] != len(self.names):
                raise _bad(
                    doc, f"{path}.names", f"has {len(self.names)} names but the last axis is {self.shape[-1:]}"
                )
            if len(set(self.names)) != len(self.names):
                raise _bad(doc, f"{path}.names", "must not repeat a name")
        if self.feature_ranges is not None:
            if not self.shape or self.shape[-1] != len(self.feature_ranges):
                raise _bad(doc, f"{path}.feature_ranges", f"has {len(self.feature_ranges)} ranges but the last axis is "
                                                          f"{self.shape[-1:]}")
            for i, pair in enumerate(self.feature_ranges):
                if len(pair) != 2 or not pair[0] <= pair[1]:
                    raise _bad(doc, f"{path}.feature_ranges[{i}]", f"must be [low, high], got {list(pair)}")

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class Evidence:
    """A graph output that measures how much information a sample carries (e.g. known words in a text); below
    ``minimum`` the sample gets no answer (NoInformationError), never a confident label."""

    output: str
    minimum: float
    meaning: str = ""

    def _check(self, doc: str, path: str) -> None:
        if not math.isfinite(self.minimum):
            raise _bad(doc, f"{path}.minimum", f"must be a finite number, got {self.minimum}")


@dataclass(frozen=True)
class Decision:
    """How raw outputs become a decision: which output holds scores and where the operating point is."""

    score_output: str
    label_output: str | None = None
    positive_label: str | None = None
    threshold: float | None = None
    rationale: str = ""
    evidence: Evidence | None = None

    def _check(self, doc: str, path: str) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise _bad(doc, f"{path}.threshold", f"must be within [0, 1], got {self.threshold}")


@dataclass(frozen=True)
class SessionProfile:
    """onnxruntime session options chosen by measurement; ``load()`` applies them unless overridden."""

    intra_op_num_threads: int = 0
    inter_op_num_threads: int = 0
    allow_spinning: bool = True
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    deterministic: bool = False
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A second session for batches of at least ``large_batch_from`` samples, with these settings overridden
    # (measured: e.g. the LSTM wants 1 thread at batch 1 but all cores at batch 64). 0 / {}: one session.
    large_batch_from: int = 0
    large_batch: dict[str, Any] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)
    # Memory bounds: a batch runs in chunks of at most ``chunk`` samples (onnxruntime's working memory grows with
    # the batch), and more than ``max_batch`` samples in one call are refused.
    chunk: int = 256
    max_batch: int = 65536
    # True: onnxruntime's own default SessionOptions (no thread, spinning, optimisation-level or execution-mode
    # setting): the export found no setting that beats them by a margin that survives noise (``evidence``).
    onnxruntime_defaults: bool = False
    evidence: ProfileEvidence | None = None
    # CPU class -> the variant ``load(variant="auto")`` runs there (medinfer.cpu_class); empty: the fp32 graph.
    variant_by_cpu: dict[str, str] = field(default_factory=dict)

    def _check(self, doc: str, path: str) -> None:
        if self.chunk < 1 or self.max_batch < 1:
            raise _bad(doc, f"{path}.chunk", f"chunk and max_batch must be >= 1, got {self.chunk}, {self.max_batch}")


@dataclass(frozen=True)
class Variant:
    """One runnable graph of the bundle (fp32 default, int8, ...)."""

    file: str
    precision: str = "fp32"
    description: str = ""
    accuracy_delta: dict[str, float] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    # The variant's own expected golden output (golden.npz keys "out@<variant>.<output>") and tolerance;
    # empty / None: the default variant's.
    golden_digest: str = ""
    golden_atol: float | None = None
    # A graph with its own contract (lung_nodule_cnn's whole-slice graph): these inputs and outputs replace the
    # model's when this variant runs; ``windows_of`` names the variant whose per-window answers it gives in one
    # pass; ``max_elements`` bounds each input of a call (the memory of an input whose size is free).
    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None
    windows_of: str | None = None
    max_elements: int | None = None


@dataclass(frozen=True)
class Golden:
    """A known input and the output it must produce: the readiness self-test."""

    file: str
    output_digest: str
    atol: float
    rtol: float = 0.0
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Card:
    summary: str
    intended_use: str
    out_of_scope: tuple[str, ...] = ()
    limitations: tuple[str, ...] = ()
    ethical_considerations: tuple[str, ...] = ()
    plots: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Domain:
    """The applicability-domain guard: the graph output ``output`` scores each sample's distance from the training
    data (larger = further); a sample is in the domain when its score is at most ``threshold``, chosen on held-out
    in-domain data to accept ``coverage`` of it. ``evaluation`` holds what was measured (acceptance, AUROC per
    shifted set, the selective-prediction curve)."""

    output: str
    threshold: float
    coverage: float
    method: str
    calibration: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    def _check(self, doc: str, path: str) -> None:
        if not 0.0 < self.coverage <= 1.0:
            raise _bad(doc, f"{path}.coverage", f"must be in (0, 1], got {self.coverage}")
        # a distance from the training data: NaN would compare false (every sample "outside" to in_domain, none
        # refused by a policy), a negative one refuses everything
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and self.threshold >= 0):
            raise _bad(doc, f"{path}.threshold", f"must be a finite number >= 0 (a domain score), got {self.threshold}")


@dataclass(frozen=True)
class Manifest:
    """The whole contract of a bundle. Build it with :func:`load_manifest` or the exporter."""

    schema_version: int
    name: str
    version: str
    task: Task
    created: str
    producer: Producer
    files: dict[str, FileEntry]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    decision: Decision
    profile: SessionProfile
    variants: dict[str, Variant]
    data: DataProvenance
    metrics: Metrics
    parity: ParityReport
    golden: Golden
    card: Card
    labels: tuple[str, ...] | None = None
    description: str = ""
    domain: Domain | None = None  # bundles built before the domain guard have none (and still load)
    requires: Requires | None = None
    parity_sample: ParitySample | None = None  # written since issue 14; older bundles have none
    reproducibility: Reproducibility | None = None  # only after `medinfer build --check-reproducible` passed
    codings: Codings | None = None  # what results mean in FHIR / DICOM; bundles written before it: codings.py
    lineage: Lineage | None = None  # parent, change log, release counter (change control); older bundles have none
    pccp: Pccp | None = None  # acceptance criteria for a successor, declared at export (medinfer diff)
    explanation: ExplanationEntry | None = None  # how the bundle explains its answers (explain_spec.py); older: none

    def _check(self, doc: str, path: str) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ManifestError(
                f"{doc}: schema_version {self.schema_version} is not supported by this medinfer "
                f"(supports {SCHEMA_VERSION}); use a medinfer release that reads it"
            )
        if not _NAME.match(self.name):
            raise _bad(doc, "name", f"must be lowercase letters, digits and '_', got {self.name!r}")
        if not self.inputs:
            raise _bad(doc, "inputs", "must list at least one input")
        outputs = {o.name for o in self.outputs}
        if self.decision.score_output not in outputs:
            raise _bad(doc, "decision.score_output", f"names {self.decision.score_output!r}, not an output")
        if self.decision.label_output is not None and self.decision.label_output not in outputs:
            raise _bad(doc, "decision.label_output", f"names {self.decision.label_output!r}, not an output")
        evidence = self.decision.evidence
        if evidence is not None and evidence.output not in outputs:
            raise _bad(doc, "decision.evidence.output", f"names {evidence.output!r}, not an output")
        if self.domain is not None and self.domain.output not in outputs:
            raise _bad(doc, "domain.output", f"names {self.domain.output!r}, not an output")
        if self.task != "regression":
            if not self.labels or len(self.labels) < 2:
                raise _bad(doc, "labels", f"must list at least two class labels for task {self.task!r}")
        if self.task == "binary_classification":
            if self.decision.positive_label not in (self.labels or ()):
                raise _bad(doc, "decision.positive_label", "must be one of the labels for a binary task")
            score = next(o for o in self.outputs if o.name == self.decision.score_output)
            try:
                score_column(self.task, self.labels, self.decision.positive_label, score.shape)
            except ValueError as exc:
                raise _bad(doc, "decision.score_output", str(exc)) from None
        if self.requires is not None and not _RELEASE.match(self.requires.onnxruntime):
            got = self.requires.onnxruntime
            raise _bad(doc, "requires.onnxruntime", f"must be a release like '1.18.0', got {got!r}")
        if "default" not in self.variants:
            raise _bad(doc, "variants", "must contain a 'default' variant")
        for key, variant in self.variants.items():
            if variant.file not in self.files:
                raise _bad(doc, f"variants.{key}.file", f"names {variant.file!r}, which 'files' does not pin")
            if (variant.inputs is None) != (variant.outputs is None) or variant.inputs == ():
                raise _bad(doc, f"variants.{key}.inputs", "and 'outputs' come together: both lists, or neither")
            if variant.outputs is not None and self.decision.score_output not in {o.name for o in variant.outputs}:
                raise _bad(doc, f"variants.{key}.outputs", f"must hold the score output {self.decision.score_output!r}")
            if variant.windows_of is not None and variant.windows_of not in self.variants:
                raise _bad(doc, f"variants.{key}.windows_of", f"names {variant.windows_of!r}, not a variant")
            if variant.max_elements is not None and variant.max_elements < 1:
                raise _bad(doc, f"variants.{key}.max_elements", f"must be >= 1, got {variant.max_elements}")
        for cpu, key in self.profile.variant_by_cpu.items():
            if key not in self.variants or self.variants[key].inputs is not None:
                raise _bad(doc, f"profile.variant_by_cpu.{cpu}",
                           f"names {key!r}, not a variant with the model's inputs")
        if self.golden.file not in self.files:
            raise _bad(doc, "golden.file", f"names {self.golden.file!r}, which 'files' does not pin")
        if self.parity_sample is not None and self.parity_sample.file not in self.files:
            raise _bad(doc, "parity_sample.file", f"names {self.parity_sample.file!r}, which 'files' does not pin")
        explanation = self.explanation
        for key, name in (("file", explanation.file), ("data", explanation.data)) if explanation else ():
            if name is not None and name not in self.files:
                raise _bad(doc, f"explanation.{key}", f"names {name!r}, which 'files' does not pin")
        for name in self.files:
            parts = name.split("/")
            if len(parts) > 2 or not all(_PART.match(p) for p in parts):
                raise _bad(doc, f"files.{name}", "must be a plain file name, or folder/name one level deep "
                                                 "(letters, digits, '.', '_', '-'; not starting with '.')")
            if name in (MANIFEST_NAME, SIGNATURE_NAME):
                raise _bad(doc, f"files.{name}", "cannot pin the manifest or its signature")

    def for_variant(self, key: str) -> Manifest:
        """The contract a session of variant ``key`` runs under: the variant's own inputs and outputs when it has
        them (e.g. a whole-slice graph), else this manifest."""
        variant = self.variants[key]
        if variant.inputs is None or variant.outputs is None:
            return self
        # a variant graph without the domain output (a whole-slice graph) has no domain guard of its own
        domain = self.domain if self.domain is not None and any(
            o.name == self.domain.output for o in variant.outputs) else None
        # nor a parity sample: the sample holds the validated graph's inputs, not this variant's
        return dataclasses.replace(self, inputs=variant.inputs, outputs=variant.outputs, domain=domain,
                                   parity_sample=None)

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return to_json(self)  # type: ignore[no-any-return]


def parse_manifest(data: Any, doc: str = MANIFEST_NAME) -> Manifest:
    """Validate decoded JSON as a manifest. Raises ManifestError naming the field at fault."""
    return parse(Manifest, data, doc=doc)


MAX_MANIFEST_BYTES = 16 << 20  # a manifest is a few hundred kB (gene names included); more is not a manifest


def read_manifest_bytes(bundle: Path) -> bytes:
    """The bytes of ``bundle/manifest.json``: a regular file of at most :data:`MAX_MANIFEST_BYTES`.

    Raises:
        ManifestError: missing, not a regular file (a folder, FIFO, link...), or too large.
    """
    path = Path(bundle) / MANIFEST_NAME
    if not os.path.lexists(path):  # the one "not a bundle" error (exit 4), whatever the path is
        what = ("does not exist" if not os.path.lexists(bundle) else
                "is a file, not a bundle folder" if not Path(bundle).is_dir() else f"has no {MANIFEST_NAME}")
        raise ManifestError(
            f"{bundle} is not a medinfer bundle: it {what} "
            f"(a bundle folder holds model.onnx, {MANIFEST_NAME} and model_card.md)"
        )
    return read_regular_file(path, MAX_MANIFEST_BYTES, str(path), ManifestError)


def decode_manifest(raw: bytes, doc: str = MANIFEST_NAME) -> Manifest:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{doc} is not valid UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise ManifestError(f"{doc} nests JSON deeper than Python can read: it is not a manifest") from None
    return parse_manifest(data, doc)


def load_manifest(bundle: str | Path) -> Manifest:
    """Read and validate ``BUNDLE/manifest.json``."""
    bundle = Path(bundle)
    return decode_manifest(read_manifest_bytes(bundle), str(bundle / MANIFEST_NAME))


def dump_manifest(manifest: Manifest) -> bytes:
    """Canonical bytes of a manifest (sorted keys, 2-space indent, trailing newline)."""
    return (json.dumps(manifest.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
