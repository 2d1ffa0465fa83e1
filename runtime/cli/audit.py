"""``medinfer audit verify|drift|rotate|export``: check, summarise, rotate and export an audit trail.

Every action reads the whole rotated set of the log it is given (``audit.jsonl`` and its ``audit.jsonl.<seq>``
files), and ``verify`` also reads an export. Numpy + onnxruntime only: the audit package is part of the core.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import AuditError, DriftAlert, UsageError, exit_code
from .common import HELP_FORMAT, examples, table

JSON_HELP = "print JSON for machines instead of tables for people"


def audit_parser(sub: Any) -> None:
    """Add ``medinfer audit`` to the sub-command parser."""
    p = sub.add_parser("audit", help="check, summarise, rotate or export an audit log: 'medinfer audit verify LOG'",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer audit verify audit.jsonl  # hash chain (and its rotated files): edits, deletions",
                           "medinfer audit verify audit.jsonl --key audit.key --head  # keyed chain, head and counter",
                           "medinfer audit drift audit.jsonl --window 1h --max-share 0.05 --plot drift.png",
                           "medinfer audit rotate audit.jsonl --retain-days 183  # close the file, keep six months",
                           "medinfer audit export audit.jsonl --format syslog --out audit.syslog  # RFC 5424"))
    p.add_argument("action", choices=("verify", "drift", "rotate", "export"),
                   help="verify: check the hash chain; drift: out-of-domain share per time window; rotate: close the "
                        "active file into the rotated set now; export: the verified records as JSONL or syslog")
    p.add_argument("log", help="the audit log (JSON lines) written by load(..., audit=...) or serve --audit; verify "
                               "also takes an export")
    p.add_argument("--key", default=None, metavar="FILE", help="device key of a keyed log (HMAC chain)")
    p.add_argument("--head", action="store_true",
                   help="also check LOG.head and its counter: detects records deleted from the end and an older "
                        "head put back (rotate: keep writing them)")
    p.add_argument("--counter", default=None, metavar="FILE", help="where the head's counter lives (default "
                                                                  "LOG.counter)")
    p.add_argument("--window", default="1h", help="drift: window length, e.g. 15m, 1h, 1d (default 1h)")
    p.add_argument("--max-share", type=float, default=None,
                   help="drift: exit 14 when a window's out-of-domain share is above this (e.g. 0.05)")
    p.add_argument("--model", default=None, help="drift: only this model's records")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="drift: draw the share and score quantiles")
    p.add_argument("--retain-days", type=float, default=None, metavar="DAYS",
                   help="rotate: then delete rotated files whose last record is older than this (at least 183)")
    p.add_argument("--format", default="jsonl", choices=("jsonl", "syslog"),
                   help="export: JSON lines as written, or RFC 5424 syslog messages carrying them (default jsonl)")
    p.add_argument("--out", default="-", metavar="FILE", help="export: where to write (default: standard output)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    """Run ``medinfer audit ACTION LOG``."""
    action = {"drift": _drift, "rotate": _rotate, "export": _export}.get(args.action, _verify)
    return action(args)


def _verify(args: argparse.Namespace) -> int:
    from ..audit import verify_log

    report = verify_log(args.log, key=args.key, head=args.head, counter=args.counter)
    if args.json:
        print(json.dumps(report.__dict__))
    elif report.ok:
        tail = " (a torn last line from a crash was ignored)" if report.torn_tail else ""
        mode = ("keyed (HMAC) " if report.keyed else "") + "hash chain" + (" and head" if report.head_checked else "")
        files = f" in {len(report.files)} files" if len(report.files) > 1 else ""
        start = f", from record {report.first} (older files deleted by retention)" if report.first > 1 else ""
        print(f"OK    {args.log}: {report.records} records{files}{start}, {mode} intact{tail}; last hash "
              f"{report.last_hash}")
        if report.withheld:
            print(f"      {report.withheld} record(s) marked withheld: written, but their answers were not returned")
    else:
        print(f"FAIL  {args.log}: {report.problem} ({report.records} records verified before it)", file=sys.stderr)
    return 0 if report.ok else exit_code(AuditError("verification failed"))


def _rotate(args: argparse.Namespace) -> int:
    from ..audit import AuditLog
    from ..audit.anchor import head_path

    anchored = args.head or head_path(Path(args.log)).exists()  # an anchored log stays anchored
    log = AuditLog(args.log, key=args.key, head=anchored, counter=args.counter, retain_days=args.retain_days)
    try:
        before = set(log.files)
        log.rotate()
        after = log.files
    finally:
        log.close()
    rotated = after[-2] if len(after) > 1 else None
    deleted = sorted(p.name for p in before - set(after))
    print(f"rotated {args.log} -> {rotated}" + (f"; retention deleted {', '.join(deleted)}" if deleted else ""))
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..audit.export import export_log

    n = export_log(args.log, args.out, args.format, key=args.key)
    if args.out != "-":
        print(f"exported {n} verified records of {args.log} to {args.out} ({args.format})")
    return 0


def _drift(args: argparse.Namespace) -> int:
    from ..tools import drift

    if args.max_share is not None and not 0.0 <= args.max_share <= 1.0:
        raise UsageError(f"--max-share {args.max_share!r}: expected a share between 0 and 1")
    windows = drift.drift(args.log, drift.parse_window(args.window), args.model, key=args.key, head=args.head,
                          counter=args.counter)
    rows = [w.to_dict() for w in windows]
    alert = [r for r in rows if args.max_share is not None and r["share"] > args.max_share]
    if args.plot:
        drift.plot(windows, args.plot, args.max_share)
    if args.json:
        print(json.dumps({"windows": rows, "alerts": len(alert)}, indent=2))
    elif not rows:
        print(f"{args.log}: no records with domain scores (bundles without a domain guard, or an empty log)")
    else:
        print(table([[r["start"], r["records"], r["samples"], r["out_of_domain"], f"{r['share']:.2%}",
                      _g(r["score_p50"]), _g(r["score_p90"]), _g(r["score_p99"])] for r in rows],
                    ["window start (UTC)", "records", "samples", "out of domain", "share", "score p50", "p90", "p99"]))
        if args.plot:
            print(f"plot written to {args.plot}")
    if alert:
        print(f"ALERT {args.log}: the out-of-domain share exceeded {args.max_share:g} in {len(alert)} window(s), "
              f"first at {alert[0]['start']} ({alert[0]['share']:.2%})", file=sys.stderr)
        return exit_code(DriftAlert("drift"))
    return 0


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
