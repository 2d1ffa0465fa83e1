"""The device-lifecycle commands (:mod:`medinfer.lifecycle`): install, slots, update, repo, diff, sbom.

Each command imports its part of the lifecycle layer when it runs, so ``medinfer --help`` loads none of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import HELP_FORMAT, bundle_path, examples, table

JSON_HELP = "print JSON for machines instead of text for people"


def cmd_install(args: argparse.Namespace) -> int:
    from ..lifecycle.slots import install

    report = install(args.slot_dir, bundle_path(args.bundle), trusted_keys=tuple(args.trusted_key),
                     require_signature=args.require_signature)
    _print({"installed": str(report.installed), "slot": report.slot, "switched": report.switched,
            "previous": str(report.previous) if report.previous else None, "message": report.message}, args,
           report.message)
    return 0


def cmd_slots(args: argparse.Namespace) -> int:
    from ..lifecycle.slots import STATE, active_bundle

    active = active_bundle(args.slot_dir)
    state_path = Path(args.slot_dir) / STATE
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.is_file() else {}
    history: list[dict[str, Any]] = (state.get("history") or [])[-args.history:]
    shown = None if active is None else {"path": str(active.path), "slot": active.slot, "bundle": str(active.key),
                                         "generation": active.generation}
    if args.json:
        print(json.dumps({"active": shown, "floor": state.get("floor"), "history": history}, indent=2))
        return 0
    print(f"active: {f'{active.key} in slot {active.slot}' if active else 'none'}")
    if state.get("floor"):
        f = state["floor"]
        print(f"anti-rollback floor: {f['name']} {f['version']} (release {f['release']})")
    rows = [[h["time"], h["event"], f"{h['bundle']['version']} r{h['bundle']['release']}", h["detail"][:70]]
            for h in history]
    if rows:
        print(table(rows, ["time (UTC)", "event", "bundle", "detail"]))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from ..lifecycle.diff import diff, require_pass

    report = diff(bundle_path(args.old), bundle_path(args.new), args.reference, trusted_keys=tuple(args.trusted_key))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(f"{report.old['name']} {report.old['version']} (release {report.old['release']}) -> "
              f"{report.new['name']} {report.new['version']} (release {report.new['release']})")
        print(f"criteria: {report.plan}; reference: {report.reference or 'none'}")
        marks = {True: "ok", False: "FAIL", None: "info"}
        print(table([[marks[f.passed], f.check, f.detail] for f in report.findings], ["", "check", "finding"]))
    require_pass(report)  # ChangeRejected: exit 16
    if not args.json:
        print("PASS: the candidate is within the parent's acceptance criteria")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from ..lifecycle.update import update

    result = update(args.repo, args.slot_dir, args.model, root=args.root, trusted_keys=tuple(args.trusted_key),
                    require_signature=args.require_signature, require_diff=args.require_diff,
                    reference=args.reference)
    _print(result, args, result["message"])
    return 0


def cmd_repo(args: argparse.Namespace) -> int:
    from ..lifecycle import tufrepo

    if args.action == "init":
        result = tufrepo.init(args.repo, args.keys, expires_days=args.expires_days)
    elif args.action == "add":
        if not args.bundle:
            from ..errors import UsageError

            raise UsageError("medinfer repo add needs BUNDLE")
        result = tufrepo.add(args.repo, args.keys, bundle_path(args.bundle), expires_days=args.expires_days)
    else:
        result = tufrepo.refresh_timestamp(args.repo, args.keys, expires_days=args.expires_days)
    _print(result, args, result["message"])
    return 0


def cmd_sbom(args: argparse.Namespace) -> int:
    from ..lifecycle.sbom import write_sboms

    written = write_sboms(args.out, [bundle_path(b) for b in args.bundles], environment=not args.no_environment,
                          distributions=args.dist or None)
    _print({"written": [str(p) for p in written]}, args, "\n".join(f"wrote {p}" for p in written))
    return 0


def _print(doc: dict[str, Any], args: argparse.Namespace, text: str) -> None:
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(text, file=sys.stdout)


def _trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trusted-key", action="append", default=[], metavar="PEM",
                   help="trusted Ed25519 public key of the bundle signer (repeatable)")
    p.add_argument("--require-signature", action="store_true",
                   help="refuse a bundle whose manifest.sig does not verify with a --trusted-key")


def add_parsers(sub: Any) -> None:
    """Add the lifecycle commands to the ``medinfer`` sub-command parser."""
    p = sub.add_parser("install", help="install a bundle into a model's A/B slots (anti-rollback, atomic switch)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer install bundles/drug_activity_rf --slot-dir /var/lib/medinfer/drug_activity_rf",
                           "medinfer install new/drug_activity_rf --slot-dir slots/drug --require-signature "
                           "--trusted-key signing.pub.pem"))
    p.add_argument("bundle", help="the bundle folder to install")
    p.add_argument("--slot-dir", required=True, help="the model's slot folder (slots a/ and b/, the link current)")
    _trust(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("slots", help="show a slot folder: the active bundle, the anti-rollback floor, the history",
                       formatter_class=HELP_FORMAT, epilog=examples("medinfer slots slots/drug --history 20"))
    p.add_argument("slot_dir", metavar="SLOT_DIR", help="the model's slot folder")
    p.add_argument("--history", type=int, default=10, help="how many history entries to show (default 10)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_slots)

    p = sub.add_parser("diff", help="compare a candidate bundle with its parent against the parent's PCCP",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer diff bundles/drug_activity_rf new/drug_activity_rf  # exit 16 when outside",
                           "medinfer diff old/lung_nodule_cnn new/lung_nodule_cnn --reference frozen.npz --json"))
    p.add_argument("old", help="the bundle in use (its PCCP holds the acceptance criteria)")
    p.add_argument("new", help="the candidate bundle")
    p.add_argument("--reference", metavar="DATA.npz", help="frozen reference set: inputs as in.<name>, optional y "
                   "(labels) and group (subgroups); default: the parent's parity sample (no labels)")
    p.add_argument("--trusted-key", action="append", default=[], metavar="PEM", help="trusted signer key")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("update", help="fetch the newest bundle from a TUF repository and install it ([lifecycle])",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer update --repo https://updates.example/medinfer --slot-dir slots/drug "
                           "--model drug_activity_rf --root root.json",
                           "medinfer update --repo file:///media/usb/repo --slot-dir slots/drug --model "
                           "drug_activity_rf --require-diff --reference frozen.npz"))
    p.add_argument("--repo", required=True, help="the repository's base URL (https://, http:// or file://)")
    p.add_argument("--slot-dir", required=True, help="the model's slot folder")
    p.add_argument("--model", required=True, help="the model name (the repository's target MODEL/bundle.tar)")
    p.add_argument("--root", help="the trusted root.json (first update only; later updates use the stored one)")
    _trust(p)
    p.add_argument("--require-diff", action="store_true",
                   help="refuse a candidate outside the active bundle's PCCP (medinfer diff)")
    p.add_argument("--reference", metavar="DATA.npz", help="reference set for --require-diff")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("repo", help="write a TUF repository of bundles ([lifecycle]; a build machine's job)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer repo init repo --keys keys  # root, targets, snapshot, timestamp keys + metadata",
                           "medinfer repo add repo bundles/drug_activity_rf --keys keys  # a new target version",
                           "medinfer repo timestamp repo --keys keys --expires-days 1  # keep the repository fresh"))
    p.add_argument("action", choices=("init", "add", "timestamp"),
                   help="init: keys and version 1 of every role; add: publish a bundle; timestamp: re-sign it")
    p.add_argument("repo", help="the repository folder (serve it over HTTPS, or copy it to a medium)")
    p.add_argument("bundle", nargs="?", help="the bundle to add (repo add)")
    p.add_argument("--keys", required=True, help="folder of the role keys (created by repo init; keep it offline)")
    p.add_argument("--expires-days", type=float, default=None,
                   help="validity of the metadata written (default: root 365, targets/snapshot 30, timestamp 1)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_repo)

    p = sub.add_parser("sbom", help="CycloneDX 1.6 SBOM of this install and ML-BOMs of bundles, plus the SOUP "
                                    "register ([lifecycle])", formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer sbom bundles/drug_activity_rf bundles/lung_nodule_cnn --out sbom",
                           "medinfer sbom --out sbom --dist numpy --dist onnxruntime --dist medinfer"))
    p.add_argument("bundles", nargs="*", metavar="BUNDLE", help="bundles to describe as ML-BOMs")
    p.add_argument("--out", required=True, help="folder for environment.cdx.json, BUNDLE.cdx.json, soup.md/json")
    p.add_argument("--no-environment", action="store_true", help="bundles only, no SBOM of this install")
    p.add_argument("--dist", action="append", default=[], metavar="NAME",
                   help="only these distributions (default: every installed one)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_sbom)
