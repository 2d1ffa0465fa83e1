"""Secure updates against a local TUF repository (file:// and a loopback HTTP server): the newest bundle is
installed; expired metadata, a replayed old snapshot, a tampered target, another repository's metadata, an older
bundle and a bundle failing its self-test are refused, and the active bundle keeps running."""

from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.cli import main
from medinfer.errors import EXIT_CODES, UpdateRefused
from medinfer.lifecycle import tufrepo
from medinfer.lifecycle.slots import active_bundle
from medinfer.lifecycle.update import update

from ..helpers import candidates

pytest.importorskip("tuf")
pytest.importorskip("cryptography")
pytestmark = pytest.mark.hostile("updates and rollbacks")
MODEL = "tiny_change"


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, Path]:
    paths = {"repo": tmp_path / "repo", "keys": tmp_path / "keys", "slots": tmp_path / "slots", "tmp": tmp_path}
    tufrepo.init(paths["repo"], paths["keys"])
    return paths


def _publish(r: dict[str, Path], release: int, **kw) -> Path:
    bundle = candidates.build(r["tmp"] / f"b{release}{'x' if kw else ''}" / MODEL, release=release, **kw)
    tufrepo.add(r["repo"], r["keys"], bundle)
    return bundle


def _update(r: dict[str, Path], url: str | None = None, **kw) -> dict:
    return update(url or r["repo"].as_uri(), r["slots"], MODEL, root=r["repo"] / "metadata" / "root.json", **kw)


def _active_release(r: dict[str, Path]) -> int | None:
    active = active_bundle(r["slots"])
    return None if active is None else active.key.release


def test_the_newest_bundle_is_installed_and_then_the_next(repo) -> None:
    _publish(repo, 1)
    assert _update(repo)["switched"] and _active_release(repo) == 1
    _publish(repo, 2)
    result = _update(repo)
    assert result["switched"] and result["slot"] == "b" and _active_release(repo) == 2
    assert not _update(repo)["switched"]  # up to date
    model = medinfer.load(active_bundle(repo["slots"]).path)
    assert model.predict(np.zeros((2, 3), np.float32)).labels is not None


def test_expired_metadata_is_refused(repo) -> None:
    _publish(repo, 1)
    tufrepo.refresh_timestamp(repo["repo"], repo["keys"], expires_days=-1)
    with pytest.raises(UpdateRefused, match="[Ee]xpired"):
        _update(repo)
    assert _active_release(repo) is None


def test_a_replayed_old_repository_state_is_refused(repo) -> None:
    _publish(repo, 1)
    old = repo["tmp"] / "old-repo"
    shutil.copytree(repo["repo"], old)
    _publish(repo, 2)
    _update(repo)
    assert _active_release(repo) == 2
    # the attacker serves the repository as it was (an older, validly signed timestamp and snapshot)
    with pytest.raises(UpdateRefused, match="BadVersionNumberError: New timestamp version"):
        _update(repo, old.as_uri())
    # or the current timestamp with an older snapshot under the new snapshot's name
    meta = repo["repo"] / "metadata"
    snapshots = sorted(meta.glob("*.snapshot.json"), key=lambda p: int(p.name.split(".")[0]))
    snapshots[-1].write_bytes(snapshots[-2].read_bytes())
    tufrepo.refresh_timestamp(repo["repo"], repo["keys"])
    with pytest.raises(UpdateRefused, match="BadVersionNumberError: New snapshot version"):
        _update(repo)
    assert _active_release(repo) == 2


def test_a_tampered_target_is_refused(repo) -> None:
    _publish(repo, 1)
    _update(repo)
    _publish(repo, 2)
    (tar,) = [p for p in (repo["repo"] / "targets" / MODEL).glob("*.bundle.tar")
              if p.stat().st_mtime == max(q.stat().st_mtime for q in (repo["repo"] / "targets" / MODEL).iterdir())]
    data = bytearray(tar.read_bytes())
    data[600] ^= 0x01
    tar.write_bytes(bytes(data))
    with pytest.raises(UpdateRefused, match="[Hh]ash|[Ll]ength"):
        _update(repo)
    assert _active_release(repo) == 1


