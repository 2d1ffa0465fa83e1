"""The schema of every results file (``benchmarks/results/*.json``): raw data, never prose.

A results file holds numbers, booleans, names, commands and fingerprints. Numbers may sit anywhere; a STRING may sit
only under a key declared here, and must match that key's pattern (which bounds its length and its characters):

- names and labels (:data:`NAME`): one short line, no markdown, and no speed or ratio in it ("3x faster" is a
  claim, not a name; :mod:`benchmarks.claims` finds those);
- identifiers, versions, digests, commits, times, paths, commands: their own tight patterns;
- ``reason`` / ``why`` / ``missing``: a reason CODE (``venv_missing``), never a sentence; the words that explain a
  code live in the renderer (report.py), where a test sees them;
- what a tool said when it failed: only inside a captured error (``error`` / ``error_sample``), an object of the
  tool's ``message`` (one line, at most 500 characters, no markdown) and the status it ended with: ``exit_status``
  (a process: the peer's exit status, None while it still runs), ``http_status`` (a server's answer) or
  ``exception`` (the exception type, in this process).

Each file also says what it measured: the ``command`` that made it, the ``provenance`` of its run (commit, clean
tree, start time: :mod:`benchmarks.provenance`) and the sha256 of every bundle it timed (``bundles``). Files whose
entries come from separate runs (``runs_on``, ``int8_ops``) carry these per entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .claims import loose

Problem = tuple[str, str]  # (JSON path, what is wrong)

_ONE_LINE = r"[^\n\r]"
_PLAIN = r"[^\n\r|`*<>]"  # one line without markdown's table bars, code ticks, emphasis or tags
IDENT = re.compile(r"[A-Za-z0-9_.:+\-]{1,80}")
NAME = re.compile(r"[\w .:;+\-\[\]()=,/|@'~#&%^]{1,200}")
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX = re.compile(r"[0-9a-f]{8,64}")
COMMIT = re.compile(r"[0-9a-f]{7,40}(\+dirty)?")
COMMIT40 = re.compile(r"[0-9a-f]{40}")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
PATH = re.compile(rf"{_PLAIN}{{1,240}}")
COMMAND = re.compile(rf"{_ONE_LINE}{{1,400}}")
ARG = re.compile(r"\S{1,120}")
CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")
SOURCE = re.compile(rf"{_PLAIN}{{0,240}}")
RESULT = re.compile(rf"pass|fail(: {_PLAIN}{{1,300}})?")
MESSAGE_MAX = 500
_MARKDOWN = (re.compile(r"^\s*\|.*\|\s*$"), re.compile(r"\*\*[^*]+\*\*"), re.compile(r"^#+ "), re.compile(r"^\s*[-*] "))

_KEYS: dict[re.Pattern[str], tuple[str, ...]] = {
    IDENT: ("kind", "arch", "flags", "python", "numpy", "onnxruntime", "onnxruntime_build", "available_providers",
            "medinfer", "version", "precision", "medinfer_reads", "graph_optimization_level", "execution_mode",
            "session_options", "runtime", "input_dtype", "providers", "session_providers", "cpu_nodes", "self_test",
            "status", "provider", "encoding", "encodings", "engine", "machine", "check", "metric", "timer",
            "trimming", "baseline_ref", "ref", "patch_variant", "one_pass_variant", "exception", "os", "fetch",
            "role"),
    NAME: ("model", "candidate", "variant", "label", "server", "bundle", "input", "name", "method", "set", "run",
           "key", "how", "same_options_name", "batch1_profile_name", "default_options_name", "gpu", "fingerprint",
           "explains", "units", "top", "family", "design", "evaluation", "class"),
    HEX64: ("manifest_sha256", "model_sha256", "graph_sha256"),
    HEX: ("hostname_hash",),
    COMMIT: ("git_commit",),
    COMMIT40: ("commit",),
    TIME: ("time", "started", "created", "date"),
    PATH: ("tree", "venv", "path", "out", "changed_paths", "repository"),
    COMMAND: ("command", "selection"),
    ARG: ("audit_args",),
    CODE: ("reason", "why", "missing"),
    SOURCE: ("source",),
    RESULT: ("result",),
}
STRINGS: dict[str, re.Pattern[str]] = {key: pattern for pattern, keys in _KEYS.items() for key in keys}
# Objects whose keys are names (a model, a variant, a bundle) and whose string values all follow one pattern.
MAPS: dict[str, re.Pattern[str]] = {"verify": IDENT, "variants": IDENT, "graphs": HEX64}
CAPTURED = ("error", "error_sample")  # a tool's own words, only as a captured error object
STATUS = ("exit_status", "http_status", "exception")
KEY = re.compile(r"[\w .:;+\-\[\]()=,/|@'~#&%]{1,100}")  # an object key is a name too
SPEED_CHECKED = (NAME,)  # patterns whose strings may not carry a speed or ratio
ROWS = {"runs_on": "rows", "int8_ops": "runs"}  # files whose entries come from separate runs
NO_BUNDLES = {"runs_on"}  # files that time no bundle (the edge checks verify them; their rows name the set)


def captured(message: object, *, exit_status: int | None = None, http_status: int | None = None,
             exception: str | None = None) -> dict[str, Any]:
    """A captured error: the tool's message on one line (bounded, markdown characters removed) with its status.

    Give ``exit_status`` for a process (None while it still runs), ``http_status`` for a server's answer, or
    ``exception`` (its type) for an error raised in this process; with none of them, ``exit_status`` is None.
    """
    text = " / ".join(part.strip() for part in str(message).splitlines() if part.strip())
    text = re.sub(r"[|`*<>]", " ", text)[:MESSAGE_MAX]
    out: dict[str, Any] = {"message": text}
    if http_status is not None:
        out["http_status"] = int(http_status)
    if exception is not None:
        out["exception"] = exception
    if (http_status is None and exception is None) or exit_status is not None:
        out["exit_status"] = exit_status
    return out


def from_exception(exc: BaseException) -> dict[str, Any]:
    """A captured error of an exception raised in this process."""
    return captured(f"{type(exc).__name__}: {exc}", exception=type(exc).__name__)


def error_text(value: Any) -> str:
    """The message of a captured error (or of a string written before the schema), for a renderer."""
    if isinstance(value, dict):
        status = next((f" ({k.replace('_', ' ')} {value[k]})" for k in ("exit_status", "http_status")
                       if value.get(k) is not None), "")
        return f"{value.get('message', '')}{status}"
    return "" if value is None else str(value)


def _captured_problems(value: Any, path: str) -> Iterator[Problem]:
    if not isinstance(value, dict):
        yield path, (f"a {type(value).__name__} where a captured error belongs: write "
                     "{'message': the tool's words, 'exit_status' | 'http_status' | 'exception': its status}")
        return
    extra = sorted(set(value) - {"message", *STATUS})
    if extra:
        yield path, f"a captured error holds only message and {', '.join(STATUS)}, not {', '.join(extra)}"
    message = value.get("message")
    if not isinstance(message, str) or not message or len(message) > MESSAGE_MAX or "\n" in message:
        yield path, f"a captured error's message must be one line of 1-{MESSAGE_MAX} characters"
    elif any(p.search(message) for p in _MARKDOWN):
        yield path, f"markdown in a captured error's message {message[:60]!r}"
    if not any(k in value for k in STATUS):
        yield path, f"a captured error names the status the tool ended with ({', '.join(STATUS)})"
    for key in ("exit_status", "http_status"):
        if key in value and value[key] is not None and not isinstance(value[key], int):
            yield f"{path}.{key}", f"{key} must be an integer"
    if "exception" in value and not (isinstance(value["exception"], str) and IDENT.fullmatch(value["exception"])):
        yield f"{path}.exception", "an exception type name"


def _string_problem(text: str, key: str, parent: str, path: str) -> str | None:
    pattern = STRINGS.get(key) or MAPS.get(parent)
    if pattern is None:
        return (f"a string under the undeclared key {key!r} ({text[:50]!r}): results hold data; declare the field in "
                "benchmarks/schema.py if it is a name, code or command, else compute the words in the renderer")
    if not pattern.fullmatch(text):
        return f"{text[:60]!r} is not a valid {key!r} (one line, bounded, no markdown; pattern {pattern.pattern})"
    if pattern in SPEED_CHECKED:
        found = loose(text)
        if found:
            return f"{text[:60]!r}: a speed or ratio ({found[0][1]!r}) written into a name; numbers go in number fields"
    return None


def _walk(value: Any, path: str, key: str, parent: str) -> Iterator[Problem]:
    if key in CAPTURED and isinstance(value, (str, dict)):  # a number under "error" is a count
        yield from _captured_problems(value, path)
        return
    if isinstance(value, str):
        problem = _string_problem(value, key, parent, path)
        if problem:
            yield path, problem
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not KEY.fullmatch(k) or loose(k):
                yield f"{path}.{k!s:.40}", "an object key must be a short name (no speed or ratio, no markdown)"
            yield from _walk(v, f"{path}.{k}", k, key)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]", key, parent)
    elif not (value is None or isinstance(value, (bool, int, float))):
        yield path, f"a {type(value).__name__}: results hold JSON data"


def _provenance(prov: Any, path: str) -> Iterator[Problem]:
    if not isinstance(prov, dict):
        yield path, "no provenance (commit, dirty flag and start time of the run, recorded at its start)"
        return
    if not (isinstance(prov.get("commit"), str) and COMMIT40.fullmatch(prov["commit"])):
        yield f"{path}.commit", "the commit the run measured (40 hex digits)"
    if not isinstance(prov.get("dirty"), bool):
        yield f"{path}.dirty", "whether the tree had uncommitted changes when the run started (true or false)"
    if not (isinstance(prov.get("started"), str) and TIME.fullmatch(prov["started"])):
        yield f"{path}.started", "when the run started (UTC, ISO 8601)"


def _bundles(doc: Any, path: str) -> Iterator[Problem]:
    bundles = doc.get("bundles") if isinstance(doc, dict) else None
    if not isinstance(bundles, dict) or not bundles:
        yield f"{path}.bundles", "no bundle digests (sha256 of each timed bundle's manifest and graphs)"
        return
    for name, d in bundles.items():
        if not (isinstance(d, dict) and isinstance(d.get("manifest_sha256"), str)
                and isinstance(d.get("graphs"), dict) and d["graphs"]):
            yield f"{path}.bundles.{name}", "each bundle: manifest_sha256 and the sha256 of its graphs"


def _command(doc: Any, path: str) -> Iterator[Problem]:
    if not (isinstance(doc, dict) and isinstance(doc.get("command"), str) and doc["command"].strip()):
        yield f"{path}.command", "no 'command' (the command that made these numbers)"


PROSE_KEYS = {"markdown", "notes", "findings", "text", "prose", "summary_md", "title", "description", "claim"}


def problems(doc: Any, name: str = "") -> list[Problem]:
    """Every way ``doc`` (the results file ``name``) is not raw data with its provenance (empty: it is)."""
    out: list[Problem] = []
    if not isinstance(doc, dict):
        return [("$", "a results file is a JSON object")]
    entries: list[tuple[str, Any]] = [("$", doc)]
    if name in ROWS:
        rows = doc.get(ROWS[name])
        entries = [(f"$.{ROWS[name]}[{i}]", r) for i, r in enumerate(rows)] if isinstance(rows, list) else []
        if not entries:
            out.append((f"$.{ROWS[name]}", "no entries"))
    for path, entry in entries:
        out += _command(entry, path)
        out += _provenance(entry.get("provenance") if isinstance(entry, dict) else None, f"{path}.provenance")
        if name not in NO_BUNDLES:
            out += _bundles(entry, path)
    for path, key in _keys(doc, "$"):
        if key.lower() in PROSE_KEYS:
            out.append((path, f"a '{key}' key: rendered text belongs in the renderer, not in a results file"))
    out += _walk(doc, "$", "", "")
    return out


def _keys(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}.{k}", str(k)
            yield from _keys(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _keys(v, f"{path}[{i}]")


def matches(path: str, pattern: str) -> bool:
    """Whether a problem's ``path`` lies at or under ``pattern`` (``[*]`` stands for any index, ``.*`` any key)."""
    regex = re.escape(pattern).replace(r"\[\*\]", r"\[\d+\]").replace(r"\.\*", r"\.[^.\[]+")
    return re.match(rf"{regex}(?=$|[.\[])", path) is not None


def tolerated(found: list[Problem], allowed: list[str]) -> tuple[list[Problem], set[str]]:
    """(the problems no entry of ``allowed`` covers, the entries of ``allowed`` that covered something)."""
    left, used = [], set()
    for path, why in found:
        hit = [p for p in allowed if matches(path, p)]
        used.update(hit)
        if not hit:
            left.append((path, why))
    return left, used

