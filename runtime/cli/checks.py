"""``medinfer bench BUNDLE --check-profile``: does the bundle's session profile still beat onnxruntime's default
options on this machine? (The timing and the rule live in :mod:`medinfer.tools.profile_check`.)"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ProfileLoses, exit_code
from .common import bundle_path, providers_arg


def check_profiles(args: argparse.Namespace) -> int:
    """Re-measure each bundle's profile against the defaults; exit 15 when one loses by more than the noise."""
    from ..tools.profile_check import check_profile, format_report, raise_if_loses

    reports, failed = [], None
    for arg in args.bundles:
        print(f"timing {arg}: bundle profile vs onnxruntime's default options ...", file=sys.stderr, flush=True)
        report = check_profile(bundle_path(arg), variant="default" if args.variant == "all" else args.variant,
                               providers=providers_arg(args.provider), batches=args.batch, rounds=args.rounds,
                               seconds=3.0 if args.min_seconds is None else args.min_seconds)
        reports.append(report)
        if not args.json:
            print(format_report(report) + "\n")
        try:
            raise_if_loses(report)
        except ProfileLoses as exc:
            print(f"medinfer: LOSES: {exc}", file=sys.stderr)
            failed = failed or exc
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
    return exit_code(failed) if failed else 0
