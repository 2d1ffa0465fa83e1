"""Records the exporter writes about how a bundle was made (part of the manifest schema, see manifest.py).

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
