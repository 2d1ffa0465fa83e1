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

from ..errors import AuditError, MedinferError, exit_code
from .common import bundle_path, providers_arg, table

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
    print("\n" + table([[k, v.precision, v.file] for k, v in m.variants.items()], ["variant", "precision", "file"]))
    print("\n" + table([[k, v.size, v.sha256[:16] + "…"] for k, v in m.files.items()], ["file", "bytes", "sha256"]))
    sources = "; ".join(f"{s.package}=={s.version}:{s.file}" for s in m.data.sources)
    print(f"\ndata: {sources}{' (SYNTHETIC)' if m.data.synthetic else ''}")
    return 0


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
                            "max_abs_diff": report.max_abs_diff, "providers": list(model.providers)})
        except MedinferError as exc:
            failed += 1
            results.append({"bundle": arg, "ok": False, "error": type(exc).__name__, "code": exc.code,
                            "exit_code": exit_code(exc), "message": str(exc)})
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    else:
        for r in results:
            if r["ok"]:
                signed = f", signature by key {r['signed_by']}" if r["signed_by"] else ""
                print(f"OK    {r['bundle']}: {r['name']} {r['version']}, {r['files']} files verified (sha256)"
                      f"{signed}, self-test {r['self_test']} on {', '.join(r['providers'])}")
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
    model = load(bundle_path(args.bundle), providers_arg(args.provider), variant=variant, cast=args.cast)
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
        print(table(rows, ["#", "label", f"score ({model.manifest.decision.positive_label})"]))
    elif labels is not None:
        rows = [[i, labels[i], float(scores[i].max())] for i in range(len(pred))]
        print(table(rows, ["#", "label", "probability"]))
    else:
        units = next((o.units for o in model.manifest.outputs if o.name == model.manifest.decision.score_output), "")
        rows = [[i, float(v) if scores.ndim == 1 else list(map(float, v))] for i, v in enumerate(scores)]
        print(table(rows, ["#", f"prediction{f' ({units})' if units else ''}"]))
    print(f"\n{pred.model} {pred.version} [{pred.variant}] sha256 {pred.model_sha256[:16]}… on {pred.provider}")
    if args.fhir_out:
        print(f"FHIR R4 transaction Bundle written to {args.fhir_out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ..manifest import load_manifest
    from ..tools.bench import bench_bundle, format_records

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
    p = sub.add_parser("info", help="show a bundle's contract, metrics and files (or --providers)")
    p.add_argument("bundle", nargs="?", help="bundle folder or name under ./bundles")
    p.add_argument("--providers", action="store_true", help="list the execution providers this machine offers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("list", help="summarise every bundle in a folder (default ./bundles)")
    p.add_argument("root", nargs="?", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("verify", help="check every file's sha256 (and signature) and run the golden self-test")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE")
    p.add_argument("--trusted-key", action="append", default=[], metavar="PEM",
                   help="trusted Ed25519 public key; with --require-signature an unsigned bundle fails")
    p.add_argument("--require-signature", action="store_true")
    p.add_argument("--placement", action="store_true", help="profile one run: which provider ran which nodes")
    p.add_argument("--variant", default=None)
    p.add_argument("--provider", default=None, help="comma-separated preference list, e.g. cuda,cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("predict", help="predict from a .npy/.npz/.csv/.tsv/.json/.txt file (or .dcm for CT models)")
    p.add_argument("bundle")
    p.add_argument("input")
    p.add_argument("--variant", default=None)
    p.add_argument("--provider", default=None, help="comma-separated preference list, e.g. cuda,cpu")
    p.add_argument("--cast", choices=("safe", "same_kind"), default="safe", help="dtype casting policy for .npy")
    p.add_argument("--json", action="store_true")
    dicom = p.add_argument_group("DICOM CT input (bundles whose manifest declares CT in HU; needs [dicom])")
    dicom.add_argument("--center", default=None, metavar="ROW,COL",
                       help="score one patch centred here (default: the whole slice, sliding window)")
    dicom.add_argument("--stride", type=int, default=None, help="sliding-window stride in pixels (manifest default)")
    dicom.add_argument("--frame", type=int, default=None, help="frame of a multi-frame file (default 0)")
    dicom.add_argument("--patchwise", action="store_true",
                       help="score patch by patch (any stride) even when the bundle ships a one-pass slice variant")
    dicom.add_argument("--overlay", default=None, metavar="OUT.png", help="write a PNG heat-map overlay")
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

    p = sub.add_parser("bench", help="SingleStream latency, throughput, cold start and memory of bundle(s)")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE")
    p.add_argument("--variant", default="all", help="a variant name, or 'all' (default)")
    p.add_argument("--provider", default=None, help="comma-separated preference list, e.g. cuda,cpu")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch size(s) (default 1)")
    p.add_argument("--min-queries", type=int, default=1000, help="at least this many timed queries (default 1000)")
    p.add_argument("--min-seconds", type=float, default=5.0, help="and at least this long (default 5 s)")
    p.add_argument("--warmup", type=int, default=50, help="warm-up queries (default 50)")
    p.add_argument("--no-cold", action="store_true", help="skip the fresh-process cold-start measurement")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", default=None, help="append one JSON line per record to this file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("keygen", help="create an Ed25519 key pair for signing bundles ([sign] extra)")
    p.add_argument("--out", required=True, help="private key file to create (PEM, mode 0600)")
    p.add_argument("--public", default=None, help="public key file (default: OUT with .pub.pem)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign", help="sign a bundle's manifest.json (which pins every file) -> manifest.sig")
    p.add_argument("bundle")
    p.add_argument("--key", required=True, help="Ed25519 private key (PEM) from 'medinfer keygen'")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("audit", help="verify an audit log's hash chain: 'medinfer audit verify LOG'")
    p.add_argument("action", choices=("verify",))
    p.add_argument("log")
    p.add_argument("--key", default=None, metavar="FILE", help="device key of a keyed log (HMAC chain)")
    p.add_argument("--head", action="store_true", help="also check LOG.head: detects records deleted from the end")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)
