"""Speed and ratio numbers written in prose, in every form, so that none can stand in the docs without its data.

A number with a time unit (ns, µs, us, ms, s, seconds, microseconds, minutes, hours ...), a ratio (``6.8x``,
``6.8×``, ``2.7 times``, ``3-fold``, ``40 %``, ``40%``, ``40 percent``) or a rate (``req/s``, ``rows/s``,
``MB/s``, ``qps`` ...) is a claim. In README.md, SECURITY.md and docs/*.md each must be rendered: inside a
``<!-- n:KEY -->...<!-- /n -->`` span (:mod:`benchmarks.readme` makes its text from the results files or from the
code constant that enforces it) or inside a block rendered from a results file (:data:`RENDERED_BLOCKS`, each kept
equal to its file by its own test). :func:`scan` finds every other one and names its line.

Not claims, and so not flagged: the value of a command-line option or keyword argument (``--window 1h``,
``group_ms=10``), a dimension (``3×64``, ``512x512``) and the proper names of :data:`PROPER_NAMES`.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_NUM = r"[-+−±~≈]?\d+(?:[.,]\d+)*"
_RANGE = rf"(?<![\w.]){_NUM}(?:\s?(?:[–—-]|to)\s?\d+(?:[.,]\d+)*)?"
_TIME = r"(?:ns|[µμu]s|ms|s|secs?|seconds?|(?:nano|micro|milli)-?seconds?|mins?|minutes?|h|hrs?|hours?)"
_COUNT = r"(?:req(?:uest)?s?|rows?|samples?|calls?|quer(?:y|ies)|inferences?|records?|images?|patches?|tokens?" \
         r"|items?|ops|frames?|predictions?|batches?|messages?|events?)"
_PER = r"(?:/|per\s)\s?(?:s|sec|second|ms|min|minute|h|hour)\b"
_RATE = rf"(?:{_COUNT}|[kKMGT]i?B|[kKMGT]?bytes?|[kKMGT]?b(?:its?)?)\s?{_PER}"
_PATTERN = re.compile(
    rf"{_RANGE}\s?(?:"
    rf"{_TIME}(?![\w/])"                              # 15 µs, 2 seconds, 30 min (not 15 s/..., not 2 sets)
    r"|[x×](?!\s?\d)(?![\w])"                        # 6.8x, 6.8×  (not 3×64, 512x512)
    r"|times\b|-?fold\b|%|percent\b|per\s?cent\b|pct\b"  # 2.7 times, 3-fold, 40 %, 40%, 40 percent
    rf"|{_RATE}"                                      # 500 req/s, 80 MB/s, 1000 rows per second
    r"|(?:qps|rps|fps|QPS|RPS|FPS|it/s)\b"
    r")")
_OPTION_VALUE = re.compile(r"(?:--[\w-]+[ =]|\b\w+=)$")  # --window 1h, group_ms=10: an input, not a claim
PROPER_NAMES = ("10x PBMC",)  # 10x Genomics' PBMC data set: a name, not a ratio
SPAN = re.compile(r"<!-- n:[\w.]+ -->.*?<!-- /n -->", re.S)
# Blocks rendered whole from a results file, each kept equal to it by the test named.
RENDERED_BLOCKS = {
    "domain table (tests/docs/test_domain_table.py)": (r"<!-- domain-table:begin -->", r"<!-- domain-table:end -->"),
    "runs-on table (tests/runtime/test_runs_on.py)": (r"<!-- runs-on:start[^>]*-->", r"<!-- runs-on:end -->"),
    "promise table (tests/docs/test_promise_catalogue.py)": (r"<!-- promises:begin -->", r"<!-- promises:end -->"),
    "explanation examples (python -m benchmarks explain --examples)": (r"<!-- explain-examples:start[^>]*-->",
                                                                     r"<!-- explain-examples:end -->"),
    "mutation score (tests/docs/test_promise_catalogue.py)": (r"<!-- mutation-score:begin -->",
                                                              r"<!-- mutation-score:end -->"),
}


def _blank(match: re.Match[str]) -> str:
    return "\n" * match.group(0).count("\n")  # keep the line numbers of what follows


def rendered_removed(text: str) -> str:
    """``text`` with every rendered span and block blanked (line numbers kept)."""
    text = SPAN.sub(_blank, text)
    for name in PROPER_NAMES:
        text = text.replace(name, " " * len(name))
    for begin, end in RENDERED_BLOCKS.values():
        text = re.sub(rf"{begin}.*?{end}", _blank, text, flags=re.S)
    return text


def loose(text: str) -> list[tuple[int, str]]:
    """(line number, the number as written) of every speed or ratio in ``text``, option values excepted."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        for m in _PATTERN.finditer(line):
            if not _OPTION_VALUE.search(line[:m.start()]):
                out.append((number, m.group(0)))
    return out


def scan(path: Path) -> list[str]:
    """``path:line: 'number' in: the line`` for every speed or ratio outside a rendered span or block."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return [f"{shown}:{n}: {found!r} in: {lines[n - 1].strip()[:160]}" for n, found in loose(rendered_removed(text))]


def documents(root: Path = ROOT) -> list[Path]:
    """The documents whose numbers are claims: README.md, SECURITY.md and docs/*.md."""
    return [p for p in (root / "README.md", root / "SECURITY.md") if p.is_file()] + sorted(root.glob("docs/*.md"))
