"""``medinfer predict`` per item (``--on-error item``, the default): every valid item of the file is answered and
every invalid or refused one gets its own reason, in the table and in ``--json``; the exit status is that of the
first refusal (0 when every item was answered), so a script still sees that something was refused."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OUTWARD, LossyCastError, MedinferError
from .common import table

if TYPE_CHECKING:
    from ..items import ItemResults
    from ..model import Model

SHOWN_REASONS = 20  # refused items listed one by one on stderr; the rest are counted


def predict_items(model: Model, args: argparse.Namespace, ids: list[str] | None, x: Any, at: Any) -> int:
    """Predict ``x`` item by item and print the answers (see the module docstring); returns the exit status."""
    try:
        feeds = model.prepare(x)[0]
    except LossyCastError as exc:  # the file's dtype: every item alike, and the remedy is the CLI's own flag
        raise LossyCastError(exc.head, f"Convert {args.input} to {model.input_checks[0].spec.dtype}, or pass "
                                       "--cast same_kind to accept the rounding") from None
    except MedinferError:
        feeds = None  # some items are invalid: each gets its reason below
    got = model.predict(x, explain=args.explain, on_error="item")
    if not len(got.answered):
        got.raise_first()  # nothing to answer: the refusal of the file as a whole (or of its one item)
    if args.fhir_out:
        from ..audit import input_digest
        from ..tools.fhir import to_fhir
        from .clinical import write_fhir

        write_fhir(args, to_fhir(got, args.fhir_subject, basis=args.fhir_basis, at=at, generic=args.fhir_generic,
                                 input_sha256=input_digest(feeds) if feeds is not None else None))
    if args.json:
        print(json.dumps({**as_dict(model, got), **({"ids": ids} if ids is not None else {}),
                          **({"fhir_out": args.fhir_out} if args.fhir_out else {})}, indent=2))
    else:
        print_table(model, got, ids, args)
    refused = got.no_results
    for item in refused[:SHOWN_REASONS]:
        name = f"{args.id_column or 'id'} {ids[item.index]}" if ids is not None and item.index is not None else \
            f"#{item.index}"
        print(f"NO RESULT {name}: {item.error}: {item.message}", file=sys.stderr)
    if len(refused) > SHOWN_REASONS:
        print(f"... and {len(refused) - SHOWN_REASONS} more item(s) without a result", file=sys.stderr)
    if refused:
        print(f"{len(refused)} of {len(got)} item(s) got no result; the others were answered", file=sys.stderr)
        return OUTWARD[refused[0].reason].exit if refused[0].reason in OUTWARD else 1
    return 0


def as_dict(model: Model, got: ItemResults) -> dict[str, Any]:
    """The JSON of ``medinfer predict --json`` per item: the provenance, then per item its label, score, domain
    score and flag (null for a refused item), its status, and each refusal with its reason."""
    labels, scores, domain = got.labels, got.scores, got.domain_scores
    ok = got.ok
    threshold = model.manifest.domain.threshold if model.manifest.domain is not None else None
    return {
        "model": model.name, "version": model.version, "variant": model.variant,
        "model_sha256": model.model_sha256, "manifest_sha256": model.manifest_sha256,
        "provider": model.providers[0], "threshold": model.manifest.decision.threshold,
        "labels": None if labels is None else [None if v is None else str(v) for v in labels],
        "scores": [row.tolist() if k else None for row, k in zip(np.asarray(scores), ok)],
        "domain_scores": None if domain is None else [float(v) if k else None for v, k in zip(domain, ok)],
        "in_domain": None if got.in_domain is None else [None if v is None else bool(v) for v in got.in_domain],
        "domain_threshold": threshold,
        "status": ["ok" if k else "no_result" for k in ok],
        "no_results": [r.to_dict() for r in got.no_results],
        # the answered items' explanation: its samples are the items listed in "explained_items", in that order
        **({"explanation": got.explanation.to_dict(), "explained_items": got.answered.tolist()}
           if got.explanation is not None else {}),
    }


def print_table(model: Model, got: ItemResults, ids: list[str] | None, args: argparse.Namespace) -> None:
    """One row per item: its label and score, or NO RESULT and the reason code; the domain column when the
    bundle has a guard."""
    labels, scores, ok = got.labels, np.asarray(got.scores), got.ok
    decision = model.manifest.decision
    if labels is not None and scores.ndim == 1:
        head = ["label", f"score ({decision.positive_label})"]
    elif labels is not None:
        head = ["label", "probability"]
    else:
        units = next((o.units for o in model.manifest.outputs if o.name == decision.score_output), "")
        head = [f"prediction{f' ({units})' if units else ''}"]
    rows: list[list[Any]] = []
    for i in range(len(got)):
        first: Any = ids[i] if ids is not None else i
        if not ok[i]:
            rows.append([first, "NO RESULT", got[i].reason] + ([""] if len(head) == 2 else []))
            continue
        value = scores[i]
        shown = float(value) if value.ndim == 0 else (float(value.max()) if labels is not None else
                                                      list(map(float, value)))
        rows.append([first, *([labels[i]] if labels is not None else []), shown])
    headers = [args.id_column or "id" if ids is not None else "#", *head]
    if len(head) == 1:
        rows = [r if len(r) == 2 else [r[0], f"NO RESULT ({r[2]})"] for r in rows]
    if got.in_domain is not None and model.manifest.domain is not None:
        for row, inside, score in zip(rows, got.in_domain, got.domain_scores):  # type: ignore[arg-type]
            row.append("-" if inside is None else f"{'yes' if inside else 'NO'} ({float(score):.3g})")
        headers.append(f"in domain (score <= {model.manifest.domain.threshold:.3g})")
    print(table(rows, headers))
    answered = got.prediction if len(got.answered) else None
    if answered is not None and answered.explanation is not None:
        from ..tools.explain_text import lines

        names = [ids[i] if ids is not None else i for i in got.answered.tolist()]
        print("\n" + "\n".join(lines(answered.explanation, names=names)))
    flagged = [i for i, v in enumerate([] if got.in_domain is None else got.in_domain) if v is False]
    if flagged:
        print(f"\nWARNING: {len(flagged)} sample(s) lie outside the model's applicability domain: their answers "
              "are not backed by the training data", file=sys.stderr)
    print(f"\n{model.name} {model.version} [{model.variant}] sha256 {model.model_sha256[:16]}… on "
          f"{model.providers[0]}")
    if args.fhir_out:
        print(f"FHIR R4 transaction Bundle written to {args.fhir_out}")
