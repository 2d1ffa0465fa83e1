"""The argument parsers of the device commands (:mod:`medinfer.cli.device`): options, help and examples."""

from __future__ import annotations

from typing import Any

from .audit import audit_parser
from .common import HELP_FORMAT, examples
from .device import cmd_bench, cmd_info, cmd_keygen, cmd_list, cmd_predict, cmd_sign, cmd_verify

BUNDLE_HELP = "bundle folder, or the name of a bundle under $MEDINFER_BUNDLES (default ./bundles)"
PROVIDER_HELP = ("execution providers as a comma-separated preference list, e.g. cuda,cpu (default: cpu); "
                 "names one this machine lacks are skipped, with a warning when the first choice is")
VARIANT_HELP = ("run a variant of the bundle, e.g. int8, or 'auto' (the one the manifest prefers for this CPU); "
                "default: the fp32 graph; 'medinfer info' lists them")
JSON_HELP = "print JSON for machines instead of tables for people"


def add_parsers(sub: Any) -> None:
    """Add the device commands to the ``medinfer`` sub-command parser."""
    for add in (_info_parser, _list_parser, _verify_parser, _predict_parser, _bench_parser, _keygen_parser,
                _sign_parser, audit_parser):
        add(sub)


def _info_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="show a bundle's contract, metrics and files (or --providers)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer info bundles/drug_activity_rf  # contract, metrics with CIs, files, provenance",
                           "medinfer info drug_activity_rf --json  # the whole manifest as JSON",
                           "medinfer info --providers  # which execution providers this machine offers, and why not"))
    p.add_argument("bundle", nargs="?", help=BUNDLE_HELP + "; omit it with --providers")
    p.add_argument("--providers", action="store_true", help="list the execution providers this machine offers")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_info)


def _list_parser(sub: Any) -> None:
    p = sub.add_parser("list", help="summarise every bundle in a folder (default ./bundles)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer list  # every bundle under ./bundles: version, task, held-out metric, size",
                           "medinfer list /opt/models --json"))
    p.add_argument("root", nargs="?", default=None,
                   help="folder holding bundle folders (default: $MEDINFER_BUNDLES or ./bundles)")
    p.add_argument("--json", action="store_true", help=JSON_HELP + " (one manifest per bundle)")
    p.set_defaults(func=cmd_list)


