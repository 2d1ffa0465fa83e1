"""Each rule has ONE home, and a guard here that fails when a second derivation appears (AST or grep, like the
layout test). A guard names the home to call instead; each has a test that shows it can fail."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("runtime", "export", "train", "benchmarks", "scripts", "tests")

Finder = Callable[[ast.AST, str], Iterator[int]]


def _sources(root: Path = ROOT) -> Iterator[Path]:
    for folder in SOURCES:
        yield from sorted((root / folder).rglob("*.py"))


def _attribute_reads(*names: str) -> Finder:
    """``x.<name>`` read (not written) for any of ``names``."""
    def find(tree: ast.AST, _: str) -> Iterator[int]:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in names and isinstance(node.ctx, ast.Load):
                yield node.lineno
    return find


def _names(*names: str) -> Finder:
    """A use of any of ``names`` (a constant or function) by name."""
    def find(tree: ast.AST, _: str) -> Iterator[int]:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in names:
                yield node.lineno
            elif isinstance(node, ast.alias) and node.name in names:
                yield getattr(node, "lineno", 0)
    return find


def _compared_with(*values: str) -> Finder:
    """A comparison (``==``, ``!=``, ``in``) with one of ``values`` as a string: dispatch by name."""
    def find(tree: ast.AST, _: str) -> Iterator[int]:
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                parts = [node.left, *node.comparators]
                consts = [c for p in parts for c in ([*p.elts] if isinstance(p, (ast.Tuple, ast.List, ast.Set))
                                                     else [p])]
                if any(isinstance(c, ast.Constant) and c.value in values for c in consts):
                    yield node.lineno
    return find


def _text(pattern: str) -> Finder:
    """A line of source that matches ``pattern`` (comments and docstrings included: say the rule's name there)."""
    regex = re.compile(pattern)

    def find(_: ast.AST, text: str) -> Iterator[int]:
        for i, line in enumerate(text.splitlines(), 1):
            if regex.search(line) and not line.lstrip().startswith("#"):
                yield i
    return find


#: rule -> (what finds a derivation, the files that may hold it (the home), the home to call instead)
RULES: dict[str, tuple[Finder, set[str], str]] = {
    "which session runs a batch of N": (
        _attribute_reads("large_batch_from", "large_batch"), {"runtime/session.py"},
        "medinfer.session.session_for_batch(profile, batch) / large_batch_from(profile)"),
    "the performance settings of a profile": (
        _names("PERFORMANCE_SETTINGS"), {"runtime/session.py"},
        "medinfer.session.performance_settings(profile) / profile_changes(base, other)"),
    "the golden/parity npz key scheme": (
        _text(r"""["'](in|out)[.@]|f["']@\{"""), {"runtime/samples.py"},
        "medinfer.samples.key / pair_arrays / npz_bytes (write) and read_pairs (read)"),
    "re-reading a pinned bundle file": (
        _text(r"(\.file\b|MANIFEST_NAME|golden)[^#]*\.read_(bytes|text)\(|np\.load\([^)]*(\.file\b|golden)"), set(),
        "Model.graph_bytes() / medinfer.samples.read_pinned / manifest.read_manifest_bytes (bounded, checked)"),
    "sha256": (
        _text(r"hashlib\.(sha256|new)\(|from hashlib import|hmac\.new\("), {"runtime/integrity.py",
                                                                            "runtime/audit/record.py"},
        "medinfer.integrity.sha256_bytes / sha256_file; the audit chain's link and head MAC: medinfer.audit.Chain / "
        "head_mac"),
    "the positive label": (
        _text(r"\.index\([^)]*positive_label|len\([^)]*labels[^)]*\)\s*-\s*1"), {"runtime/decision.py"},
        "medinfer.decision.positive_index(labels, positive_label) (ModelSpec.positive / .outcome in training)"),
    "the in-domain rule": (
        _text(r"domain\w*\s*(<=|>)\s|(<=|>)\s*(np\.float32\()?[\w.]*domain[\w.]*threshold"), {"runtime/decision.py"},
        "medinfer.decision.in_domain(domain_scores, threshold) (or Prediction.in_domain)"),
    "a one-input model's input form": (
        _text(r"(\w+) if len\(\1\) > 1 else next\(iter\(\1\.values\(\)\)\)"
              r"|next\(iter\((\w+)\.values\(\)\)\) if len\(\2\) == 1|\[(\w+)\[0\]\] if len\(\3\) == 1 else"), set(),
        "pass the mapping to Model.predict, or Model.as_input(mapping) where its hot path matters"),
    "a registry (discovery, duplicate refusal, did you mean)": (
        _text(r"pkgutil\.iter_modules|\(f?[\"'][^\"']*already (registered|declared)"), {"runtime/registry.py"},
        "medinfer.registry.Registry(kind, package=...)"),
    "an optional import and its install advice": (
        _text(r"MissingExtraError\("), {"runtime/extras.py", "runtime/errors.py"},
        "medinfer.extras.optional_import(module, extra, feature) / require_extra / missing_extra"),
    # FHIR dateTime values keep the caller's own offset (datetime arithmetic, tools/fhir.py, and serve's FHIR
    # parameter in fleet/infer.py); export/cli.py prints a local wall clock before each progress line.
    "a timestamp": (
        _text(r"strftime\(|isoformat\(|gmtime\(|utcnow|datetime\.now|fromisoformat|mktime"),
        {"runtime/timestamps.py", "runtime/tools/fhir.py", "runtime/fleet/infer.py", "export/cli.py"},
        "medinfer.timestamps.utc_text / build_time (SOURCE_DATE_EPOCH) / parse_utc / UtcClock"),
    "a free port": (
        _text(r"\.bind\(\([^)]*, 0\)\)"), {"runtime/fleet/http.py", "tests/runtime/test_rule_homes.py"},
        "medinfer.fleet.http.free_port (or bind(host, 0) for a socket this process keeps)"),
    "writing a user's output file": (
        _text(r"""\.write_(bytes|text)\(|os\.replace\(|\.rename\(|open\([^)]*["'][wx]b?["']"""),
        {"runtime/writing.py"},
        "medinfer.writing.write_atomic(path, data) (checks the target first: check_target / check_folder)"),
    "a variant kind, by name": (
        _compared_with("int8", "slice", "slice_int8"),
        {f"export/variants/{f}" for f in ("__init__.py", "int8.py", "whole_slice.py", "whole_slice_graph.py",
                                          "int8_nhwc.py", "int8_nhwc_graph.py")},  # the builders (their own modes)
        "a builder registered with medinfer.export.variants.register_variant(kind); the spec lists the kinds"),
}


#: where each rule is checked (default: the product and the shared test helpers; a test may spell a format out)
DEFAULT_SCOPE = ("runtime/", "export/", "train/", "benchmarks/", "scripts/", "tests/helpers/")
SCOPES = {"a variant kind, by name": ("export/", "train/"),  # a device may prefer a shipped variant by its key
          "a free port": (*DEFAULT_SCOPE, "tests/"),
          # what a command writes for its user (bundles, repositories and score outputs are whole folders staged
          # and renamed by their own writers)
          "writing a user's output file": ("runtime/tools/", "runtime/cli/", "runtime/signing.py",
                                           "runtime/fleet/tokens.py")}


def derivations(rule: str, root: Path = ROOT) -> list[str]:
    find, homes, _ = RULES[rule]
    found = []
    for path in _sources(root):
        rel = path.relative_to(root).as_posix()
        if rel in homes or not rel.startswith(SCOPES.get(rule, DEFAULT_SCOPE)):
            continue
        text = path.read_text()
        found += [f"{rel}:{line}" for line in find(ast.parse(text), text)]
    return found


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_lives_in_its_home_only(rule: str) -> None:
    found = derivations(rule)
    assert not found, f"{rule}: derived again at {found}; call {RULES[rule][2]}"


#: For each rule, a line that derives it again (each guard must catch its own).
AGAIN = {
    "which session runs a batch of N": "large = batch >= profile.large_batch_from\n",
    "the performance settings of a profile": (
        "from medinfer.session import PERFORMANCE_SETTINGS\n"
        "def options_of(p):\n    return {k: getattr(p, k) for k in PERFORMANCE_SETTINGS}\n"),
    "the golden/parity npz key scheme": 'extra = {f"@{k}.{name}": v for k, v in goldens.items()}\n',
    "re-reading a pinned bundle file": "data = (bundle / manifest.variants[key].file).read_bytes()\n",
    "sha256": "import hashlib\ndigest = hashlib.sha256(data).hexdigest()\n",
    "the positive label": "positive = labels.index(decision.positive_label) if ok else len(labels) - 1\n",
    "the in-domain rule": "inside = domain <= np.float32(threshold)\n",
    "a one-input model's input form": "pred = model.predict(x if len(x) > 1 else next(iter(x.values())))\n",
    "a registry (discovery, duplicate refusal, did you mean)": (
        "for info in pkgutil.iter_modules(__path__):\n    importlib.import_module(info.name)\n"),
    "an optional import and its install advice": (
        "try:\n    import matplotlib\nexcept ImportError:\n    raise MissingExtraError('plot', 'plots')\n"),
    "a timestamp": 'record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}\n',
    "a free port": "with socket.socket() as s:\n    s.bind((\"127.0.0.1\", 0))\n",
    "a variant kind, by name": 'for kind in spec.variants:\n    if kind in ("slice", "slice_int8"):\n        pass\n',
    "writing a user's output file": 'Path(args.overlay).write_bytes(png)\n',
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_guard_catches_a_derivation(rule: str, tmp_path: Path) -> None:
    assert set(AGAIN) == set(RULES), "give every rule a line that derives it again"
    folder = tmp_path / SCOPES.get(rule, DEFAULT_SCOPE)[0]  # inside the rule's scope
    folder.mkdir(parents=True)
    (folder / "copy.py").write_text(AGAIN[rule])
    assert derivations(rule, tmp_path), f"the guard of {rule!r} misses a copy"
