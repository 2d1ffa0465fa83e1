"""The loaded :class:`Model`: validate, run, and say what ran (created by ``medinfer.load``)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from .audit import AuditBinding, AuditLog
from .audit.record import checked_request_id, digestible, refused_id, summary
from .decision import in_domain
from .errors import (
    AuditError,
    DeadlineExceeded,
    InferenceError,
    InputError,
    MedinferError,
    NoInformationError,
    OutOfDomainError,
    ProviderError,
    UnknownNameError,
    UsageError,
    check_choice,
)
from .failsafe import NoResult
from .manifest import Manifest
from .options import OUT_OF_DOMAIN, check_deadline
from .prediction import Prediction, PredictionMeta
from .providers import import_onnxruntime
from .readiness import SelfTestReport, compare_golden
from .samples import read_pairs, read_pinned
from .validation import InputCheck, Validator
from .watchdog import WATCHDOG

if TYPE_CHECKING:
    from .explain import Explanation
    from .items import ItemResults
    from .signing import SignatureCheck

log = logging.getLogger(__name__)
RAISE = "raise"  # predict's default error policy (compared by identity on the hot path)


def _runner(session: Any) -> Any:
    """``run(fetch, feeds, options)`` of ``session``: the C++ session's own, without InferenceSession.run's
    Python-side re-check of feed names (the validator has already checked them): ~0.7 µs of a ~7 µs call on small
    models. The public API where the session has no such inner object."""
    inner = getattr(session, "_sess", None)
    if inner is not None and hasattr(inner, "run"):
        return inner.run
    return lambda fetch, feeds, _options: session.run(fetch, feeds)


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
        self._run = _runner(session)
        self._check1 = self._validate.checks[0] if len(self._validate.checks) == 1 else None
        self._run_large = self._run
        self._large_session_from = sys.maxsize
        self._chunk = max(1, manifest.profile.chunk)
        self._max_batch = max(1, manifest.profile.max_batch)
        # Batches of at least this size leave the hot path: the large-batch session, chunks, the batch bound.
        self._large_from = self._chunk + 1
        self._evidence = self._meta.evidence_minimum
        self._domain_index = self._meta.domain_index
        self.out_of_domain = "flag"
        self._refuse_ood = False
        self.large_session: Any = None
        self.audit: AuditLog | None = None
        self._audit: AuditBinding | None = None
        self.deadline_ms: float | None = None
        self._plain = True
        self.signed_by: str | None = None
        self.signature: SignatureCheck | None = None
        self.audit_explanations = 0  # top attributions per sample in each audit record (0: none; opt-in)

    def replace_sessions(self, session: Any, large_session: Any = None) -> None:
        """Answer from ``session`` (and ``large_session`` for the large batches, where the model has one) from now
        on: the same graph built another way (``medinfer serve --workers``: weights mapped from one shared file).
        The caller proves it equal with :meth:`self_test`.

        Raises:
            ProviderError: ``session`` runs on other providers than the one it replaces.
        """
        if tuple(session.get_providers()) != self.providers:
            raise ProviderError(f"{self.name}: the replacement session runs on {session.get_providers()}, the model "
                                f"on {list(self.providers)}")
        self.session = session
        self._run = _runner(session)
        if self.large_session is not None and large_session is not None:
            self.use_large_batch_session(large_session, self._large_session_from)
        elif self.large_session is not None:
            self.large_session, self._run_large = None, self._run
            self._large_session_from, self._large_from = sys.maxsize, self._chunk + 1
        else:
            self._run_large = self._run

    def use_large_batch_session(self, session: Any, from_batch: int) -> None:
        """Route batches of at least ``from_batch`` samples to ``session`` (same graph, other thread settings)."""
        self.large_session = session
        self._run_large = _runner(session)
        self._large_session_from = from_batch
        self._large_from = min(self._chunk + 1, from_batch)

    def configure(self, *, audit: AuditLog | None = None, deadline_ms: float | None = None,
                  out_of_domain: str = "flag", audit_explanations: int = 0) -> Model:
        """Set the model's audit trail, default per-call deadline (None: off) and out-of-domain policy.

        ``out_of_domain``: ``"flag"`` (answer, and flag each sample in ``Prediction.in_domain``), or ``"no_result"``
        / ``"raise"`` (a call holding a sample outside the domain gets no answer: ``predict`` raises
        OutOfDomainError, ``try_predict`` returns ``NoResult(reason="out_of_domain")``; the two names are one
        policy). A bundle without a domain guard answers under every policy (and says so: ``in_domain`` is None).
        ``audit_explanations``: with ``predict(..., explain=True)``, the audit record also carries this many top
        attributions per sample (0, the default: none).

        Raises:
            UsageError: a deadline that is not > 0, or an unknown policy.
        """
        if isinstance(audit_explanations, bool) or not isinstance(audit_explanations, int) or audit_explanations < 0:
            raise UsageError(f"audit_explanations must be an integer >= 0, got {audit_explanations!r}")
        self.audit_explanations = audit_explanations
        check_deadline(deadline_ms)
        check_choice("out_of_domain policy", out_of_domain, OUT_OF_DOMAIN)
        self.audit = audit
        self._audit = audit.bind(self.name, self.version, self.model_sha256) if audit is not None else None
        self.deadline_ms = deadline_ms
        self.out_of_domain = out_of_domain
        self._refuse_ood = out_of_domain != "flag" and self._domain_index is not None
        self._plain = audit is None and deadline_ms is None and not self._refuse_ood
        return self

    @property
    def audit_binding(self) -> AuditBinding | None:
        """The audit trail bound to this model's name, version and graph digest (what ``predict`` records with), or
        None without a trail: for callers that run on the model's session and record each request themselves
        (:func:`medinfer.predict_grouped_audited`)."""
        return self._audit

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

    def as_input(self, inputs: Mapping[str, Any]) -> Any:
        """``inputs`` (input name -> array) in the form :meth:`predict` takes fastest: a one-input model's array
        itself (its hot path), else the mapping. ``predict`` takes the mapping either way; timing and serving loops
        hand it this."""
        return inputs[self._check1.name] if self._check1 is not None and len(inputs) == 1 else inputs

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

    @overload
    def predict(self, x: Any, *, deadline_ms: float | None = None, request_id: str | None = None,
                explain: bool = False, on_error: Literal["raise"] = "raise") -> Prediction: ...

    @overload
    def predict(self, x: Any, *, deadline_ms: float | None = None, request_id: str | None = None,
                explain: bool = False, on_error: Literal["item"]) -> ItemResults: ...

    def predict(self, x: Any, *, deadline_ms: float | None = None, request_id: str | None = None,
                explain: bool = False, on_error: str = RAISE) -> Prediction | ItemResults:
        """Validate ``x`` against the manifest, run the graph, and return a typed :class:`Prediction`.

        Args:
            x: one sample or a batch, as a numpy array, or nested lists of Python numbers (read into the model's
                dtype like a JSON file: floats rounded to float32, integers only where exact; a float64 ARRAY
                is refused under ``cast="safe"``); text models take a string or a list of strings;
                feature-named models also take a mapping of column name -> values; multi-input models take a
                mapping of input name -> array.
            deadline_ms: raise DeadlineExceeded if no result within it (default: the model's ``deadline_ms``).
            request_id: an id for the audit record (default: a random UUID).
            explain: also explain each sample (``Prediction.explanation``, see :meth:`explain`).
            on_error: ``"raise"`` (default): one Prediction for the whole call, or the call raises. ``"item"``: a
                :class:`~medinfer.items.ItemResults`, in input order each item's one-sample Prediction or its own
                :class:`NoResult` (invalid, no information, out of domain under a refusing policy, a failed run,
                a timeout, an unwritable audit record); it never raises for an item's fault.

        Returns:
            Prediction with labels (classification), scores, raw outputs and provenance.

        Raises:
            InputError / InputTypeError: the input does not match the contract (message says how to fix it).
            DeadlineExceeded: the deadline passed.
            InferenceError: onnxruntime failed on a validated input.
        """
        if self._plain and deadline_ms is None and request_id is None and not explain and on_error is RAISE:
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
        if on_error != RAISE:
            from .items import ON_ITEM_ERROR, predict_items

            check_choice("on_error", on_error, ON_ITEM_ERROR)
            return predict_items(self, x, deadline_ms if deadline_ms is not None else self.deadline_ms, request_id,
                                 explain)
        result = self._guarded(x, deadline_ms if deadline_ms is not None else self.deadline_ms, request_id, explain)
        if isinstance(result, MedinferError):
            raise result
        return result

    def explain(self, x: Any, *, target: str | None = None) -> Explanation:
        """Per-sample attributions of ``x`` with the method named, computed by the bundle's own graphs (see
        :mod:`medinfer.explain`; validated as :meth:`predict` validates).

        Args:
            x: as for :meth:`predict`.
            target: multiclass models: the class to explain (default: each sample's predicted class).

        Raises:
            UsageError: the bundle has no explanation (exported before them), or a whole-slice variant.
            InputError / InputTypeError: as :meth:`predict`.
        """
        from .explain import explain

        return explain(self, x, target)

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

    def _guarded(self, x: Any, deadline_ms: float | None, request_id: str | None,
                 explain: bool = False) -> Prediction | MedinferError:
        """The predict path with deadline and audit record; returns the error instead of raising it."""
        start = time.perf_counter()
        feeds: dict[str, np.ndarray] | None = None
        result: Prediction | None = None
        error: MedinferError | None = None
        try:
            request_id = checked_request_id(request_id)
        except InputError as exc:
            error, request_id = exc, refused_id(request_id)  # recorded under its digest, never run
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
                pred = Prediction(self._meta, outs, single)
                if explain:  # no answer without the explanation asked for (a failed one is this call's error)
                    from .explain import Explainer, with_explanation

                    pred = with_explanation(pred, Explainer.for_model(self).explain(feeds, outs[0]))
                result = pred
        except MedinferError as exc:
            error = exc
        except Exception as exc:  # onnxruntime's own exception types
            error = InferenceError(f"onnxruntime failed running {self.name}: {exc}")
            error.__cause__ = exc
        audit = self._audit
        if audit is not None:
            try:
                if error is None:
                    audit.record(feeds, "ok", (time.perf_counter() - start) * 1e6,  # type: ignore[arg-type]
                                 summary(result, explained=self.audit_explanations), request_id)  # type: ignore
                else:
                    audit.record(feeds if feeds is not None else digestible(x), "no_result",
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
        outside = np.flatnonzero(~in_domain(np.asarray(scores).reshape(len(scores)), self._meta.domain_threshold))
        if outside.size:
            coverage = self.manifest.domain.coverage if self.manifest.domain is not None else float("nan")
            raise OutOfDomainError(
                f"{self.name}: {outside.size} sample(s) lie outside its applicability domain (items "
                f"{outside[:10].tolist()}: domain score above {self._meta.domain_threshold:.4g}, the threshold "
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

    def graph_bytes(self) -> bytes:
        """The bytes of this model's graph file, read again (bounded, a regular file only) and checked against the
        size and sha256 its manifest pins: for tools that hand the graph on (export-triton, node placement).

        Raises:
            IntegrityError: the file is no longer the one that was loaded.
        """
        file = self.manifest.variants[self.variant].file
        return read_pinned(self.path, file, self.manifest.files[file])

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
        feeds, _ = self._validate(inputs)
        if variant.outputs is not None:  # its own outputs, in the manifest's order
            names = [o.name for o in variant.outputs if o.name in expected]
        else:
            names = list(golden.outputs or expected)
        got = dict(zip(names, self._run(names, feeds, None)))
        seconds = time.perf_counter() - start
        return compare_golden(got, expected, names, expected_digest, atol, self.manifest.golden.rtol, seconds,
                              self.name, list(self.providers))

    def placement(self) -> dict[str, Any]:
        """Which provider ran each node (profiled golden run): reveals what an accelerator left to the CPU."""
        from .placement import node_placement

        return node_placement(self)