def _verify_parser(sub: Any) -> None:
    p = sub.add_parser("verify", help="check every file's sha256 (and signature) and run the golden self-test",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer verify bundles/*/  # every bundle: sha256 of each file + golden self-test",
                           "medinfer verify bundles/lung_nodule_cnn --provider cuda,cpu --placement"
                           "  # which provider ran which nodes",
                           "medinfer verify bundles/lung_nodule_cnn --require-signature --trusted-key signing.pub.pem"))
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="one or more bundles (folders or names)")
    p.add_argument("--trusted-key", action="append", default=[], metavar="PEM",
                   help="trusted Ed25519 public key; with --require-signature an unsigned bundle fails")
    p.add_argument("--require-signature", action="store_true",
                   help="fail unless manifest.sig verifies with a --trusted-key (a present signature is always "
                        "checked)")
    p.add_argument("--placement", action="store_true", help="profile one run: which provider ran which nodes")
    p.add_argument("--variant", default=None, help=VARIANT_HELP)
    p.add_argument("--provider", default=None, help=PROVIDER_HELP)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_verify)


def _predict_parser(sub: Any) -> None:
    p = sub.add_parser("predict", help="predict from a .npy/.npz/.csv/.tsv/.json/.txt file (or .dcm for CT models)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer predict bundles/drug_activity_rf rows.csv  # one row per sample; a header names "
                           "the features",
                           "medinfer predict bundles/gene_expression_svd cells.csv --id-column barcode  # ids beside "
                           "the answers",
                           "medinfer predict clinical_notes_tfidf report.txt --json  # a .txt file is one document",
                           "medinfer predict lung_nodule_cnn scan.dcm --overlay heat.png  # a CT slice, sliding window",
                           "medinfer predict clinical_notes_tfidf report.txt --explain  # the words behind the answer",
                           "medinfer predict glucose_lstm cgm.npy --fhir-out forecast.json --fhir-subject Patient/123"))
    p.add_argument("bundle", help=BUNDLE_HELP)
    p.add_argument("input", help="input file: .npy .npz .csv .tsv .json, .txt (one text document), or a DICOM CT "
                                 "slice for bundles that take CT")
    p.add_argument("--variant", default=None, help=VARIANT_HELP)
    p.add_argument("--provider", default=None, help=PROVIDER_HELP)
    p.add_argument("--cast", choices=("safe", "same_kind"), default="safe",
                   help="dtype casting: safe (default) refuses float64 for a float32 model, same_kind allows it")
    p.add_argument("--id-column", default=None, metavar="NAME",
                   help="a .csv/.tsv column of row ids, shown with each answer (default: a leading id, index, cell "
                        "or sample column, when the other columns are the model's features)")
    p.add_argument("--json", action="store_true", help=JSON_HELP + " (labels, scores, provenance)")
    p.add_argument("--out-of-domain", choices=("flag", "no_result"), default="flag",
                   help="samples outside the applicability domain: flag them (default) or give no answer (exit 5)")
    p.add_argument("--on-error", choices=("item", "raise"), default="item",
                   help="item (default): answer every valid row and give each invalid or refused one its own "
                        "reason (exit status: the first refusal's); raise: one refused row refuses the whole file")
    p.add_argument("--explain", action="store_true",
                   help="also say why: each answer's top attributions with their signs, computed by the bundle's own "
                        "explanation (a DICOM slice: occlusion around each finding; with --overlay OUT.png also "
                        "OUT.explain.png)")
    dicom = p.add_argument_group("DICOM CT input (bundles whose manifest declares CT in HU; needs [dicom])")
    dicom.add_argument("--center", default=None, metavar="ROW,COL",
                       help="score one patch centred here (default: the whole slice, sliding window)")
    dicom.add_argument("--stride", type=int, default=None, help="sliding-window stride in pixels (manifest default)")
    dicom.add_argument("--frame", type=int, default=None, help="frame of a multi-frame file (default 0)")
    dicom.add_argument("--patchwise", action="store_true",
                       help="score patch by patch (any stride) even when the bundle ships a one-pass slice variant")
    dicom.add_argument("--overlay", default=None, metavar="OUT.png",
                       help="write a PNG: the slice with the heat map, a colour bar and the threshold marked")
    dicom.add_argument("--dicom-out", default=None, metavar="DIR",
                       help="write a DICOM SR of the regions and a Parametric Map of the heat map, referencing the "
                            "slice (needs [dicom]: highdicom)")
    dicom.add_argument("--dicom-sc", action="store_true", help="with --dicom-out: also the overlay as a Secondary "
                                                               "Capture")
    fhir = p.add_argument_group("FHIR R4 output (needs [fhir]: fhir.resources)")
    fhir.add_argument("--fhir-out", default=None, metavar="FILE", help="write a FHIR R4 transaction Bundle (JSON)")
    fhir.add_argument("--fhir-subject", default=None, metavar="REF", help="the patient's reference, e.g. Patient/123")
    fhir.add_argument("--fhir-basis", action="append", default=[], metavar="REF",
                      help="a resource the input came from (repeatable), e.g. DocumentReference/7")
    fhir.add_argument("--fhir-time", default=None, metavar="ISO",
                      help="time of the input's last observation, with a time zone (default: now); a forecast is "
                           "effective this plus its horizon")
    fhir.add_argument("--fhir-generic", action="store_true",
                      help="a generic Observation of the output (research models such as drug_activity_rf)")
    p.set_defaults(func=cmd_predict)


def _bench_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="SingleStream latency, throughput, cold start and memory of bundle(s)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer bench bundles/drug_activity_rf  # every variant, batch 1, >= 1000 queries and 5 s",
                           "medinfer bench bundles/*/ --batch 1 64 --json --out bench.jsonl",
                           "medinfer bench lung_nodule_cnn --variant int8 --min-queries 300 --min-seconds 1 --no-cold",
                           "medinfer bench bundles/drug_activity_rf --check-profile  # does the shipped profile still "
                           "beat onnxruntime's defaults here? exit 15 when it loses"))
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="one or more bundles (folders or names)")
    p.add_argument("--variant", default="all", help="a variant name, or 'all' (default)")
    p.add_argument("--provider", default=None, help=PROVIDER_HELP)
    p.add_argument("--batch", type=int, nargs="+", default=None,
                   help="batch size(s) (default 1; with --check-profile the sizes the export measured, 1 and 64)")
    p.add_argument("--min-queries", type=int, default=1000, help="at least this many timed queries (default 1000)")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="and at least this long (default 5 s; with --check-profile: seconds of interleaved timing per "
                        "batch size, default 3)")
    p.add_argument("--warmup", type=int, default=50, help="warm-up queries (default 50)")
    p.add_argument("--no-cold", action="store_true", help="skip the fresh-process cold-start measurement")
    p.add_argument("--json", action="store_true", help=JSON_HELP + " (one record per bundle, variant and batch)")
    p.add_argument("--out", default=None, help="append one JSON line per record to this file")
    p.add_argument("--check-profile", action="store_true",
                   help="time the bundle's session profile against onnxruntime's default options, interleaved, and "
                        "say whether it still wins on this machine (exit 15 when it loses in every round)")
    p.add_argument("--rounds", type=int, default=7, help="with --check-profile: interleaved rounds (default 7)")
    p.set_defaults(func=cmd_bench)


def _keygen_parser(sub: Any) -> None:
    p = sub.add_parser("keygen", help="create an Ed25519 key pair for signing bundles ([sign] extra)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer keygen --out signing.pem  # also writes signing.pub.pem, the key devices trust"))
    p.add_argument("--out", required=True, help="private key file to create (PEM, mode 0600)")
    p.add_argument("--public", default=None, help="public key file (default: OUT with .pub.pem)")
    p.set_defaults(func=cmd_keygen)


def _sign_parser(sub: Any) -> None:
    p = sub.add_parser("sign", help="sign a bundle's manifest.json (which pins every file) -> manifest.sig",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer sign bundles/lung_nodule_cnn --key signing.pem  # verifies the files first"))
    p.add_argument("bundle", help=BUNDLE_HELP)
    p.add_argument("--key", required=True, help="Ed25519 private key (PEM) from 'medinfer keygen'")
    p.set_defaults(func=cmd_sign)

