"""The argument parser of ``python -m benchmarks`` (kept apart from the commands themselves)."""

from __future__ import annotations

import argparse

from . import history
from .peers import KNOWN
from .slice import FULL as SLICE_FULL
from .slice import SIZES as SLICE_SIZES
from .suite import FULL


def _bundle_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundles", default="bundles", help="folder of built bundles (default: bundles)")
    p.add_argument("--models", nargs="*", default=None, help="only these bundles")


def _gate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=float, default=history.DEFAULT_THRESHOLD,
                   help="relative worsening of a ratio that fails the gate (default 0.15)")
    p.add_argument("--window", type=int, default=history.DEFAULT_WINDOW,
                   help="earlier full runs on this CPU whose median is the baseline (default 5)")
    p.add_argument("--require-baseline", action="store_true",
                   help="exit 3 when this CPU has no earlier full run (default: say so loudly and pass)")
    p.add_argument("--history", default=None, help="history file (default: benchmarks/history/<machine>.jsonl)")


def _slice_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slice-seconds", type=float, default=SLICE_FULL["seconds"],
                   help="wall time per slice size, both paths together (default 20; less is not published)")
    p.add_argument("--slice-rounds", type=int, default=SLICE_FULL["rounds"], help="interleaving rounds (default 3)")
    p.add_argument("--slice-sizes", type=int, nargs="+", default=list(SLICE_SIZES),
                   help="square slice sizes in pixels (default 256 512)")


def _results_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", default=None,
                   help="folder to write the results file into (default benchmarks/results: needs a clean, committed "
                        "tree; another folder takes any tree and never reaches the report)")


def _threads_arg(p: argparse.ArgumentParser, who: str) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help=f"intra-op threads of {who}, the same for all and recorded per row (default: the usable "
                        "cores)")


