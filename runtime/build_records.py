"""Records the exporter writes about how a bundle was made (part of the manifest schema, see manifest.py).

- :class:`Producer`, :class:`Requires`: the versions that made the bundle and what a runtime needs to run it.
- :class:`DataSource`, :class:`DataProvenance`: the training data, traceable to the registry package that ships it.
- :class:`Metrics` (:class:`Metric`, :class:`Baseline`): held-out metrics with their CIs and the baseline.
- :class:`ParityReport`: what the export's fail-closed parity gate compared and found.

- :class:`ProfileEvidence`: why the session profile is what it is: the interleaved rounds that compared it with
  onnxruntime's default options at each batch size, the per-round ratios, the bound the decision used, the CPU.
- :class:`Reproducibility`: what ``medinfer build NAME --check-reproducible`` compared (two builds in fresh
  processes, every file's sha256) and the machine and versions it was checked on.
- :class:`ParitySample`: a seeded sample of the held-out set the export gate used, with the CPU graph's outputs
  (``parity.npz``), so that an accelerator can be compared with the CPU on real held-out inputs.

Each is optional in the manifest: bundles written before it load as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProfileTrial:
    """One interleaved comparison at one batch size: ``contender`` against ``baseline``, ``rounds`` rounds.

    ``ratios`` holds, per round, the contender's median latency divided by the baseline's median in the SAME round
    (machine noise hits both alike); ``bound`` is the worst (largest) of them. The contender wins when ``bound`` is
    at most ``required`` (1 - the margin): it was faster in every round by more than the margin.
    """

    batch: int
    contender: str
    baseline: str
    settings: dict[str, Any]
    rounds: int
    ratios: tuple[float, ...]
    bound: float
    required: float
    wins: bool
    contender_p50_us: float = 0.0
    baseline_p50_us: float = 0.0
    # CPU cores other processes kept busy while the rounds ran (None: not measurable here); a win measured while
    # they competed for the cores is not evidence for a quiet device (``note`` then says why it does not count)
    other_cores: float | None = None
    note: str = ""


@dataclass(frozen=True)
class ProfileEvidence:
    """The measurements behind a session profile (see ``export/profiles.py`` for the rule)."""

    rule: str
    margin: float
    batches: tuple[int, ...]
    trials: tuple[ProfileTrial, ...]
    decision: str
    cpu: dict[str, Any] = field(default_factory=dict)
    onnxruntime: str = ""
    busy_cores: float = 0.0  # the other-process load above which a win does not count


@dataclass(frozen=True)
class Reproducibility:
    """What ``medinfer build --check-reproducible`` found: ``builds`` builds in fresh processes gave byte-identical
    ``identical`` files; the manifest differed only in ``differed`` (fields a rebuild may change: its ``created``
    time and the session profile measured on the build machine, neither covered by the graph's contract digest)."""

    builds: int
    identical: tuple[str, ...]
    differed: tuple[str, ...]
    command: str
    checked: str
    cpu: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ParitySample:
    """A seeded sample of the export gate's held-out set (``file``: ``in.<input>``, ``out.<output>`` from the CPU
    graph, ``out@<variant>.<output>`` from each variant's graph, ``index`` into the held-out set)."""

    file: str
    n: int
    of: int
    seed: int
    outputs: tuple[str, ...]
    atol: float
    rtol: float = 0.0
    source: str = ""


@dataclass(frozen=True)
class Producer:
    medinfer: str
    onnx: str
    onnxruntime: str
    opset: dict[str, int]
    frameworks: dict[str, str] = field(default_factory=dict)
    converter: dict[str, str] = field(default_factory=dict)
    python: str = ""
    platform: str = ""


@dataclass(frozen=True)
class Requires:
    """What a runtime needs to run every graph of the bundle (written by the exporter; older bundles lack it).

    ``onnxruntime`` is the oldest release that accepts the highest IR version and opset per domain among the
    graphs (measured per release: export/ort_support.json); ``load()`` refuses an older onnxruntime before it
    creates a session (:class:`~medinfer.errors.RuntimeTooOld`).
    """

    onnxruntime: str
    ir_version: int = 0
    opsets: dict[str, int] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class DataSource:
    """One file of training data, traceable to the registry package that ships it."""

    name: str
    package: str
    version: str
    file: str
    sha256: str
    licence: str
    citation: str
    description: str = ""


@dataclass(frozen=True)
class DataProvenance:
    sources: tuple[DataSource, ...]
    split: dict[str, Any]
    synthetic: bool = False
    description: str = ""
    preprocessing: str = ""


@dataclass(frozen=True)
class Metric:
    value: float
    ci95: tuple[float, float] | None = None


@dataclass(frozen=True)
class Baseline:
    name: str
    heldout: dict[str, Metric]


@dataclass(frozen=True)
class Metrics:
    heldout: dict[str, Metric]
    baseline: Baseline | None = None
    n_test: int = 0
    method: str = ""


@dataclass(frozen=True)
class ParityReport:
    """What the export's fail-closed parity gate compared and found (the bundle exists only if it passed)."""

    passed: bool
    tolerance: dict[str, float] = field(default_factory=dict)
    sets: dict[str, dict[str, float]] = field(default_factory=dict)  # per input set: n, max diffs, flips
    n_samples: int = 0
    max_abs_diff: float = 0.0
    decision_flips: int = 0
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
