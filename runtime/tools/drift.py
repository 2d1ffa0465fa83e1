"""``medinfer audit drift``: how often inputs fell outside the applicability domain, per time window, from an audit
trail (each inference record carries its domain scores and out-of-domain count, see ``Model``'s audit summary).

    medinfer audit drift audit.jsonl --window 1h --max-share 0.05 --plot drift.png

A share above ``--max-share`` in any window exits with the drift code (14), so a monitoring script can alert.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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


def drift(path: str | Path, window_s: float, model: str | None = None) -> list[Window]:
    """Out-of-domain counts and domain-score quantiles per window of ``window_s`` seconds (records of bundles
    with a domain guard only; ``model`` keeps one model's records).

    Raises:
        AuditError: the log is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise AuditError(f"audit log {path} does not exist" if not path.exists() else f"{path} is not a file")
    windows: dict[int, Window] = {}
    with open(path, "rb") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn tail: verify reports it
            out = rec.get("output") if isinstance(rec, dict) else None
            if not isinstance(out, dict) or "out_of_domain" not in out or (model and rec.get("model") != model):
                continue
            at = parse_utc(rec["time"])
            key = int(at // window_s)
            w = windows.setdefault(key, Window(key * window_s))
            w.records += 1
            w.samples += int(out.get("n", len(out.get("domain_scores", []))))
            w.out_of_domain += int(out["out_of_domain"])
            w.scores += [float(s) for s in out.get("domain_scores", [])]
    return [windows[k] for k in sorted(windows)]


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