def parser(doc: str | None) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m benchmarks", description=doc,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="every bundle side by side (with the peers) -> a run folder under build/bench")
    _bundle_args(p)
    p.add_argument("--artifacts", default="artifacts", help="training artifacts: native side, held-out accuracy")
    p.add_argument("--batch", type=int, nargs="+", default=FULL["batches"], help="batch sizes (default 1 64)")
    p.add_argument("--seconds", type=float, default=FULL["seconds"], help="wall time per model and batch size")
    p.add_argument("--rounds", type=int, default=FULL["rounds"], help="interleaving rounds")
    p.add_argument("--peers", nargs="*", default=list(KNOWN), choices=KNOWN,
                   help="peer runtimes in their venvs (default: litert openvino; none: --peers)")
    _threads_arg(p, "every contender (medinfer, bare sessions, peers)")
    p.add_argument("--no-cold", action="store_true", help="skip the fresh-process cold starts")
    p.add_argument("--no-slice", action="store_true",
                   help="skip one pass vs patch by patch (bundles with a whole-slice variant)")
    _slice_args(p)
    p.add_argument("--out", default=None, help="parent of the run folder (default build/bench)")
    p.add_argument("--check", action="store_true", help="gate the run against this CPU's rolling median")
    _gate_args(p)
    p = sub.add_parser("publish", help="a FULL run folder -> results/suite.json, cold_start.json, slice.json, plots, "
                                       "REPORT.md, README numbers")
    p.add_argument("--from", dest="from_", required=True, help="the run folder (build/bench/...)")
    p.add_argument("--bundles", default=None,
                   help="also write results/models.json from this folder of the bundles the run timed (make "
                        "bench-publish: bundles)")
    sub.add_parser("report", help="REPORT.md and README's numbers again from the committed results and history")
    p = sub.add_parser("check", help="gate the newest history record against the earlier ones on its CPU")
    _gate_args(p)
    p = sub.add_parser("models", help="results/models.json: held-out metrics and variants of the built bundles")
    _bundle_args(p)
    _results_arg(p)
    p = sub.add_parser("cnn-int8", help="the CNN's int8 options vs LiteRT / OpenVINO -> results/cnn_int8.json")
    p.add_argument("--bundle", default="bundles/lung_nodule_cnn", help="the CNN bundle (its validated fp32 graph)")
    p.add_argument("--artifacts", default="artifacts", help="training artifacts: held-out split, calibration, Keras")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts (default 1 2)")
    p.add_argument("--peers", nargs="*", default=list(KNOWN), choices=KNOWN, help="edge peers in their own venvs")
    p.add_argument("--seconds", type=float, default=40.0, help="timed seconds per thread count, all candidates")
    p.add_argument("--rounds", type=int, default=12, help="interleaving rounds (default 12)")
    p.add_argument("--results", default=None, help="results folder (default: benchmarks/results)")
    p = sub.add_parser("tails", help="p99 / p99.9 under thread and spinning settings -> results/tails.json")
    _bundle_args(p)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="batch sizes (default 1 64)")
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per setting and batch size")
    p.add_argument("--rounds", type=int, default=8, help="interleaving rounds (default 8)")
    p.add_argument("--results", default=None, help="results folder (default: benchmarks/results)")
    p = sub.add_parser("trees", help="RandomForest: onnxruntime vs a compiled tree ensemble -> results/trees.json")
    p.add_argument("--bundle", default="bundles/drug_activity_rf", help="the RandomForest bundle")
    p.add_argument("--artifacts", default="artifacts", help="training artifacts: the scikit-learn forest, held-out")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="batch sizes (default 1 64)")
    p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per batch size, all rows")
    p.add_argument("--rounds", type=int, default=12, help="interleaving rounds (default 12)")
    p.add_argument("--results", default=None, help="results folder (default: benchmarks/results)")
    p = sub.add_parser("int8-ops", help="per-operator fp32 vs int8 profile on this CPU -> results/int8_ops.json")
    p.add_argument("--bundle", default="bundles/lung_nodule_cnn", help="a bundle with an int8 variant")
    p.add_argument("--runs", type=int, default=200, help="profiled runs per graph")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the bundle's profile)")
    _results_arg(p)
    p = sub.add_parser("concurrency", help="8 single-sample clients, direct vs MicroBatcher interleaved -> results/")
    _bundle_args(p)
    p.add_argument("--threads", type=int, default=8, help="client threads")
    p.add_argument("--seconds", type=float, default=6.0, help="wall time per model, both modes together")
    p.add_argument("--rounds", type=int, default=6, help="interleaving rounds")
    _results_arg(p)
    p = sub.add_parser("explain", help="explanations: batch-1 cost, fidelity on held-out samples -> "
                                       "results/explain.json + plots/explain_fidelity.png")
    _bundle_args(p)
    p.add_argument("--seconds", type=float, default=6.0, help="wall time per model, the four calls together")
    p.add_argument("--rounds", type=int, default=6, help="interleaving rounds")
    p.add_argument("--examples", action="store_true",
                   help="print one explanation per model (README markdown); nothing else is measured or written")
    p.add_argument("--write-readme", action="store_true", help="with --examples: also put them into README.md")
    _results_arg(p)
    p = sub.add_parser("domain", help="the domain guards: refused shares from the manifests, added latency at "
                                      "batch 1 and 64 -> results/domain.json + README table")
    p.add_argument("--bundles", default="bundles", help="folder of built bundles (default: bundles)")
    p.add_argument("--seconds", type=float, default=6.0,
                   help="timing per bundle and batch size, with and without the guard interleaved (default: 6)")
    p.add_argument("--readme", default=None, help="README whose table to rewrite when the file goes to "
                                                  "benchmarks/results (default: the repository's)")
    _results_arg(p)
    p = sub.add_parser("slice", help="a whole CT slice: one pass vs patch by patch -> results/slice.json")
    _bundle_args(p)
    _slice_args(p)
    _results_arg(p)
    p = sub.add_parser("safety", help="audit-trail/deadline cost and an RSS soak test -> results/safety.json")
    _bundle_args(p)
    p.add_argument("--seconds", type=float, default=3.0, help="timing per model, all paths together")
    p.add_argument("--rounds", type=int, default=10, help="interleaving rounds")
    p.add_argument("--soak-seconds", type=float, default=60.0, help="soak per model (0: none)")
    p.add_argument("--max-growth-mb", type=float, default=5.0, help="exit 1 when RSS grows more than this")
    _results_arg(p)
    p = sub.add_parser("serve", help="medinfer serve (before/after issue 17, audit on/off), MLServer and "
                                     "tritonserver side by side -> results/serve.json")
    _bundle_args(p)
    p.add_argument("--servers", nargs="+", default=["medinfer-baseline", "medinfer", "medinfer-workers", "mlserver",
                                                    "tritonserver"],
                   help="servers to compare (medinfer-workers: serve --workers over the same cores, audit on)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrent clients")
    p.add_argument("--encodings", nargs="+", choices=("json", "binary", "grpc"), default=["json", "binary", "grpc"],
                   help="request encodings (grpc: KServe v2 ModelInfer with raw tensors, servers that speak it)")
    p.add_argument("--seconds", type=float, default=3.0, help="per cell (server x encoding x clients) and round")
    p.add_argument("--rounds", type=int, default=3, help="rounds")
    p.add_argument("--baseline-ref", default="5e459c4", help="git ref of the 'before' medinfer serve")
    _threads_arg(p, "every server's onnxruntime sessions")
    p.add_argument("--out", default="benchmarks/results/serve.json", help="output file")
    return top
