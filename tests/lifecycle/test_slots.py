"""Install slots: the inactive slot gets the bundle, it is loaded and self-tested there, the switch is one rename,
a failure after the switch rolls back, and an older bundle is refused (anti-rollback), also by `medinfer install`."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main
from medinfer.errors import EXIT_CODES
from medinfer.lifecycle.slots import SlotWatcher, active_bundle, install, version_tuple

from ..helpers import candidates

pytestmark = pytest.mark.hostile("updates and rollbacks")


def _release(tmp_path: Path, n: int, **kw) -> Path:
    return candidates.build(tmp_path / f"r{n}" / "tiny_change", release=n, **kw)


def test_install_goes_to_the_inactive_slot_and_switches_by_rename(tmp_path: Path) -> None:
    slots = tmp_path / "slots"
    first = install(slots, _release(tmp_path, 1))
    assert first.switched and first.slot == "a" and os.readlink(slots / "current") == "a"
    watcher = SlotWatcher(slots)
    assert watcher.poll() is None
    second = install(slots, _release(tmp_path, 2))
    assert second.slot == "b" and os.readlink(slots / "current") == "b" and second.previous == first.installed
    changed = watcher.poll()
    assert changed is not None and changed.path == (slots / "b").resolve() and changed.key.release == 2
    assert watcher.poll() is None
    assert (slots / "a" / "manifest.json").is_file()  # the previous bundle stays for a rollback
    model = medinfer.load(active_bundle(slots).path)
    assert model.predict(np.zeros((1, 3), np.float32)).labels is not None


def test_an_older_bundle_is_refused_also_by_medinfer_install(tmp_path: Path, capsys) -> None:
    slots = tmp_path / "slots"
    current = _release(tmp_path, 2)
    install(slots, current)
    old = _release(tmp_path, 1)
    with pytest.raises(medinfer.errors.UpdateRefused, match="anti-rollback"):
        install(slots, old)
    assert main(["install", str(old), "--slot-dir", str(slots)]) == EXIT_CODES["update_refused"] == 17
    assert "anti-rollback" in capsys.readouterr().err
    # the same place in the order with other bytes is refused too; the same bundle again changes nothing
    other = candidates.build(tmp_path / "other" / "tiny_change", release=2, threshold=0.4)
    with pytest.raises(medinfer.errors.UpdateRefused, match="other bytes"):
        install(slots, other)
    again = install(slots, current)
    assert not again.switched and active_bundle(slots).key.release == 2
    assert main(["install", str(_release(tmp_path, 3)), "--slot-dir", str(slots)]) == 0


def test_the_floor_survives_a_lost_state_file(tmp_path: Path) -> None:
    slots = tmp_path / "slots"
    install(slots, _release(tmp_path, 2))
    (slots / "state.json").unlink()
    with pytest.raises(medinfer.errors.UpdateRefused, match="anti-rollback"):
        install(slots, _release(tmp_path, 1))  # the active bundle itself is a floor


def test_a_candidate_failing_its_self_test_never_becomes_active(tmp_path: Path, capsys) -> None:
    slots = tmp_path / "slots"
    install(slots, _release(tmp_path, 1))
    broken = _release(tmp_path, 2, wrong_golden=True)
    assert main(["install", str(broken), "--slot-dir", str(slots)]) == EXIT_CODES["self_test"]
    assert "SelfTestError" in capsys.readouterr().err
    active = active_bundle(slots)
    assert active.slot == "a" and active.key.release == 1 and not (slots / "b").exists()
    assert medinfer.load(active.path).self_test().status in ("pass", "bit_exact")


def test_a_failure_after_the_switch_rolls_back(tmp_path: Path) -> None:
    slots = tmp_path / "slots"
    install(slots, _release(tmp_path, 1))

    def fails(path: Path) -> None:
        raise medinfer.SelfTestError("the device's own readiness check failed (injected)")

    with pytest.raises(medinfer.SelfTestError, match="rolled back"):
        install(slots, _release(tmp_path, 2), check=fails)
    active = active_bundle(slots)
    assert active.slot == "a" and active.key.release == 1 and not (slots / "b").exists()
    assert install(slots, _release(tmp_path / "later", 2)).switched  # the floor did not move


def test_readers_always_find_a_whole_bundle_while_it_switches(tmp_path: Path) -> None:
    slots = tmp_path / "slots"
    install(slots, _release(tmp_path, 1))
    seen, errors, stop = set(), [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(active_bundle(slots).key.release)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in (2, 3, 4):
            install(slots, _release(tmp_path, n))
    finally:
        stop.set()
        thread.join()
    assert not errors and seen <= {1, 2, 3, 4} and 4 in seen | {active_bundle(slots).key.release}


def test_versions_order_as_integers() -> None:
    assert version_tuple("1.10.0") > version_tuple("1.9.3") and version_tuple("1.0") == version_tuple("1.0.0")
    for bad in ("1.0.0rc1", "v1", "", "1..2"):
        with pytest.raises(medinfer.UsageError, match="dotted integers"):
            version_tuple(bad)


def test_a_server_loop_picks_up_the_new_slot_without_dropping_a_request(tmp_path: Path) -> None:
    """The pattern serve follows: answer with the model in hand, poll the watcher, load the new slot's resolved path
    beside it, then swap the reference; in-flight requests keep the model they started with."""
    slots = tmp_path / "slots"
    install(slots, _release(tmp_path, 1))
    watcher = SlotWatcher(slots)
    holder = {"model": medinfer.load(watcher.active.path)}
    answered, errors, stop = [], [], threading.Event()

    def requests() -> None:
        x = np.zeros((1, 3), np.float32)
        while not stop.is_set():
            model = holder["model"]
            try:
                model.predict(x)
                answered.append(model.manifest.lineage.release)
            except Exception as exc:  # noqa: BLE001 - a dropped request is the finding
                errors.append(exc)

    thread = threading.Thread(target=requests)
    thread.start()
    try:
        install(slots, _release(tmp_path, 2))
        changed = watcher.poll()
        assert changed is not None
        holder["model"] = medinfer.load(changed.path)  # loaded beside the old one, then swapped
        while 2 not in answered:
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join()
    assert not errors and answered[0] == 1 and answered[-1] == 2


def test_update_on_an_install_without_the_lifecycle_extra_names_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = ("import sys, importlib.abc\n"
              "class B(importlib.abc.MetaPathFinder):\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name.split('.')[0] in ('tuf', 'securesystemslib', 'cyclonedx'):\n"
              "            raise ImportError(name)\n"
              "sys.meta_path.insert(0, B())\n"
              "from medinfer.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    for args in (["update", "--repo", "file:///nowhere", "--slot-dir", str(tmp_path / "s"), "--model", "m"],
                 ["sbom", "--out", str(tmp_path / "o")]):
        proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == EXIT_CODES["missing_extra"], proc.stderr
        assert "[lifecycle]" in proc.stderr and "Traceback" not in proc.stderr
