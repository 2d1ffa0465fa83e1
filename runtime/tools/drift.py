"""``medinfer audit drift``: how often inputs fell outside the applicability domain, per time window, from an audit
trail (each inference record carries its domain scores and out-of-domain count, see ``Model``'s audit summary).

    medinfer audit drift audit.jsonl --window 1h --max-share 0.05 --plot drift.png

A share above ``--max-share`` in any window exits with the drift code (14), so a monitoring script can alert. The
log is verified first (``--key``/``--head`` as for ``audit verify``): a log that does not verify exits 12 and is not
counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audit import verify_log
from ..audit.sources import records
from ..errors import AuditError, UsageError
from ..extras import optional_import
from ..timestamps import parse_utc, utc_text

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> float:
    """``"15m"``, ``"1h"``, ``"1d"`` or seconds -> seconds.

    Raises:
        UsageError: not a positive duration.
    """
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:])
    number = text[:-1] if unit is not None else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise UsageError(f"--window {text!r}: expected a duration such as 15m, 1h or 1d") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"--window {text!r}: expected a positive duration")
    return seconds


@dataclass
class Window:
    start: float
    records: int = 0
    samples: int = 0
    out_of_domain: int = 0
    scores: list[float] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.out_of_domain / self.samples if self.samples else 0.0

    def to_dict(self) -> dict[str, Any]:
        q = np.percentile(self.scores, [50, 90, 99]).tolist() if self.scores else [None] * 3
        return {"start": utc_text(self.start), "records": self.records,
                "samples": self.samples, "out_of_domain": self.out_of_domain, "share": round(self.share, 6),
                "score_p50": q[0], "score_p90": q[1], "score_p99": q[2]}


def drift(path: str | Path, window_s: float, model: str | None = None, *, key: str | Path | bytes | None = None,
          head: bool = False, counter: str | Path | None = None) -> list[Window]:
    """Out-of-domain counts and domain-score quantiles per window of ``window_s`` seconds (records of bundles
    with a domain guard only; ``model`` keeps one model's records).

    The log (its whole rotated set) is verified first, with ``key`` / ``head`` / ``counter`` as
    :func:`~medinfer.audit.verify_log` takes them: drift counts only records of a chain that verifies, and every
    count it reads must be a count (an ``out_of_domain`` of -1000 is refused, never added).

    Raises:
        AuditError: the log is missing, unreadable or does not verify, or a record's output summary is not one
            medinfer writes.
    """
    report = verify_log(path, key=key, head=head, counter=counter)
    if not report.ok:
        raise AuditError(f"audit log {path} does not verify ({report.problem}): drift counts only a verified log "
                         "(see 'medinfer audit verify')")
    windows: dict[int, Window] = {}
    for name, line, rec in records(Path(path)):
        out = rec.get("output")
        if not isinstance(out, dict) or "out_of_domain" not in out or (model and rec.get("model") != model):
            continue
        at, n, ood, scores = _checked(out, rec.get("time"), f"{name} line {line}")
        key_ = int(at // window_s)
        w = windows.setdefault(key_, Window(key_ * window_s))
        w.records += 1
        w.samples += n
        w.out_of_domain += ood
        w.scores += scores
    return [windows[k] for k in sorted(windows)]


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _checked(out: dict[str, Any], when: Any, where: str) -> tuple[float, int, int, list[float]]:
    """The time, sample count, out-of-domain count and domain scores of one output summary, each what medinfer
    writes (else AuditError naming the line)."""
    scores = out.get("domain_scores", [])
    n = out.get("n", len(scores) if isinstance(scores, list) else -1)
    ood = out["out_of_domain"]
    if not (_count(n) and _count(ood) and ood <= n):
        raise AuditError(f"{where}: out_of_domain {ood!r} of n {n!r} is not a count between 0 and n; the record "
                         "was not written by medinfer (an edited chain, recomputed): drift refuses to count it")
    if not (isinstance(scores, list) and all(type(s) in (int, float) and math.isfinite(s) for s in scores)):
        raise AuditError(f"{where}: domain_scores is not a list of finite numbers")
    try:
        at = parse_utc(when) if isinstance(when, str) else None
    except ValueError:
        at = None
    if at is None:
        raise AuditError(f"{where}: the record's time {when!r} is not an ISO 8601 UTC time")
    return at, n, ood, [float(s) for s in scores]


def plot(windows: list[Window], path: str | Path, max_share: float | None) -> None:
    """Out-of-domain share and domain-score quantiles over time, as a PNG (matplotlib, imported here).

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    optional_import("matplotlib", "train", "medinfer audit drift --plot").use("Agg")
    import matplotlib.pyplot as plt

    t = [np.datetime64(int(w.start), "s") for w in windows]
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    a.plot(t, [w.share for w in windows], marker="o", label="out-of-domain share")
    if max_share is not None:
        a.axhline(max_share, color="red", linestyle="--", label=f"alert above {max_share:g}")
    a.set_ylabel("share of samples")
    a.legend(loc="upper left")
    for q, style in ((50, "-"), (90, "--"), (99, ":")):
        b.plot(t, [np.percentile(w.scores, q) if w.scores else np.nan for w in windows], style, label=f"p{q}")
    b.set_ylabel("domain score")
    b.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
