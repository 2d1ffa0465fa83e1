"""One table says what an error becomes outside (exit status, HTTP status, Triton code), by the error's code; a
test fails when an error class has no row, or when an interface maps errors by class again."""

from __future__ import annotations

import ast
from pathlib import Path

import medinfer
import pytest
from medinfer import errors
from medinfer.errors import OUTWARD, exit_code, http_status, triton_code

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("runtime", "export", "train", "benchmarks", "scripts")


def _error_classes() -> list[type[errors.MedinferError]]:
    found, todo = [], [errors.MedinferError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_every_error_code_has_its_row() -> None:
    import medinfer.fleet.app  # noqa: F401 - every module that might define an error is imported
    import medinfer.tools.dicom  # noqa: F401

    missing = {cls.__name__: cls.code for cls in _error_classes() if cls.code not in OUTWARD}
    assert not missing, f"add these codes to medinfer.errors.OUTWARD: {missing}"
    assert {errors.EXIT_CODES[c] for c in errors.EXIT_CODES} <= set(errors.EXIT_MEANINGS)


@pytest.mark.parametrize(("error", "exit_status", "http", "triton"), [
    (errors.BodyTooLarge("x"), 5, 413, "INVALID_ARG"),
    (errors.RequestError("x"), 5, 400, "INVALID_ARG"),
    (errors.InputTypeError("x"), 5, 400, "INVALID_ARG"),
    (errors.NoInformationError("x"), 5, 400, "INVALID_ARG"),
    (errors.OutOfDomainError("x"), 5, 422, "INTERNAL"),
    (errors.UnknownModel("model", "m", ["a"]), 2, 404, "INTERNAL"),
    (errors.NotReady("x"), 10, 503, "INTERNAL"),
    (errors.Busy("x"), 10, 503, "INTERNAL"),
    (errors.AuditError("x"), 12, 503, "INTERNAL"),
    (errors.DeadlineExceeded("x"), 10, 504, "UNAVAILABLE"),
    (errors.InferenceError("x"), 10, 500, "INTERNAL"),
    (errors.MedinferError("internal"), 1, 500, "INTERNAL"),
    (ValueError("not ours"), 1, 500, "INTERNAL"),
])
def test_the_table_answers_each_interface(error: BaseException, exit_status: int, http: int, triton: str) -> None:
    assert (exit_code(error), http_status(error), triton_code(error)) == (exit_status, http, triton)


def test_busy_is_in_the_family_and_still_where_serve_had_it() -> None:
    pytest.importorskip("uvicorn")
    from medinfer.fleet.app import Busy

    assert Busy is medinfer.errors.Busy and issubclass(Busy, medinfer.errors.NotReady)


def _class_chains(path: Path, root: Path = ROOT) -> list[str]:
    """``isinstance(x, SomeError)`` with an error class other than the base: mapping errors by class."""
    names = {cls.__name__ for cls in _error_classes()} - {"MedinferError"}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
            spec = node.args[1]
            items = spec.elts if isinstance(spec, ast.Tuple) else [spec]
            for item in items:
                name = item.attr if isinstance(item, ast.Attribute) else getattr(item, "id", "")
                if name in names:
                    found.append(f"{path.relative_to(root)}:{node.lineno} isinstance(..., {name})")
    return found


def test_no_interface_maps_errors_by_class() -> None:
    found = [hit for folder in SOURCES for path in sorted((ROOT / folder).rglob("*.py"))
             if path != ROOT / "runtime" / "errors.py" for hit in _class_chains(path)]
    assert not found, f"look the error's code up in medinfer.errors.OUTWARD instead: {found}"


def test_the_class_chain_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "app.py"
    sample.write_text("def status(exc):\n    if isinstance(exc, (NotReady, AuditError)):\n        return 503\n"
                      "    if isinstance(exc, MedinferError):\n        return 500\n")
    assert _class_chains(sample, tmp_path) == ["app.py:2 isinstance(..., NotReady)",
                                               "app.py:2 isinstance(..., AuditError)"]
