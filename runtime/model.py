"""The loaded :class:`Model`: validate, run, and say what ran (created by ``medinfer.load``)."""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .audit import AuditBinding, AuditLog
from .errors import (
    AuditError,
    DeadlineExceeded,
    InferenceError,
    InputError,
    MedinferError,
    NoInformationError,
    OutOfDomainError,
    SelfTestError,
    UnknownNameError,
    UsageError,
)
from .failsafe import WATCHDOG, NoResult
from .integrity import outputs_digest
from .manifest import Manifest
from .prediction import Prediction, PredictionMeta
from .providers import import_onnxruntime
from .samples import read_pairs, read_pinned
from .validation import InputCheck, Validator

if TYPE_CHECKING:
    from .signing import SignatureCheck

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelfTestReport:
    """Outcome of running the golden input: ``bit_exact`` or ``within_tolerance`` (else SelfTestError)."""

    status: str
    max_abs_diff: float
    digest: str
    expected_digest: str
    seconds: float


class Model:
    """A verified bundle with a live onnxruntime session. Create it with :func:`medinfer.load`."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        manifest_sha256: str,
        session: Any,
        variant: str,
        model_sha256: str,
        golden: bytes,
        casting: str,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.manifest_sha256 = manifest_sha256
        self.session = session
        self.variant = variant
        self.model_sha256 = model_sha256
        self._golden = golden
        entry = manifest.variants[variant]
        self._validate = Validator(manifest, casting, max_elements=entry.max_elements)
        self.providers: tuple[str, ...] = tuple(session.get_providers())
        # a variant with its own outputs (a whole-slice graph's window centres) hands all of them back
        self._meta = PredictionMeta.build(manifest, variant, model_sha256, manifest_sha256, self.providers[0],
                                          every_output=entry.outputs is not None)
        self._fetch = list(self._meta.fetch)
        # The C++ session's run, without InferenceSession.run's Python-side re-check of feed names (the
        # validator has already checked them): ~0.7 µs of a ~7 µs call on small models. Public API fallback.
        inner = getattr(session, "_sess", None)
        if inner is not None and hasattr(inner, "run"):
            self._run = inner.run
        else:
            self._run = lambda fetch, feeds, _options: session.run(fetch, feeds)
        self._check1 = self._validate.checks[0] if len(self._validate.checks) == 1 else None
        self._run_large = self._run
        self._large_session_from = sys.maxsize
        self._chunk = max(1, manifest.profile.chunk)
        self._max_batch = max(1, manifest.profile.max_batch)
        # Batches of at least this size leave the hot path: the large-batch session, chunks, the batch bound.
        self._large_from = self._chunk + 1
        self._evidence = self._meta.evidence_minimum
        self._domain_index = self._meta.domain_index
        self._domain_threshold = np.float32(self._meta.domain_threshold or 0.0)
        self.out_of_domain = "flag"
        self._refuse_ood = False
        self.large_session: Any = None
        self.audit: AuditLog | None = None
        self._audit: AuditBinding | None = None
        self.deadline_ms: float | None = None
        self._plain = True
        self.signed_by: str | None = None
        self.signature: SignatureCheck | None = None

    def use_large_batch_session(self, session: Any, from_batch: int) -> None:
        """Route batches of at least ``from_batch`` samples to ``session`` (same graph, other thread settings)."""
        self.large_session = session
        inner = getattr(session, "_sess", None)
        self._run_large = inner.run if inner is not None else (lambda f, d, _o: session.run(f, d))
        self._large_session_from = from_batch
        self._large_from = min(self._chunk + 1, from_batch)

    def configure(self, *, audit: AuditLog | None = None, deadline_ms: float | None = None,
                  out_of_domain: str = "flag") -> Model:
        """Set the model's audit trail, default per-call deadline (None: off) and out-of-domain policy.

        ``out_of_domain``: ``"flag"`` (answer, and flag each sample in ``Prediction.in_domain``), or ``"no_result"``
        / ``"raise"`` (a call holding a sample outside the domain gets no answer: ``predict`` raises
        OutOfDomainError, ``try_predict`` returns ``NoResult(reason="out_of_domain")``; the two names are one
        policy). A bundle without a domain guard answers under every policy (and says so: ``in_domain`` is None).

        Raises:
            UsageError: a deadline that is not > 0, or an unknown policy.
        """
        if deadline_ms is not None and not (isinstance(deadline_ms, (int, float)) and deadline_ms > 0):
            raise UsageError(f"deadline_ms must be > 0, got {deadline_ms!r}")
        if out_of_domain not in OUT_OF_DOMAIN:
            raise UnknownNameError("out_of_domain policy", out_of_domain, OUT_OF_DOMAIN)
        self.audit = audit
        self._audit = audit.bind(self.name, self.version, self.model_sha256) if audit is not None else None
        self.deadline_ms = deadline_ms
        self.out_of_domain = out_of_domain
        self._refuse_ood = out_of_domain != "flag" and self._domain_index is not None
        self._plain = audit is None and deadline_ms is None and not self._refuse_ood
        return self

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._validate.names

    @property
    def input_checks(self) -> tuple[InputCheck, ...]:
        """The precompiled check of each input (name, dtype, shape, range, ``is_string``), in manifest order."""
        return self._validate.checks

    def prepare(self, x: Any) -> tuple[dict[str, np.ndarray], bool]:
        """Validate ``x`` exactly as :meth:`predict` does, without running it.

        Returns:
            ``(feeds, single)``: the arrays onnxruntime would receive, by input name, and whether ``x`` was one
            sample (no batch axis).

        Raises:
            InputError / InputTypeError: as :meth:`predict`.
        """
        return self._validate(x)

    def check_header(self, header: Sequence[str], input_name: str | None = None) -> None:
        """Refuse column names (e.g. a CSV header) that differ from the manifest's feature names or order.

        Raises:
            InputError: missing, extra, repeated or reordered names (the message names the first).
        """
        check = self._check_for(input_name)
        self._validate.check_order(check, [str(h) for h in header])

    def _check_for(self, input_name: str | None) -> InputCheck:
        checks = self._validate.checks
        if input_name is None:
            return checks[0]
        for check in checks:
            if check.name == input_name:
                return check
        raise UnknownNameError("input", input_name, self._validate.names, of=self.name)

    def __repr__(self) -> str:
        return (f"Model({self.name!r}, version={self.version!r}, variant={self.variant!r}, "
                f"providers={list(self.providers)})")

    def predict(self, x: Any, *, deadline_ms: float | None = None, request_id: str | None = None) -> Prediction:
        """Validate ``x`` against the manifest, run the graph, and return a typed :class:`Prediction`.

        Args:
            x: one sample or a batch, as a numpy array, or nested lists of Python numbers (read into the model's
                dtype like a JSON file: floats rounded to float32, integers only where exact; a float64 ARRAY
                is refused under ``cast="safe"``); text models take a string or a list of strings;
                feature-named models also take a mapping of column name -> values; multi-input models take a
                mapping of input name -> array.
            deadline_ms: raise DeadlineExceeded if no result within it (default: the model's ``deadline_ms``).
            request_id: an id for the audit record (default: a random UUID).

        Returns:
            Prediction with labels (classification), scores, raw outputs and provenance.

        Raises:
            InputError / InputTypeError: the input does not match the contract (message says how to fix it).
            DeadlineExceeded: the deadline passed.
            InferenceError: onnxruntime failed on a validated input.
        """
        if self._plain and deadline_ms is None and request_id is None:
            check = self._check1
            if check is not None and type(x) is np.ndarray:  # hot path: one array for a one-input model
                arr, single = check(x)
                feeds = {check.name: arr}
            else:
                feeds, single = self._validate(x)
                arr = next(iter(feeds.values()))
            try:
                outs = self._run(self._fetch, feeds, None) if len(arr) < self._large_from else \
                    self._run_batch(feeds, None)
            except MedinferError:
                raise
            except Exception as exc:
                raise InferenceError(f"onnxruntime failed running {self.name}: {exc}") from exc
            if self._evidence is not None:
                self._check_evidence(outs[1])
            return Prediction(self._meta, outs, single)
        result = self._guarded(x, deadline_ms if deadline_ms is not None else self.deadline_ms, request_id)
        if isinstance(result, MedinferError):
            raise result
        return result

    def try_predict(self, x: Any, *, deadline_ms: float | None = None,
                    request_id: str | None = None) -> Prediction | NoResult:
        """Like :meth:`predict`, but every failure comes back as a typed :class:`NoResult` (never raises).

        The NoResult carries the failing error's reason code (``input``, ``input_type``, ``timeout``,
        ``runtime``, ...) — never a default class.
        """
        result = self._guarded(x, deadline_ms if deadline_ms is not None else self.deadline_ms, request_id)
        if isinstance(result, MedinferError):
            return NoResult(result.code, str(result), self.name, self.version, request_id, type(result).__name__)
        return result

    def _guarded(self, x: Any, deadline_ms: float | None, request_id: str | None) -> Prediction | MedinferError:
        """The predict path with deadline and audit record; returns the error instead of raising it."""
        start = time.perf_counter()
        feeds: dict[str, np.ndarray] | None = None
        result: Prediction | None = None
        error: MedinferError | None = None
        try:
            request_id = _checked_request_id(request_id)
        except InputError as exc:
            error, request_id = exc, _opaque_id(request_id)  # recorded under its digest, never run
        try:
            if error is None:
                feeds, single = self._validate(x)
                if deadline_ms is None:
                    outs = self._run_batch(feeds, None)
                else:
                    outs = self._run_with_deadline(feeds, start + deadline_ms / 1e3, deadline_ms)
                if self._evidence is not None:
                    self._check_evidence(outs[1])
                if self._refuse_ood and self._domain_index is not None:
                    self._check_domain(outs[self._domain_index])
                result = Prediction(self._meta, outs, single)
        except MedinferError as exc:
            error = exc
        except Exception as exc:  # onnxruntime's own exception types
            error = InferenceError(f"onnxruntime failed running {self.name}: {exc}")
            error.__cause__ = exc
        audit = self._audit
        if audit is not None:
            try:
                if error is None:
                    audit.record(feeds, "ok", (time.perf_counter() - start) * 1e6, _summary(result),  # type: ignore
                                 request_id)
                else:
                    audit.record(feeds if feeds is not None else _digestible(x), "no_result",
                                 (time.perf_counter() - start) * 1e6, None, request_id, error.code)
            except AuditError as exc:
                return exc  # a result that could not be recorded is not returned
        if result is not None:
            return result
        return error if error is not None else InferenceError(f"{self.name}: no result and no error")

    def _run_with_deadline(self, feeds: dict[str, np.ndarray], deadline: float, deadline_ms: float) -> Any:
        ort = import_onnxruntime()

        options = ort.RunOptions()
        handle = WATCHDOG.arm(options, deadline)
        try:
            outs = self._run_batch(feeds, options)
        except MedinferError:
            raise
        except Exception as exc:
            if options.terminate or time.perf_counter() >= deadline:
                raise DeadlineExceeded(f"{self.name}: no result within the {deadline_ms:g} ms deadline "
                                       "(the run was cancelled)") from exc
            raise
        finally:
            WATCHDOG.disarm(handle)
        if time.perf_counter() > deadline:
            raise DeadlineExceeded(f"{self.name}: the result came after the {deadline_ms:g} ms deadline and was "
                                   "discarded")
        return outs

    def _run_batch(self, feeds: dict[str, np.ndarray], options: Any) -> list[np.ndarray]:
        """Run a batch of any size: refused above ``max_batch``, in chunks of ``chunk`` samples (bounded
        working memory), on the large-batch session when it has one and the batch is large enough."""
        n = len(next(iter(feeds.values())))
        if n > self._max_batch:
            raise InputError(
                f"{self.name} got a batch of {n} samples; it takes at most {self._max_batch} per call (the bundle's "
                "profile.max_batch bounds memory): split the batch"
            )
        run = self._run_large if n >= self._large_session_from else self._run
        if n <= self._chunk:
            return list(run(self._fetch, feeds, options))
        parts = [run(self._fetch, {k: v[i:i + self._chunk] for k, v in feeds.items()}, options)
                 for i in range(0, n, self._chunk)]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(self._fetch))]

    def _check_evidence(self, evidence: np.ndarray) -> None:
        minimum = self._evidence
        if evidence.size == 1 and not evidence.item(0) < minimum:  # one sample with enough evidence (the hot path)
            return
        weak = np.flatnonzero(np.asarray(evidence).reshape(len(evidence), -1).min(axis=1) < minimum)
        if weak.size:
            spec = self.manifest.decision.evidence
            meaning = f" ({spec.meaning})" if spec is not None and spec.meaning else ""
            raise NoInformationError(
                f"{self.name} got {weak.size} sample(s) with no usable information (items {weak[:10].tolist()}: "
                f"'{spec.output if spec else 'evidence'}' below {minimum:g}{meaning}); they get no answer rather "
                "than a confident label: check what was sent"
            )

    def _check_domain(self, scores: np.ndarray) -> None:
        outside = np.flatnonzero(np.asarray(scores).reshape(len(scores)) > self._domain_threshold)
        if outside.size:
            coverage = self.manifest.domain.coverage if self.manifest.domain is not None else float("nan")
            raise OutOfDomainError(
                f"{self.name}: {outside.size} sample(s) lie outside its applicability domain (items "
                f"{outside[:10].tolist()}: domain score above {float(self._domain_threshold):.4g}, the threshold "
                f"that accepts {coverage:.0%} of held-out in-domain data); loaded with "
                f"out_of_domain={self.out_of_domain!r}, they get no answer"
            )

    def golden(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The golden inputs and expected outputs stored in the bundle."""
        return read_pairs(self._golden, self.variant, f"{self.name}: {self.manifest.golden.file}", self.input_names)

    def parity_sample(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
        """A seeded sample of the held-out set the export's parity gate used (``manifest.parity_sample``): its
        inputs and the outputs the CPU computed at export (this variant's own graph's when the file holds them), to
        compare an accelerator with the CPU on real held-out data. None for bundles written before it existed, and
        for a variant with inputs of its own (a whole-slice graph: the sample holds the validated graph's inputs).

        Raises:
            IntegrityError: the file no longer matches its pinned sha256.
            BundleError: the file cannot be read as a samples file.
        """
        sample = self.manifest.parity_sample
        if sample is None:
            return None
        data = read_pinned(self.path, sample.file, self.manifest.files[sample.file])
        return read_pairs(data, self.variant, f"{self.name}: {sample.file}", self.input_names, "parity sample")

    def self_test(self) -> SelfTestReport:
        """Run the golden input and compare with the golden output (readiness check).

        Returns:
            A report whose ``status`` is ``bit_exact`` (digest matches) or ``within_tolerance``.

        Raises:
            SelfTestError: outputs differ beyond the manifest's tolerance, or labels differ.
        """
        golden = self.manifest.golden
        variant = self.manifest.variants[self.variant]
        expected_digest = variant.golden_digest or golden.output_digest
        atol = golden.atol if variant.golden_atol is None else variant.golden_atol
        inputs, expected = self.golden()
        start = time.perf_counter()
        feeds, _ = self._validate(inputs if len(inputs) > 1 else next(iter(inputs.values())))
        if variant.outputs is not None:  # its own outputs, in the manifest's order
            names = [o.name for o in variant.outputs if o.name in expected]
        else:
            names = list(golden.outputs or expected)
        got = dict(zip(names, self._run(names, feeds, None)))
        seconds = time.perf_counter() - start
        digest = outputs_digest(got, tuple(names))
        if digest == expected_digest:
            return SelfTestReport("bit_exact", 0.0, digest, expected_digest, seconds)
        worst = 0.0
        for name in names:
            a, b = got[name], expected[name]
            if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
                raise SelfTestError(
                    f"{self.name} self-test: output '{name}' has shape {a.shape} {a.dtype}, expected "
                    f"{b.shape} {b.dtype}"
                )
            if a.dtype.kind in "fc":
                diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))
                worst = max(worst, diff)
                if not np.allclose(a, b, atol=atol, rtol=golden.rtol, equal_nan=False):
                    raise SelfTestError(
                        f"{self.name} self-test failed on {list(self.providers)}: output '{name}' differs from the "
                        f"golden output by {diff:.3g} (tolerance atol={atol:g}, rtol={golden.rtol:g}); "
                        "this machine or provider does not reproduce the validated model"
                    )
            elif not np.array_equal(a, b):
                raise SelfTestError(f"{self.name} self-test failed: output '{name}' (labels) differs from golden")
        return SelfTestReport("within_tolerance", worst, digest, expected_digest, seconds)

    def placement(self) -> dict[str, Any]:
        """Which provider ran each node (profiled golden run): reveals what an accelerator left to the CPU."""
        from .placement import node_placement

        return node_placement(self)



