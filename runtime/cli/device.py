"""The device commands of ``medinfer``: info, list, verify, predict, bench, keygen, sign (audit: :mod:`.audit`).

They need numpy + onnxruntime only (keygen/sign: [sign]; DICOM input: [dicom]). Registered by
:func:`medinfer.cli.device_args.add_parsers`; every import beyond argparse happens inside the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LossyCastError, MedinferError, exit_code
from .clinical import check_outputs, fhir_time, predict_dicom, write_fhir
from .common import bundle_path, provider_fallback, providers_arg, table
from .features import data_lines, info_extras

if TYPE_CHECKING:
    pass


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
    for line in info_extras(m):
        print(line)
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
    e = m.explanation
    print("\nexplanation: " + (f"{e.method} of the {e.explains} ({'exact' if e.exact else 'baseline: ' + e.baseline}); "
                              f"fidelity: area between curves {e.fidelity.get('gain', float('nan')):.4g} on "
                              f"{e.fidelity.get('n')} held-out samples (medinfer predict ... --explain)" if e else
                              "none (built before explanations: re-export to add one)"))
    print("\n" + table([[k, v.precision, v.file] for k, v in m.variants.items()], ["variant", "precision", "file"]))
    print("\n" + table([[k, v.size, v.sha256[:16] + "…"] for k, v in m.files.items()], ["file", "bytes", "sha256"]))
    print("\n" + "\n".join(data_lines(m)))
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
                     f"{s.get('refused', s.get('rejected', float('nan'))):.0%} of it flagged")
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    from ..manifest import load_manifest

    root = Path(args.root or os.environ.get("MEDINFER_BUNDLES", "bundles"))
    rows, docs = [], []
    for folder in sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []:
        try:
            m = load_manifest(folder)
        except MedinferError as exc:
            rows.append([folder.name, "INVALID", str(exc)[:60], "", "", "", ""])
            continue
        ranked = sorted(m.metrics.heldout.items(), key=lambda kv: _HEADLINE.get(kv[0], 9))
        if ranked:
            key, metric = ranked[0]
            ci = f" [{metric.ci95[0]:.3f}, {metric.ci95[1]:.3f}]" if metric.ci95 else ""
            headline = f"{key} {metric.value:.3f}{ci}"
        else:  # e.g. a model brought without labels: nothing was measured, and nothing is shown as if it were
            headline = "none (no labelled held-out data)"
        size = sum(e.size for n, e in m.files.items() if e.role in ("model", "variant"))
        rows.append([m.name, m.version, m.task, headline,
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
            explanation = _explanation_check(model)
            placement = model.placement() if args.placement else None
            signature = model.signature
            results.append({"bundle": arg, "ok": True, "name": model.name, "version": model.version,
                            "signed_by": model.signed_by, "placement": placement,
                            "signature": signature.state if signature else "unsigned",
                            "signature_warning": signature.message if signature and signature.warning else None,
                            "files": len(model.manifest.files), "self_test": report.status,
                            "max_abs_diff": report.max_abs_diff, "explanation": explanation,
                            "providers": list(model.providers),
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
                      f"{signed}, self-test {r['self_test']}"
                      + (f", explanation ({r['explanation']}) checked" if r["explanation"] else "")
                      + f"; runs on {r['runs_on']}"
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


def _explanation_check(model: Any) -> str | None:
    """The bundle's explanation method after its graph's golden check (None: no explanation, or a whole-slice
    variant, whose windows are explained by the patch variant). Raises what ``Model.explain`` would."""
    manifest = model.manifest
    if manifest.explanation is None or manifest.variants[model.variant].inputs is not None:
        return None
    from ..explain import Explainer

    Explainer.for_model(model)
    return str(manifest.explanation.method)


def cmd_predict(args: argparse.Namespace) -> int:
    from ..loader import load
    from ..tools.dicom import is_dicom_file
    from ..tools.tabular import read_rows

    variant = args.variant
    if is_dicom_file(args.input) and not args.patchwise and args.center is None:
        from ..manifest import load_manifest
        from ..tools.ct_slice import slice_variant_of

        # a whole slice in one convolutional pass when the bundle ships that variant (its gate proved it equal)
        variant = slice_variant_of(load_manifest(bundle_path(args.bundle)), args.variant) or args.variant
    model = load(bundle_path(args.bundle), providers_arg(args.provider), variant=variant, cast=args.cast,
                 out_of_domain=args.out_of_domain)
    if is_dicom_file(args.input):
        return predict_dicom(model, args)
    if args.dicom_out:
        from ..errors import UsageError

        raise UsageError(f"--dicom-out needs a DICOM CT slice as input; {args.input} is not a DICOM file")
    at = fhir_time(args) if args.fhir_out else None
    check_outputs(args)
    ids, x = read_rows(args.input, model, args.id_column)
    if args.on_error == "item":  # each item answered or given its own reason (cli/answers.py)
        from .answers import predict_items

        return predict_items(model, args, ids, x, at)
    try:
        pred = model.predict(x, explain=args.explain)
    except LossyCastError as exc:  # the remedy on this path is the CLI's own flag, not a Python call
        raise LossyCastError(exc.head, f"Convert {args.input} to {model.input_checks[0].spec.dtype}, or pass "
                                       "--cast same_kind to accept the rounding") from None
    if args.fhir_out:
        from ..audit import input_digest
        from ..tools.fhir import to_fhir

        write_fhir(args, to_fhir(pred, args.fhir_subject, basis=args.fhir_basis, at=at, generic=args.fhir_generic,
                                 input_sha256=input_digest(model.prepare(x)[0])))
    if args.json:
        print(json.dumps({**pred.to_dict(), **({"ids": ids} if ids is not None else {}),
                          **({"fhir_out": args.fhir_out} if args.fhir_out else {})}, indent=2))
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
    if ids is not None:
        rows, headers = [[ids[i], *row[1:]] for i, row in enumerate(rows)], [args.id_column or "id", *headers[1:]]
    if pred.domain_scores is not None and pred.in_domain is not None:
        for row, score, inside in zip(rows, pred.domain_scores, pred.in_domain):
            row.append(f"{'yes' if inside else 'NO'} ({float(score):.3g})")
        headers.append(f"in domain (score <= {model.manifest.domain.threshold:.3g})")  # type: ignore[union-attr]
    print(table(rows, headers))
    if pred.explanation is not None:
        from ..tools.explain_text import lines

        print("\n" + "\n".join(lines(pred.explanation)))
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
    if args.out:  # appended to as records come: a regular file or a new name only (never a FIFO or a device)
        from ..writing import check_target

        check_target(args.out, "--out")
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
