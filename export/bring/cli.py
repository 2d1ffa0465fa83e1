"""``medinfer bundle SOURCE --reference REF.npz ...``: bring a model in (the [train]-extra half of the CLI)."""

from __future__ import annotations

import argparse
from typing import Any

from medinfer.cli.common import HELP_FORMAT, examples

EXAMPLES = (
    "medinfer bundle model.onnx --reference ref.npz --contract contract.toml --out bundles  # an existing graph",
    "medinfer bundle nets.py:make_model --reference ref.npz --contract contract.toml  # a PyTorch nn.Module",
    "medinfer bundle densenet.pt2 --reference ref.npz --contract contract.toml --train-sample train.npz --int8",
    "medinfer bundle boosted.txt --reference ref.npz --contract contract.toml --sign keys/release.pem  # LightGBM",
    "medinfer bundle model.json --kind xgboost --reference ref.npz --contract contract.toml  # XGBoost",
)


def add_parser(sub: Any, progress: Any) -> None:
    """The ``bundle`` subcommand."""
    p = sub.add_parser(
        "bundle", formatter_class=HELP_FORMAT, epilog=examples(*EXAMPLES),
        help="bring your own model (ONNX, PyTorch, Keras, scikit-learn, XGBoost, LightGBM) in as a verified bundle",
        description="Convert SOURCE, infer its contract (completed from --contract), gate it against its own "
                    "framework (or REF.npz's outputs for an .onnx), and write a verified bundle. A gate failure "
                    "writes nothing (exit 8); a field that must be declared is named with an example (exit 2). "
                    "The contract format: docs/bring-your-own-model.md.")
    p.add_argument("source", metavar="SOURCE",
                   help="model.onnx | model.pt2 | module:attr or file.py:attr (torch.nn.Module) | model.keras | "
                        "model.skops/.joblib (scikit-learn) | model.txt (LightGBM) | model.json/.ubj (XGBoost)")
    p.add_argument("--reference", required=True, metavar="REF.npz",
                   help="reference inputs (keys in.<input>), optionally the source's outputs (out.<output>; "
                        "required for an .onnx) and labels (y)")
    p.add_argument("--contract", metavar="FILE", help="contract.toml or .json: name, version, task, labels, "
                                                      "threshold, units and ranges, card")
    p.add_argument("--out", default="bundles", help="folder to write the bundle into (default: bundles)")
    p.add_argument("--kind", help="the source kind when its name does not tell (onnx, torch, keras, sklearn, "
                                  "xgboost, lightgbm)")
    p.add_argument("--train-sample", metavar="TRAIN.npz",
                   help="a sample of the training inputs (keys in.<input>): fits the applicability-domain guard and "
                        "calibrates --int8 (without it the card says there is no guard)")
    p.add_argument("--int8", action="store_true", help="also make a static int8 variant, shipped only within the "
                                                       "clinical budget on the labelled reference data")
    p.add_argument("--sign", metavar="KEY", help="sign the manifest with this Ed25519 private key (medinfer keygen)")
    p.add_argument("--profile", choices=("measure", "default"), default="measure",
                   help="session profile: measured (default) or onnxruntime's defaults")
    p.set_defaults(func=lambda args: cmd_bundle(args, progress))


def cmd_bundle(args: argparse.Namespace, progress: Any) -> int:
    from . import bundle

    path = bundle(args.source, args.reference, args.out, contract=args.contract, kind=args.kind,
                  train_sample=args.train_sample, int8=args.int8, sign=args.sign,
                  measure_profile=args.profile == "measure", progress=progress)
    print(f"wrote {path}")
    return 0
