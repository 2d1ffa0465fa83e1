"""``medinfer predict`` on a DICOM file: the slice's scores, and the files written beside them (overlay, DICOM SR /
Parametric Map / Secondary Capture, FHIR R4 Bundle). Needs the [dicom] extra (and [fhir] for --fhir-out); every
import happens inside the function that needs it."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model import Model


def predict_dicom(model: Model, args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..tools.dicom import format_result, predict_file, write_overlay
    from ..tools.segmentation import segmentation_output

    if segmentation_output(model.manifest) is not None:
        return _predict_segmentation(model, args)

    centre = None
    if args.center:
        try:
            row, col = (int(v) for v in args.center.split(","))
        except ValueError:
            raise InputError(f"--center expects ROW,COL in pixels, e.g. 64,70; got {args.center!r}") from None
        centre = (row, col)
    if args.fhir_out:
        fhir_time(args)  # refuse a bad subject or time before the work, not after
    check_outputs(args)
    result = predict_file(model, args.input, centre=centre, stride=args.stride, frame=args.frame)
    written: list[str] = []
    explained = None
    if getattr(args, "explain", False):
        from ..tools.explain_slice import explain_slice, patch_model_of
        from .common import bundle_path

        explained = explain_slice(patch_model_of(model, bundle_path(args.bundle)), result)
        result.extra["explanation"] = explained.to_dict()
    try:  # the scores are printed even when a file beside them cannot be written
        if args.overlay:
            write_overlay(result, args.overlay)
            if explained is not None:
                from ..tools.explain_slice import explanation_overlay_path, write_explanation_overlay

                path = explanation_overlay_path(args.overlay)
                write_explanation_overlay(result, explained, path)
                result.extra["explanation_overlay"] = str(path)
                written.append(f"explanation overlay written to {path}")
        sr_uid = None
        if args.dicom_out:
            from ..tools.dicom_out import KINDS, write_dicom

            outputs = write_dicom(model, result, args.dicom_out, secondary_capture=args.dicom_sc)
            result.extra["dicom_out"] = outputs.to_dict()
            sr_uid = outputs.sr_uid
            written += [f"DICOM {KINDS[kind]} written to {path}" for kind, path in outputs.files.items()]
            written += [f"DICOM {KINDS[kind]} NOT written: {why}" for kind, why in outputs.skipped.items()]
        if args.fhir_out:
            from ..integrity import sha256_file
            from ..tools.fhir_slice import slice_bundle

            write_fhir(args, slice_bundle(model, result, subject=args.fhir_subject, basis=args.fhir_basis,
                                           sr_uid=sr_uid, input_sha256=sha256_file(args.input)))
            result.extra["fhir_out"] = args.fhir_out
            written.append(f"FHIR R4 transaction Bundle written to {args.fhir_out}")
    finally:
        why = []
        if explained is not None:
            from ..tools.explain_text import slice_lines

            why = slice_lines(explained.to_dict())
        print(json.dumps(result.to_dict(), indent=2) if args.json else "\n".join([format_result(result), *why,
                                                                                   *written]), flush=True)
    return _domain_status(result)


def _domain_status(result: Any) -> int:
    """The exit status of a scored slice: the refusal's (5) when the whole slice got no result; a warning on stderr
    when the slice or some of its windows lie outside the applicability domain (answered, flagged, or refused one
    by one: the other windows were answered)."""
    import sys

    from ..errors import OUTWARD

    if result.refusal is not None:
        print(f"NO RESULT: {result.refusal.message}", file=sys.stderr)
        return OUTWARD[result.refusal.reason].exit
    inside = result.in_domain
    if result.slice_in_domain is False:
        print("WARNING: the slice lies outside the model's applicability domain "
              f"({result.guard.slice_reason()}): every window is flagged and no finding is reported", file=sys.stderr)
    elif inside is not None and not inside.all():
        refused = int((~result.answered).sum())
        print(f"WARNING: {int((~inside).sum())} window(s) lie outside the model's applicability domain"
              + (f"; {refused} of them got no result" if refused else ": flagged, no finding reported there"),
              file=sys.stderr)
    return 0


def _predict_segmentation(model: Model, args: argparse.Namespace) -> int:
    """A CT slice through a segmentation bundle: the slice's decision, the mask's size; ``--dicom-out``: a SEG."""
    import json

    from ..tools.segmentation import predict_slice, write_seg

    result = predict_slice(model, args.input, frame=args.frame)
    lines = [f"{result.image.path}: {result.label} (score {result.score:.3f}); {int(result.mask.sum())} pixels of "
             f"{'/'.join(result.segments)} at probability >= {result.threshold:g}"]
    if args.dicom_out:
        path = write_seg(model, result, args.dicom_out)
        result.extra["dicom_out"] = {"seg": str(path)}
        lines.append(f"DICOM Segmentation written to {path}")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print("\n".join(lines))
    return 0


def fhir_time(args: argparse.Namespace) -> Any:
    """--fhir-time as a datetime (None: now); checks --fhir-subject is given and is a reference."""
    from ..errors import UsageError
    from ..tools.fhir import check_subject, parse_time

    if not args.fhir_subject:
        raise UsageError("--fhir-out needs --fhir-subject REF, the FHIR reference of the patient the input came "
                         "from (e.g. Patient/123)")
    check_subject(args.fhir_subject)
    return parse_time(args.fhir_time)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output path that cannot be written: a missing or read-only folder, or a target
    that is not a regular file (a folder, FIFO, device, link). The same checks run again when each file is written.

    Raises:
        OutputError: naming the option, the path and why.
    """
    from ..writing import check_folder, check_target

    for option in ("overlay", "fhir_out"):
        path = getattr(args, option, None)
        if path:
            check_target(path, f"--{option.replace('_', '-')}")
    if getattr(args, "overlay", None) and getattr(args, "explain", False):
        from ..tools.explain_slice import explanation_overlay_path

        check_target(explanation_overlay_path(args.overlay), "the explanation overlay")
    out = getattr(args, "dicom_out", None)
    if out:
        folder = Path(out)
        check_folder(folder if os.path.lexists(folder) else (folder.parent if str(folder.parent) else Path(".")),
                     f"--dicom-out {folder}")


def write_fhir(args: argparse.Namespace, bundle: dict[str, Any]) -> None:
    """The FHIR Bundle as JSON at ``--fhir-out``, atomically (:func:`medinfer.writing.write_atomic`).

    Raises:
        OutputError: the path cannot be written (nothing partial is left behind).
    """
    from ..writing import write_atomic

    write_atomic(args.fhir_out, (json.dumps(bundle, indent=2) + "\n").encode("utf-8"), "--fhir-out")
