"""CLI commands beyond one device: ``serve`` (extra [serve]), ``export-triton`` and ``score`` (extras [score],
[dask], [spark]). Registered by :func:`add_parsers` from ``medinfer.cli``; heavy imports stay in the commands."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .common import HELP_FORMAT, examples


def _bundles(args: list[str]) -> tuple[str, ...]:
    from .common import bundle_path

    return tuple(str(bundle_path(b)) for b in args)


def _providers(value: str | None) -> list[str] | None:
    return [p for p in value.split(",") if p] if value else None


def cmd_serve(args: argparse.Namespace) -> int:
    from ..fleet.http import configure_logging
    from ..fleet.serve import ServeConfig, serve

    configure_logging(args.log_format, args.access_log)
    options: dict[str, Any] = {}
    if args.max_concurrency is not None:
        options["max_concurrency"] = args.max_concurrency
    if args.http is not None:
        options["http"] = args.http
    config = ServeConfig(
        bundles=_bundles(args.bundles), host=args.host, port=args.port, max_body_bytes=int(args.max_body_mb * 2**20),
        max_queue=args.max_queue, deadline_ms=args.deadline_ms, audit=args.audit, audit_key=args.audit_key,
        audit_head=args.audit_head, audit_rotate_mb=args.audit_rotate_mb, audit_retain_days=args.audit_retain_days,
        providers=_providers(args.provider), variant=args.variant, require_signature=args.require_signature,
        trusted_keys=tuple(args.trusted_key), shutdown_timeout=args.shutdown_timeout, access_log=args.access_log,
        request_timeout=args.request_timeout, max_connections=args.max_connections, out_of_domain=args.out_of_domain,
        metrics_port=args.metrics_port, inline_below_ms=args.inline_below_ms, token_file=args.token_file,
        auth_open=tuple(_csv(args.auth_open) or ()), client_cert_scopes=_csv(args.client_cert_scopes),
        require_client_cert=_csv(args.require_client_cert), tls_cert=args.tls_cert, tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca, insecure=args.insecure, grpc_port=args.grpc_port,
        max_elements=args.max_elements, dynamic_batching=args.dynamic_batching, max_batch=args.max_batch,
        workers=args.workers, share_weights=args.share_weights, log_format=args.log_format, **options,
    )

    def announce(host: str, port: int, grpc_port: int | None = None) -> None:
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if config.tls_cert else "http"
        grpc = f"; gRPC on {shown}:{grpc_port}" if grpc_port is not None else ""
        print(f"medinfer serve: listening on {scheme}://{shown}:{port} ({len(config.bundles)} bundle(s); "
              f"/v2/health/ready once each passed its integrity check and self-test{grpc})", flush=True)

    serve(config, announce)
    print("medinfer serve: stopped", flush=True)
    return 0


def _csv(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


def cmd_serve_token(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..fleet.auth import parse_token_file
    from ..fleet.tokens import add_token, parse_expiry, revoke_token
    from ..timestamps import utc_text

    if args.action in ("add", "revoke") and not args.name:
        raise UsageError(f"medinfer serve-token {args.action} needs --name")
    if args.action == "add":
        token = add_token(args.token_file, args.name, _csv(args.scopes) or (), parse_expiry(args.expires))
        print(token)
        print(f"added '{args.name}' to {args.token_file} (its sha256 only). This is the only time the token is "
              "shown: give it to the client now (Authorization: Bearer <token>).", file=sys.stderr)
    elif args.action == "revoke":
        revoke_token(args.token_file, args.name)
        print(f"revoked '{args.name}' in {args.token_file} (a running server re-reads the file within a second)")
    else:
        with open(args.token_file, encoding="utf-8") as f:
            entries = parse_token_file(f.read(), args.token_file)
        for entry in entries.values():
            expiry = f"expires {utc_text(entry.expires)}" if entry.expires is not None else "no expiry"
            print(f"{entry.name}\t{','.join(sorted(entry.scopes))}\t{expiry}{' (EXPIRED)' if entry.expired() else ''}")
    return 0


def cmd_export_triton(args: argparse.Namespace) -> int:
    from ..fleet.triton.repository import TritonOptions, export_repository

    gpus = tuple(int(g) for g in args.gpus.split(",") if g.strip()) if args.gpus else ()
    options = TritonOptions(backend=args.backend, max_batch_size=args.max_batch_size, instances=args.count,
                            max_queue_delay_us=args.max_queue_delay_us, deadline_ms=args.deadline_ms,
                            site_packages=args.site_packages, instance_kind=args.instance_kind, gpus=gpus,
                            warmup=not args.no_warmup, decision=args.decision == "graph")
    folders = export_repository(_bundles(args.bundles), args.out, options, variant=args.variant, force=args.force)
    graph = "1/model.onnx" if args.backend == "onnxruntime" else "1/model.py + 1/bundle/"
    graph += "" if args.no_warmup else ", warmup/"
    for folder in folders:
        print(f"wrote {folder}/ (config.pbtxt, {graph}, manifest.json, model_card.md)")
    if args.backend == "python":
        print("run it with: tritonserver --model-repository " + args.out + " --backend-directory <PyTriton's "
              "tritonserver/backends> (medinfer + onnxruntime must be importable by the stub's Python)")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ..fleet.score import ScoreOptions, score

    options: dict[str, Any] = {}
    if args.workers is not None:
        options["workers"] = args.workers
    opts = ScoreOptions(engine=args.engine, id_column=args.id_column, batch_rows=args.batch_rows,
                        threads_per_worker=args.threads_per_worker, on_error=args.on_error, cast=args.cast,
                        variant=args.variant, master=args.master, overwrite=args.overwrite, **options)
    last = [0.0]

    def progress(done: int, total: int, unit: str) -> None:
        now = time.monotonic()
        if args.quiet or (now - last[0] < 1.0 and done < total):
            return
        last[0] = now
        share = f" ({100 * done / total:.0f}%)" if total else ""
        print(f"medinfer score [{opts.engine}]: {done}/{total} {unit}{share}", file=sys.stderr, flush=True)

    summary = score(_bundles([args.bundle])[0], args.input, args.out, opts, progress)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"scored {summary['rows']} rows of {args.input} with {summary['model']} {summary['version']} on "
              f"{opts.engine} in {summary['seconds']:.1f} s ({summary['rows_per_s']:,.0f} rows/s) -> {args.out}")
    return 0


def add_parsers(sub: Any) -> None:
    """Add serve, serve-token, export-triton and score to the ``medinfer`` sub-command parser."""
    for add in (_serve_parser, _serve_token_parser, _export_triton_parser, _score_parser):
        add(sub)


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve bundles over the Open Inference Protocol (KServe v2 HTTP) [serve]",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer serve bundles/drug_activity_rf bundles/clinical_notes_tfidf --port 8000"
                           "  # 127.0.0.1 only",
                           "medinfer serve bundles/*/ --audit audit.jsonl --deadline-ms 200 --max-concurrency 2",
                           "medinfer serve lung_nodule_cnn --host 0.0.0.0 --require-signature --trusted-key "
                           "signing.pub.pem"))
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundles to serve (folders or names), each under "
                                                                "its manifest name")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one, printed)")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body (default 64 MiB)")
    p.add_argument("--max-concurrency", type=int, default=None, help="requests running at once (default: cores)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting; more are refused with 503")
    p.add_argument("--deadline-ms", type=float, default=None, help="per-request deadline, queueing included (504)")
    p.add_argument("--audit", default=None, metavar="LOG", help="hash-chained audit trail, one record per request")
    p.add_argument("--audit-key", default=None, metavar="FILE", help="keyed audit chain (HMAC) under this device key")
    p.add_argument("--audit-head", action="store_true",
                   help="anchored audit trail: LOG.head and LOG.counter after each record (detect truncation)")
    p.add_argument("--audit-rotate-mb", type=float, default=None, metavar="MIB",
                   help="rotate the audit trail's file past this size; the chain runs on across files")
    p.add_argument("--audit-retain-days", type=float, default=None, metavar="DAYS",
                   help="delete rotated audit files whose last record is older than this (at least 183)")
    p.add_argument("--variant", default=None, help="serve this variant of every bundle, e.g. int8 (default: fp32)")
    p.add_argument("--provider", default=None, help="comma-separated preference list, e.g. cuda,cpu")
    p.add_argument("--trusted-key", action="append", default=[], metavar="PEM",
                   help="trusted Ed25519 public key (repeatable); with --require-signature an unsigned bundle fails")
    p.add_argument("--require-signature", action="store_true",
                   help="refuse a bundle unless its manifest.sig verifies with a --trusted-key")
    p.add_argument("--shutdown-timeout", type=float, default=30.0, help="seconds to finish running requests")
    p.add_argument("--access-log", action="store_true",
                   help="log every request as one JSON object (id, model, version, status, durations) on stderr")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="json: every log line is one JSON object (default text)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="also serve /metrics (Prometheus) alone on this port, like Triton's 8002; /metrics is "
                        "always on the main port")
    p.add_argument("--http", choices=("httptools", "h11"), default=None,
                   help="HTTP parser: httptools on uvloop (default when installed) or uvicorn's pure-Python h11")
    p.add_argument("--inline-below-ms", type=float, default=1.0,
                   help="models whose batch-1 prediction takes less run on the event loop, without a worker "
                        "thread hand-off (default 1.0; 0: every model in the worker pool)")
    p.add_argument("--request-timeout", type=float, default=30.0,
                   help="seconds a connection has to send a whole request; idle or trickling ones are closed")
    p.add_argument("--out-of-domain", choices=("flag", "no_result"), default="flag",
                   help="a sample outside the applicability domain: flag it in 'in_domain' (default) or answer 422")
    p.add_argument("--max-connections", type=int, default=1024,
                   help="open connections at most; more are answered 503 (default 1024)")
    p.add_argument("--token-file", default=None, metavar="FILE",
                   help="bearer tokens (sha256 at rest, scoped, optionally expiring) from medinfer serve-token")
    p.add_argument("--auth-open", default="health", metavar="GROUPS",
                   help="endpoint groups that need no credential: health, metadata, infer, metrics, admin or none "
                        "(default health: orchestrators' probes stay open)")
    p.add_argument("--tls-cert", default=None, metavar="PEM", help="the server's certificate chain (HTTPS, TLS gRPC)")
    p.add_argument("--tls-key", default=None, metavar="PEM", help="the server certificate's private key")
    p.add_argument("--tls-client-ca", default=None, metavar="PEM",
                   help="mutual TLS: client certificates must chain to this CA (expired, self-signed or foreign "
                        "certificates fail the handshake)")
    p.add_argument("--client-cert-scopes", default=None, metavar="SCOPES",
                   help="scopes a verified client certificate grants (default with --tls-client-ca: "
                        "infer,metadata,metrics; none: a token is needed too)")
    p.add_argument("--require-client-cert", default=None, metavar="GROUPS",
                   help="endpoint groups that need a client certificate (default with --tls-client-ca: all but "
                        "--auth-open)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without authentication (a gateway in front authenticates)")
    p.add_argument("--grpc-port", type=int, default=None,
                   help="also serve KServe v2 gRPC (Triton's grpc_service.proto) on this port (0: any free port)")
    p.add_argument("--max-elements", type=int, default=1 << 20,
                   help="elements per input per call for inputs with a free axis besides the batch (e.g. a "
                        "sequence length); more are refused with 400 (default 1048576)")
    p.add_argument("--dynamic-batching", choices=("auto", "pool", "off"), default="auto",
                   help="requests for one model that wait at the same time run as one batch, each with its own "
                        "answer and audit record (auto: every model with a batch axis; pool: only models that run "
                        "in the worker pool; off)")
    p.add_argument("--max-batch", type=int, default=64, help="requests per dynamic batch at most (default 64)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes behind the one port (and gRPC port), each with its own models, audit "
                        "appends and counters (default 1; repository load/unload needs 1)")
    p.add_argument("--no-share-weights", dest="share_weights", action="store_false",
                   help="with --workers: each worker keeps its own pre-packed copy of the weights (default: one "
                        "copy mapped by every worker, pre-packing off)")
    p.set_defaults(func=cmd_serve)



def _serve_token_parser(sub: Any) -> None:
    p = sub.add_parser("serve-token", help="add, revoke or list the bearer tokens of medinfer serve",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer serve-token add --token-file tokens.json --name ris-gateway --scopes "
                           "infer,metadata --expires 90d",
                           "medinfer serve-token revoke --token-file tokens.json --name ris-gateway",
                           "medinfer serve-token list --token-file tokens.json"))
    p.add_argument("action", choices=("add", "revoke", "list"),
                   help="add: make a token (printed once) and store its sha256; revoke: remove one; list: names, "
                        "scopes, expiry")
    p.add_argument("--token-file", required=True, metavar="FILE", help="the token file (created 0600 by add)")
    p.add_argument("--name", default=None, help="the token's name (logged and audited instead of the token)")
    p.add_argument("--scopes", default="infer,metadata", help="comma-separated: infer, metadata, metrics, admin "
                                                             "(default infer,metadata)")
    p.add_argument("--expires", default=None, help="30d, 12h, 90m, an ISO 8601 time with a zone, or never "
                                                   "(default never)")
    p.set_defaults(func=cmd_serve_token)


def _export_triton_parser(sub: Any) -> None:
    p = sub.add_parser("export-triton", help="write a Triton model repository (onnxruntime or python backend)",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer export-triton bundles/*/ --out triton_repo  # Triton's onnxruntime backend",
                           "medinfer export-triton bundles/*/ --out triton_repo --backend python --force"
                           "  # medinfer inside Triton"))
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundles to export (each is verified first)")
    p.add_argument("--out", required=True, metavar="REPO", help="model repository folder")
    p.add_argument("--backend", choices=("onnxruntime", "python"), default="onnxruntime",
                   help="onnxruntime (default): Triton runs the graph; python: Triton runs medinfer (validation, "
                        "decision, audit) in its Python backend")
    p.add_argument("--max-batch-size", type=int, default=64, help="0 disables batching (default 64)")
    p.add_argument("--count", "--instances", dest="count", type=int, default=1,
                   help="model instances per model (per GPU with --instance-kind gpu)")
    p.add_argument("--instance-kind", choices=("cpu", "gpu"), default="cpu", help="Triton's KIND_CPU or KIND_GPU")
    p.add_argument("--gpus", default=None, help="GPU instances: comma-separated device ids (default: every GPU)")
    p.add_argument("--decision", choices=("graph", "none"), default="graph",
                   help="onnxruntime backend: append the decision rule (labels, scores) to the graph (default), "
                        "or write the bundle's graph unchanged")
    p.add_argument("--no-warmup", action="store_true", help="no model_warmup from the golden input")
    p.add_argument("--max-queue-delay-us", type=int, default=100, help="dynamic batching delay")
    p.add_argument("--variant", default=None, help="graph to export (default: int8 on CPU when shipped, else default)")
    p.add_argument("--deadline-ms", type=float, default=None, help="python backend: medinfer's per-call deadline")
    p.add_argument("--site-packages", default=None,
                   help="python backend: site-packages holding medinfer + onnxruntime for the stub's Python")
    p.add_argument("--force", action="store_true", help="replace existing model folders")
    p.set_defaults(func=cmd_export_triton)


def _score_parser(sub: Any) -> None:
    p = sub.add_parser("score", help="batch-score a Parquet/CSV archive with spark, dask or locally",
                       formatter_class=HELP_FORMAT, epilog=examples(
                           "medinfer score bundles/drug_activity_rf archive.parquet --out scored.parquet"
                           "  # local engine ([score])",
                           "medinfer score drug_activity_rf archive/ --out scored --engine spark --workers 4",
                           "medinfer score clinical_notes_tfidf notes.csv --out scored.csv --on-error no_result"))
    p.add_argument("bundle", help="the bundle to score with (folder or name)")
    p.add_argument("input", help="Parquet or CSV file, or a folder of them")
    p.add_argument("--out", required=True, help="output: a file (local) or a folder of parts (dask, spark); "
                                                ".csv for CSV, else Parquet")
    p.add_argument("--engine", choices=("local", "dask", "spark"), default="local",
                   help="local (default; [score]), dask ([dask]) or spark ([spark], needs Java 17+)")
    p.add_argument("--id-column", default="id", help="row-id column, copied to the output (default id)")
    p.add_argument("--batch-rows", type=int, default=65536, help="rows per predict call (default 65536)")
    p.add_argument("--workers", type=int, default=None, help="parallel workers (default: cores)")
    p.add_argument("--threads-per-worker", type=int, default=None,
                   help="onnxruntime intra-op threads per worker (default: the bundle's measured profile)")
    p.add_argument("--on-error", choices=("fail", "no_result"), default="fail",
                   help="a row the model refuses: stop (default) or mark it no_result and go on")
    p.add_argument("--cast", choices=("safe", "same_kind"), default="safe", help="dtype casting policy")
    p.add_argument("--variant", default=None, help="score with this variant, e.g. int8 (default: fp32)")
    p.add_argument("--master", default=None, help="spark: cluster URL (default local[workers] on 127.0.0.1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_score)

