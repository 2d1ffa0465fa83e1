"""The device commands of ``medinfer``: info, list, verify, predict, bench, keygen, sign, audit.

They need numpy + onnxruntime only (keygen/sign: [sign]; DICOM input: [dicom]). Registered by
:func:`add_parsers`; every import beyond argparse happens inside the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AuditError, DriftAlert, MedinferError, UsageError, exit_code
from .common import HELP_FORMAT, bundle_path, examples, provider_fallback, providers_arg, table

if TYPE_CHECKING:
    from ..model import Model


# -- commands ---------------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from ..manifest import load_manifest

    if args.providers or not args.bundle:
        from ..providers import available_providers, diagnose

        avail = available_providers()
        diag = diagnose()
        if args.json:
            print(json.dumps({"available": avail, "diagnosis": diag}, indent=2))
        else:
            print("available providers (this onnxruntime build): " + ", ".join(avail) + "\n")
            print(table([[r["provider"], "yes" if r["usable"] else "no", r.get("missing", ""), r["why"]]
                         for r in diag], ["provider", "usable", "missing", "why"]))
        if not args.bundle:
            return 0
    manifest = load_manifest(bundle_path(args.bundle))
    if args.json:
        print(json.dumps(manifest.to_json(), indent=2))
        return 0
    m = manifest
    print(f"{m.name} {m.version} — {m.task}  (schema {m.schema_version}, created {m.created})")
    if m.description:
        print(m.description)
    print()
    print(table([[t.name, t.dtype, list(t.shape), t.range and list(t.range) or "", t.units or ""] for t in m.inputs],
                ["input", "dtype", "shape", "range", "units"]))
    print()
    print(table([[t.name, t.dtype, list(t.shape)] for t in m.outputs], ["output", "dtype", "shape"]))
    if m.labels:
        print(f"\nlabels: {', '.join(m.labels)}" + (f"; threshold {m.decision.threshold:g} for "
                                                     f"'{m.decision.positive_label}'" if m.decision.threshold
                                                     is not None else ""))
    rows = [[k, v.value, f"[{v.ci95[0]:.4g}, {v.ci95[1]:.4g}]" if v.ci95 else ""] for k, v in m.metrics.heldout.items()]
    if m.metrics.baseline:
        rows += [[f"{k} ({m.metrics.baseline.name})", v.value, f"[{v.ci95[0]:.4g}, {v.ci95[1]:.4g}]" if v.ci95 else ""]
                 for k, v in m.metrics.baseline.heldout.items()]
    print("\n" + table(rows, ["held-out metric", "value", "95% CI"]))
    print("\n" + _domain_text(m))
    print("\n" + table([[k, v.precision, v.file] for k, v in m.variants.items()], ["variant", "precision", "file"]))
    print("\n" + table([[k, v.size, v.sha256[:16] + "…"] for k, v in m.files.items()], ["file", "bytes", "sha256"]))
    sources = "; ".join(f"{s.package}=={s.version}:{s.file}" for s in m.data.sources)
    print(f"\ndata: {sources}{' (SYNTHETIC)' if m.data.synthetic else ''}")
    return 0


def _domain_text(m: Any) -> str:
    d = m.domain
    if d is None:
        return ("domain guard: none (this bundle was built before medinfer's applicability-domain guard: it answers "
                "every input within the declared ranges, however unlike its training data)")
    lines = [f"domain guard: {d.method}", f"  threshold {d.threshold:.4g} (accepts {d.coverage:.0%} of held-out "
             f"in-domain data; measured {d.evaluation.get('acceptance', float('nan')):.1%})"]
    for name, s in (d.evaluation.get("shifts") or {}).items():
        lines.append(f"  AUROC {s.get('auroc', float('nan')):.3f} against {name} ({s.get('kind', '')}), "
                     f"{s.get('rejected', float('nan')):.0%} of it flagged")
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    from ..manifest import load_manifest

    root = Path(args.root or os.environ.get("MEDINFER_BUNDLES", "bundles"))
    rows, docs = [], []
    for folder in sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []:
        try:
            m = load_manifest(folder)
        except MedinferError as exc:
            rows.append([folder.name, "INVALID", str(exc)[:60], "", "", ""])
            continue
        key, metric = next(iter(sorted(m.metrics.heldout.items(), key=lambda kv: _HEADLINE.get(kv[0], 9))))
        ci = f" [{metric.ci95[0]:.3f}, {metric.ci95[1]:.3f}]" if metric.ci95 else ""
        size = sum(e.size for n, e in m.files.items() if e.role in ("model", "variant"))
        rows.append([m.name, m.version, m.task, f"{key} {metric.value:.3f}{ci}",
                     f"{m.parity.max_abs_diff:.1e}", f"{size / 1e6:.2f} MB",
                     "synthetic" if m.data.synthetic else "real"])
        docs.append(m.to_json())
    if args.json:
        print(json.dumps(docs))
    elif rows:
        print(table(rows, ["bundle", "version", "task", "held-out (95% CI)", "parity", "graphs", "data"]))
    else:
        print(f"no bundles in {root}/")
    return 0


_HEADLINE = {"roc_auc": 0, "macro_f1": 1, "rmse": 2, "accuracy": 3}


def cmd_verify(args: argparse.Namespace) -> int:
    from ..loader import load

    failed = 0
    results = []
    for arg in args.bundles:
        try:
            model = load(bundle_path(arg), providers_arg(args.provider), variant=args.variant, self_test=False,
                         require_signature=args.require_signature, trusted_keys=args.trusted_key)
            report = model.self_test()
            placement = model.placement() if args.placement else None
            signature = model.signature
            results.append({"bundle": arg, "ok": True, "name": model.name, "version": model.version,
                            "signed_by": model.signed_by, "placement": placement,
                            "signature": signature.state if signature else "unsigned",
                            "signature_warning": signature.message if signature and signature.warning else None,
                            "files": len(model.manifest.files), "self_test": report.status,
                            "max_abs_diff": report.max_abs_diff, "providers": list(model.providers),
                            "runs_on": model.providers[0],
                            "provider_warning": provider_fallback(providers_arg(args.provider), model.providers)})
        except MedinferError as exc:
            failed += 1
            results.append({"bundle": arg, "ok": False, "error": type(exc).__name__, "code": exc.code,
                            "exit_code": exit_code(exc), "message": str(exc)})
    for r in results:  # on stderr also with --json: stdout stays machine-readable
        if r.get("provider_warning"):
            print(f"medinfer: warning: {r['bundle']}: {r['provider_warning']}", file=sys.stderr)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    else:
        for r in results:
            if r["ok"]:
                signed = f", signature by key {r['signed_by']}" if r["signed_by"] else ""
                print(f"OK    {r['bundle']}: {r['name']} {r['version']}, {r['files']} files verified (sha256)"
                      f"{signed}, self-test {r['self_test']}; runs on {r['runs_on']}"
                      + (f" (session providers: {', '.join(r['providers'])})" if len(r["providers"]) > 1 else ""))
                if r["placement"]:
                    pl = r["placement"]
                    nodes = ", ".join(f"{k.replace('ExecutionProvider', '')}: {v}" for k, v in pl["nodes"].items())
                    cpu = f"; the CPU ran {', '.join(pl['cpu_nodes'])}" if pl["cpu_nodes"] else ""
                    print(f"      nodes per provider: {nodes}{cpu}")
            else:
                print(f"FAIL  {r['bundle']}: {r['error']}: {r['message']}", file=sys.stderr)
    if failed:
        codes = [r["exit_code"] for r in results if not r["ok"]]
        return codes[0]
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ..loader import load
    from ..tools.dicom import is_dicom_file
    from ..tools.inputs import read_input

    variant = args.variant
    if is_dicom_file(args.input) and not args.patchwise and args.center is None:
        from ..manifest import load_manifest
        from ..tools.ct_slice import slice_variant_of

        # a whole slice in one convolutional pass when the bundle ships that variant (its gate proved it equal)
        variant = slice_variant_of(load_manifest(bundle_path(args.bundle)), args.variant) or args.variant
    model = load(bundle_path(args.bundle), providers_arg(args.provider), variant=variant, cast=args.cast,
                 out_of_domain=args.out_of_domain)
    if is_dicom_file(args.input):
        return _predict_dicom(model, args)
    if args.dicom_out:
        from ..errors import UsageError

        raise UsageError(f"--dicom-out needs a DICOM CT slice as input; {args.input} is not a DICOM file")
    at = _fhir_time(args) if args.fhir_out else None
    x = read_input(args.input, model)
    pred = model.predict(x)
    if args.fhir_out:
        _write_fhir(args, pred.to_fhir(args.fhir_subject, basis=args.fhir_basis, at=at, generic=args.fhir_generic))
    if args.json:
        print(json.dumps({**pred.to_dict(), **({"fhir_out": args.fhir_out} if args.fhir_out else {})}, indent=2))
        return 0
    labels = pred.labels
    scores = pred.scores
    if labels is not None and scores.ndim == 1:
        rows = [[i, labels[i], float(scores[i])] for i in range(len(pred))]
        headers = ["#", "label", f"score ({model.manifest.decision.positive_label})"]
    elif labels is not None:
        rows = [[i, labels[i], float(scores[i].max())] for i in range(len(pred))]
        headers = ["#", "label", "probability"]
    else:
        units = next((o.units for o in model.manifest.outputs if o.name == model.manifest.decision.score_output), "")
        rows = [[i, float(v) if scores.ndim == 1 else list(map(float, v))] for i, v in enumerate(scores)]
        headers = ["#", f"prediction{f' ({units})' if units else ''}"]
    if pred.domain_scores is not None and pred.in_domain is not None:
        for row, score, inside in zip(rows, pred.domain_scores, pred.in_domain):
            row.append(f"{'yes' if inside else 'NO'} ({float(score):.3g})")
        headers.append(f"in domain (score <= {model.manifest.domain.threshold:.3g})")  # type: ignore[union-attr]
    print(table(rows, headers))
    if pred.in_domain is not None and not pred.in_domain.all():
        print(f"\nWARNING: {int((~pred.in_domain).sum())} sample(s) lie outside the model's applicability domain: "
              "their answers are not backed by the training data", file=sys.stderr)
    print(f"\n{pred.model} {pred.version} [{pred.variant}] sha256 {pred.model_sha256[:16]}… on {pred.provider}")
    if args.fhir_out:
        print(f"FHIR R4 transaction Bundle written to {args.fhir_out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ..manifest import load_manifest
    from ..tools.bench import bench_bundle, format_records

    if args.check_profile:
        from .checks import check_profiles

        return check_profiles(args)
    args.batch, args.min_seconds = args.batch or [1], 5.0 if args.min_seconds is None else args.min_seconds
    records = []
    for arg in args.bundles:
        path = bundle_path(arg)
        variants = list(load_manifest(path).variants) if args.variant == "all" else [args.variant]
        for variant in variants:
            for batch in args.batch:
                record = bench_bundle(
                    path, variant=variant, providers=providers_arg(args.provider), batch=batch,
                    min_queries=args.min_queries, min_seconds=args.min_seconds, warmup_queries=args.warmup,
                    cold=not args.no_cold and batch == args.batch[0],
                )
                records.append(record)
                if args.out:
                    with open(args.out, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(record) + "\n")
                if not args.json:
                    print(f"measured {record['bundle']} [{variant}] batch {batch}: "
                          f"p50 {record['latency_us']['p50']:.1f} µs", file=sys.stderr)
    if args.json:
        print(json.dumps(records if len(records) > 1 else records[0], indent=2))
    else:
        print(format_records(records))
        env = records[0]["env"] if records else {}
        if env:
            cpu = env["cpu"]
            print(f"\n{cpu['model']} ({cpu['usable_cores']} usable cores; {' '.join(cpu['flags'])}); "
                  f"onnxruntime {env['onnxruntime']}; commit {env['git_commit']}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from ..signing import generate_keypair

    private, public, kid = generate_keypair(args.out, args.public)
    print(f"private key {private} (mode 0600, keep it off devices)\npublic key  {public} (key id {kid})")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from ..loader import load
    from ..signing import sign_bundle

    path = bundle_path(args.bundle)
    load(path, self_test=False)  # never sign a bundle whose files do not match its manifest
    doc = sign_bundle(path, args.key)
    print(f"signed {path}/manifest.json with key {doc['key_id']} -> {path}/manifest.sig")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    if args.action == "drift":
        return _audit_drift(args)
    from ..audit import verify_log

    report = verify_log(args.log, key=args.key, head=args.head)
    if args.json:
        print(json.dumps(report.__dict__))
    elif report.ok:
        tail = " (a torn last line from a crash was ignored)" if report.torn_tail else ""
        mode = ("keyed (HMAC) " if report.keyed else "") + "hash chain" + (" and head" if report.head_checked else "")
        print(f"OK    {args.log}: {report.records} records, {mode} intact{tail}; last hash {report.last_hash}")
    else:
        print(f"FAIL  {args.log}: {report.problem} ({report.records} records verified before it)", file=sys.stderr)
    return 0 if report.ok else exit_code(AuditError("verification failed"))


def _audit_drift(args: argparse.Namespace) -> int:
    from ..tools import drift

    if args.max_share is not None and not 0.0 <= args.max_share <= 1.0:
        raise UsageError(f"--max-share {args.max_share!r}: expected a share between 0 and 1")
    windows = drift.drift(args.log, drift.parse_window(args.window), args.model)
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


def _predict_dicom(model: Model, args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..tools.dicom import format_result, predict_file, write_overlay

    centre = None
    if args.center:
        try:
            row, col = (int(v) for v in args.center.split(","))
        except ValueError:
            raise InputError(f"--center expects ROW,COL in pixels, e.g. 64,70; got {args.center!r}") from None
        centre = (row, col)
    if args.fhir_out:
        _fhir_time(args)  # refuse a bad subject or time before the work, not after
    result = predict_file(model, args.input, centre=centre, stride=args.stride, frame=args.frame)
    written: list[str] = []
    try:  # the scores are printed even when a file beside them cannot be written
        if args.overlay:
            write_overlay(result, args.overlay)
        sr_uid = None
        if args.dicom_out:
            from ..tools.dicom_out import KINDS, write_dicom

            outputs = write_dicom(model, result, args.dicom_out, secondary_capture=args.dicom_sc)
            result.extra["dicom_out"] = outputs.to_dict()
            sr_uid = outputs.sr_uid
            written += [f"DICOM {KINDS[kind]} written to {path}" for kind, path in outputs.files.items()]
            written += [f"DICOM {KINDS[kind]} NOT written: {why}" for kind, why in outputs.skipped.items()]
        if args.fhir_out:
            from ..tools.fhir import slice_bundle

            _write_fhir(args, slice_bundle(model, result, subject=args.fhir_subject, basis=args.fhir_basis,
                                           sr_uid=sr_uid))
            result.extra["fhir_out"] = args.fhir_out
            written.append(f"FHIR R4 transaction Bundle written to {args.fhir_out}")
    finally:
        print(json.dumps(result.to_dict(), indent=2) if args.json else "\n".join([format_result(result), *written]),
              flush=True)
    return 0


def _fhir_time(args: argparse.Namespace) -> Any:
    """--fhir-time as a datetime (None: now); checks --fhir-subject is given and is a reference."""
    from ..errors import UsageError
    from ..tools.fhir import check_subject, parse_time

    if not args.fhir_subject:
        raise UsageError("--fhir-out needs --fhir-subject REF, the FHIR reference of the patient the input came "
                         "from (e.g. Patient/123)")
    check_subject(args.fhir_subject)
    return parse_time(args.fhir_time)


def _write_fhir(args: argparse.Namespace, bundle: dict[str, Any]) -> None:
    path = Path(args.fhir_out)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def add_parsers(sub: Any) -> None:
    """Add the device commands to the ``medinfer`` sub-command parser."""
    bundle_help = "bundle folder, or the name of a bundle under $MEDINFER_BUNDLES (default ./bundles)"
    provider_help = ("execution providers as a comma-separated preference list, e.g. cuda,cpu (default: cpu); "
                     "names one this machine lacks are skipped, with a warning when the first choice is")
    variant_help = "run a variant of the bundle, e.g. int8 (default: the fp32 graph); 'medinfer info' lists them"
    json_help = "print JSON for machines instead of tables for people"

    p = sub.add_parser("info", help="show a bundle's contract, metrics and files (or --providers)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer info bundles/drug_activity_rf  # contract, metrics with CIs, files, provenance",
                           "medinfer info drug_activity_rf --json  # the whole manifest as JSON",
                           "medinfer info --providers  # which execution providers this machine offers, and why not"))
    p.add_argument("bundle", nargs="?", help=bundle_help + "; omit it with --providers")
    p.add_argument("--providers", action="store_true", help="list the execution providers this machine offers")
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("list", help="summarise every bundle in a folder (default ./bundles)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer list  # every bundle under ./bundles: version, task, held-out metric, size",
                           "medinfer list /opt/models --json"))
    p.add_argument("root", nargs="?", default=None,
                   help="folder holding bundle folders (default: $MEDINFER_BUNDLES or ./bundles)")
    p.add_argument("--json", action="store_true", help=json_help + " (one manifest per bundle)")
    p.set_defaults(func=cmd_list)

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
    p.add_argument("--variant", default=None, help=variant_help)
    p.add_argument("--provider", default=None, help=provider_help)
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("predict", help="predict from a .npy/.npz/.csv/.tsv/.json/.txt file (or .dcm for CT models)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer predict bundles/drug_activity_rf rows.csv  # one row per sample; a header names "
                           "the features",
                           "medinfer predict clinical_notes_tfidf report.txt --json  # a .txt file is one document",
                           "medinfer predict lung_nodule_cnn scan.dcm --overlay heat.png  # a CT slice, sliding window",
                           "medinfer predict glucose_lstm cgm.npy --fhir-out forecast.json --fhir-subject Patient/123"))
    p.add_argument("bundle", help=bundle_help)
    p.add_argument("input", help="input file: .npy .npz .csv .tsv .json, .txt (one text document), or a DICOM CT "
                                 "slice for bundles that take CT")
    p.add_argument("--variant", default=None, help=variant_help)
    p.add_argument("--provider", default=None, help=provider_help)
    p.add_argument("--cast", choices=("safe", "same_kind"), default="safe",
                   help="dtype casting: safe (default) refuses float64 for a float32 model, same_kind allows it")
    p.add_argument("--json", action="store_true", help=json_help + " (labels, scores, provenance)")
    p.add_argument("--out-of-domain", choices=("flag", "no_result"), default="flag",
                   help="samples outside the applicability domain: flag them (default) or give no answer (exit 5)")
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

    p = sub.add_parser("bench", help="SingleStream latency, throughput, cold start and memory of bundle(s)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer bench bundles/drug_activity_rf  # every variant, batch 1, >= 1000 queries and 5 s",
                           "medinfer bench bundles/*/ --batch 1 64 --json --out bench.jsonl",
                           "medinfer bench lung_nodule_cnn --variant int8 --min-queries 300 --min-seconds 1 --no-cold",
                           "medinfer bench bundles/drug_activity_rf --check-profile  # does the shipped profile still "
                           "beat onnxruntime's defaults here? exit 15 when it loses"))
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="one or more bundles (folders or names)")
    p.add_argument("--variant", default="all", help="a variant name, or 'all' (default)")
    p.add_argument("--provider", default=None, help=provider_help)
    p.add_argument("--batch", type=int, nargs="+", default=None,
                   help="batch size(s) (default 1; with --check-profile the sizes the export measured, 1 and 64)")
    p.add_argument("--min-queries", type=int, default=1000, help="at least this many timed queries (default 1000)")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="and at least this long (default 5 s; with --check-profile: seconds of interleaved timing per "
                        "batch size, default 3)")
    p.add_argument("--warmup", type=int, default=50, help="warm-up queries (default 50)")
    p.add_argument("--no-cold", action="store_true", help="skip the fresh-process cold-start measurement")
    p.add_argument("--json", action="store_true", help=json_help + " (one record per bundle, variant and batch)")
    p.add_argument("--out", default=None, help="append one JSON line per record to this file")
    p.add_argument("--check-profile", action="store_true",
                   help="time the bundle's session profile against onnxruntime's default options, interleaved, and "
                        "say whether it still wins on this machine (exit 15 when it loses in every round)")
    p.add_argument("--rounds", type=int, default=7, help="with --check-profile: interleaved rounds (default 7)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("keygen", help="create an Ed25519 key pair for signing bundles ([sign] extra)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer keygen --out signing.pem  # also writes signing.pub.pem, the key devices trust"))
    p.add_argument("--out", required=True, help="private key file to create (PEM, mode 0600)")
    p.add_argument("--public", default=None, help="public key file (default: OUT with .pub.pem)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign", help="sign a bundle's manifest.json (which pins every file) -> manifest.sig",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer sign bundles/lung_nodule_cnn --key signing.pem  # verifies the files first"))
    p.add_argument("bundle", help=bundle_help)
    p.add_argument("--key", required=True, help="Ed25519 private key (PEM) from 'medinfer keygen'")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("audit", help="check an audit log: 'medinfer audit verify LOG', 'medinfer audit drift LOG'",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer audit verify audit.jsonl  # hash chain: edits, deletions, reordering",
                           "medinfer audit verify audit.jsonl --key audit.key --head  # keyed chain + head file",
                           "medinfer audit drift audit.jsonl --window 1h --max-share 0.05 --plot drift.png"))
    p.add_argument("action", choices=("verify", "drift"),
                   help="verify: check the hash chain; drift: out-of-domain share per time window")
    p.add_argument("log", help="the audit log (JSON lines) written by load(..., audit=...) or serve --audit")
    p.add_argument("--window", default="1h", help="drift: window length, e.g. 15m, 1h, 1d (default 1h)")
    p.add_argument("--max-share", type=float, default=None,
                   help="drift: exit 14 when a window's out-of-domain share is above this (e.g. 0.05)")
    p.add_argument("--model", default=None, help="drift: only this model's records")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="drift: draw the share and score quantiles")
    p.add_argument("--key", default=None, metavar="FILE", help="device key of a keyed log (HMAC chain)")
    p.add_argument("--head", action="store_true", help="also check LOG.head: detects records deleted from the end")
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(func=cmd_audit)