def test_another_repositorys_metadata_is_refused(repo) -> None:
    _publish(repo, 1)
    other = {"repo": repo["tmp"] / "other", "keys": repo["tmp"] / "other-keys", "tmp": repo["tmp"] / "o"}
    tufrepo.init(other["repo"], other["keys"])
    _publish(other, 2)
    _update(repo)  # the device trusts the first repository's root
    with pytest.raises(UpdateRefused):
        update(other["repo"].as_uri(), repo["slots"], MODEL)
    assert _active_release(repo) == 1


def test_an_older_bundle_published_later_is_refused(repo) -> None:
    _publish(repo, 2)
    _update(repo)
    _publish(repo, 1)  # validly signed TUF metadata, but an older bundle
    with pytest.raises(UpdateRefused, match="anti-rollback"):
        _update(repo)
    assert _active_release(repo) == 2


def test_a_bundle_failing_its_self_test_never_becomes_active(repo, capsys) -> None:
    _publish(repo, 1)
    _update(repo)
    broken = candidates.build(repo["tmp"] / "broken" / MODEL, release=2, wrong_golden=True)
    # the repository refuses to publish it (it verifies what it serves), so it is published as a TUF target by hand
    from medinfer.lifecycle.slots import bundle_key
    from tuf.api.metadata import TargetFile

    targets, _, _ = tufrepo._latest(repo["repo"])
    data = tufrepo.bundle_tar(broken)
    target = TargetFile.from_data(f"{MODEL}/bundle.tar", data, ["sha256"])
    key = bundle_key(broken)
    target.unrecognized_fields["custom"] = {"medinfer": {"name": key.name, "version": key.version,
                                                         "release": key.release, "manifest_sha256": key.sha256}}
    (repo["repo"] / "targets" / MODEL / f"{target.hashes['sha256']}.bundle.tar").write_bytes(data)
    targets.signed.targets[target.path] = target
    targets.signed.version += 1
    tufrepo._write(targets, repo["repo"] / "metadata" / f"{targets.signed.version}.targets.json", repo["keys"])
    tufrepo._publish(repo["repo"], repo["keys"], targets.signed.version, None)
    code = main(["update", "--repo", repo["repo"].as_uri(), "--slot-dir", str(repo["slots"]), "--model", MODEL])
    assert code == EXIT_CODES["self_test"] and "SelfTestError" in capsys.readouterr().err
    assert _active_release(repo) == 1 and not (repo["slots"] / "b").exists()


def test_require_diff_refuses_a_degraded_candidate(repo) -> None:
    parent = _publish(repo, 1)
    _update(repo)
    candidates.build(repo["tmp"] / "c" / MODEL, parent=parent, change="threshold", threshold=0.3)
    tufrepo.add(repo["repo"], repo["keys"], repo["tmp"] / "c" / MODEL)
    with pytest.raises(medinfer.errors.ChangeRejected, match="operating threshold"):
        _update(repo, require_diff=True)
    assert _active_release(repo) == 1 and _update(repo)["switched"]  # without the gate it installs


def test_update_over_a_loopback_http_server(repo) -> None:
    _publish(repo, 1)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(repo["repo"]))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert _update(repo, url)["switched"] and _active_release(repo) == 1
        assert main(["update", "--repo", url, "--slot-dir", str(repo["slots"]), "--model", "nonexistent"]) == \
            EXIT_CODES["update_refused"]
    finally:
        server.shutdown()
        server.server_close()


def test_repo_and_update_commands(tmp_path: Path, capsys) -> None:
    bundle = candidates.build(tmp_path / "b" / MODEL, release=1)
    assert main(["repo", "init", str(tmp_path / "repo"), "--keys", str(tmp_path / "keys")]) == 0
    assert main(["repo", "add", str(tmp_path / "repo"), str(bundle), "--keys", str(tmp_path / "keys")]) == 0
    slots = tmp_path / "slots"
    assert main(["update", "--repo", (tmp_path / "repo").as_uri(), "--slot-dir", str(slots), "--model",
                 MODEL]) == EXIT_CODES["usage"]  # the first update needs the trusted root
    assert main(["update", "--repo", (tmp_path / "repo").as_uri(), "--slot-dir", str(slots), "--model", MODEL,
                 "--root", str(tmp_path / "repo" / "metadata" / "root.json")]) == 0
    assert main(["slots", str(slots), "--json"]) == 0
    assert '"release": 1' in capsys.readouterr().out