MAX_REQUEST_ID = 256
OUT_OF_DOMAIN = ("flag", "no_result", "raise")


def _checked_request_id(request_id: Any) -> str | None:
    """A request id that every log, header and JSON document can carry: a string of at most 256 printable
    characters, valid Unicode (no lone surrogates)."""
    if request_id is None:
        return None
    if not isinstance(request_id, str):
        raise InputError(f"request_id must be a string, got {type(request_id).__name__}")
    if not 0 < len(request_id) <= MAX_REQUEST_ID or not request_id.isprintable():
        raise InputError(f"request_id must be 1 to {MAX_REQUEST_ID} printable characters, got {len(request_id)} "
                         "characters (control characters or too long)")
    try:
        request_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("request_id is not valid Unicode (a lone surrogate): send it as UTF-8 text") from None
    return request_id


def _opaque_id(request_id: Any) -> str:
    """A refused request id as it goes into the audit record: its digest, never the raw value."""
    raw = request_id if isinstance(request_id, str) else repr(request_id)
    return "refused-id:" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _digestible(x: Any) -> dict[str, Any] | None:
    """Something to digest for the audit record of an input that failed validation (never the raw data)."""
    if isinstance(x, np.ndarray) and x.dtype != object:
        return {"raw": x}
    return None


def _summary(pred: Prediction, limit: int = 16) -> dict[str, Any]:
    """A compact output summary for the audit trail: decisions and scores rounded to 5 decimals (numpy's rule:
    ``rint(x * 1e5) / 1e5``) of the first ``limit`` samples."""
    labels = pred.labels
    scores = pred.scores
    n = len(pred)
    out: dict[str, Any] = {"n": n}
    if labels is not None:
        out["labels"] = [str(labels[0])] if n == 1 else [str(v) for v in labels[:limit]]
    domain = pred.domain_scores
    if domain is not None:
        out["domain_scores"] = _rounded(domain, n, limit)
        out["out_of_domain"] = n - int(np.count_nonzero(pred.in_domain))  # type: ignore[arg-type]
    out["scores"] = _rounded(scores, n, limit)
    return out


def _rounded(values: np.ndarray, n: int, limit: int) -> list[Any]:
    """The first ``limit`` values rounded to 5 decimals as numpy rounds them; finite 1-D values by Python's round()
    (numpy's rint there, and much cheaper for the one sample of a hot-path call)."""
    if values.ndim == 1:
        first = [values.item(0)] if n == 1 else values[:limit].tolist()
        if all(-1e300 < v < 1e300 for v in first):
            return [round(v * 100000.0) / 100000.0 for v in first]
    return np.round(np.asarray(values)[:limit].astype(np.float64), 5).tolist()  # type: ignore[no-any-return]
