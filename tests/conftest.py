from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .helpers import tiny

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Folders whose every test needs the training stack ([train] extra); tests elsewhere that train a spec use the
# ``built`` fixture and are marked too. ``make test-device`` runs ``-m "not train"`` in a venv without [train].
TRAIN_FOLDERS = {"train", "export", "specs"}


HOSTILE: dict[str, dict[str, int]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count the hostile-input cases (tests marked ``hostile("<class>")``) by class and outcome."""
    cls = dict(report.user_properties).get("hostile")
    if cls and (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
        HOSTILE.setdefault(cls, {"passed": 0, "failed": 0, "skipped": 0})[report.outcome] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not HOSTILE:
        return
    total = {k: sum(c[k] for c in HOSTILE.values()) for k in ("passed", "failed", "skipped")}
    terminalreporter.write_sep("-", f"hostile-input suite: {sum(total.values())} cases in {len(HOSTILE)} classes "
                                    f"({total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped)")
    for cls, counts in sorted(HOSTILE.items()):
        terminalreporter.write_line(f"  {cls:<42} {counts['passed']:>4} passed {counts['failed']:>3} failed "
                                    f"{counts['skipped']:>3} skipped")


@pytest.fixture(autouse=True)
def _hostile_class(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("hostile")
    if marker is not None:
        request.node.user_properties.append(("hostile", marker.args[0]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        parts = Path(str(item.fspath)).relative_to(root).parts
        if parts[0] in TRAIN_FOLDERS or "built" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.train)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    return tiny.build(tmp_path / "tiny_logistic")


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """``make_bundle(folder_name="tiny_logistic", **options)``: a tiny bundle (``tiny.build``, whose options replace
    manifest fields) in its own folder under the test's tmp_path."""
    def make(folder_name: str = "tiny_logistic", **options: Any) -> Path:
        return tiny.build(tmp_path / folder_name, **options)
    return make


@pytest.fixture(scope="session")
def tiny_bundle_ro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle shared by tests that only read it."""
    return tiny.build(tmp_path_factory.mktemp("tiny") / "tiny_logistic")


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two Ed25519 key pairs (``priv``/``pub`` and ``other_priv``/``other_pub``) for the signature tests."""
    pytest.importorskip("cryptography")
    from medinfer.signing import generate_keypair

    root = tmp_path_factory.mktemp("keys")
    a_priv, a_pub, _ = generate_keypair(root / "a.pem")
    b_priv, b_pub, _ = generate_keypair(root / "b.pem")
    return {"priv": a_priv, "pub": a_pub, "other_priv": b_priv, "other_pub": b_pub}


_BUILT: dict[str, object] = {}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory):
    """Train (on the spec's small test sample) and export a registered spec once per test session."""
    from medinfer.export.bundle import export
    from medinfer.train import artifact, registry

    def get(name: str):
        if name not in _BUILT:
            spec = registry.get(name)
            root = tmp_path_factory.mktemp(f"build_{name}")
            art = artifact.train(name, root / "artifacts", sample=spec.test_sample, **spec.test_options)
            path = export(art, root / "bundles")
            _BUILT[name] = (art, path)
        return _BUILT[name]

    return get
