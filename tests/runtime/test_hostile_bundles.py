"""Hostile bundles: every way a bundle folder can be made to lie gets a typed refusal — from load(), as an
UnavailableModel under on_error="no_result", and as a one-line error with its exit code from `medinfer verify` —
never a hang, an unbounded read, a traceback or a smuggled file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.integrity import sha256_bytes

from ..helpers import tiny

pytestmark = pytest.mark.hostile("bundle tampering and special files")


def _repin(bundle: Path, name: str, data: bytes) -> None:
    """Replace a file and re-pin it in the manifest (an attacker who can edit both)."""
    (bundle / name).write_bytes(data)
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["files"][name].update(sha256=sha256_bytes(data), size=len(data))
    (bundle / "manifest.json").write_text(json.dumps(doc))


def _fifo(bundle: Path) -> None:
    (bundle / "golden.npz").unlink()
    os.mkfifo(bundle / "golden.npz")


def _zero_link(bundle: Path) -> None:
    (bundle / "model.onnx").unlink()
    (bundle / "model.onnx").symlink_to("/dev/zero")


def _link_outside(bundle: Path) -> None:
    outside = bundle.parent / "elsewhere.onnx"
    outside.write_bytes((bundle / "model.onnx").read_bytes())
    (bundle / "model.onnx").unlink()
    (bundle / "model.onnx").symlink_to(outside)


def _hidden_in_linked_folder(bundle: Path) -> None:
    other = bundle.parent / "payload"
    other.mkdir()
    (other / "evil.py").write_text("print('pwned')")
    (bundle / "plots").symlink_to(other)


def _pycache(bundle: Path) -> None:
    (bundle / "__pycache__").mkdir()
    (bundle / "__pycache__" / "x.pyc").write_bytes(b"\x00")


def _dangling(bundle: Path) -> None:
    (bundle / "gone.onnx").symlink_to(bundle / "never-there")


def _fifo_unpinned(bundle: Path) -> None:
    os.mkfifo(bundle / "pipe")


def _empty_folder(bundle: Path) -> None:
    (bundle / "extra").mkdir()


def _pinned_is_a_folder(bundle: Path) -> None:
    (bundle / "golden.npz").unlink()
    (bundle / "golden.npz").mkdir()


def _garbage_graph(bundle: Path) -> None:
    _repin(bundle, "model.onnx", b"this is not an onnx graph" * 10)


def _garbage_golden(bundle: Path) -> None:
    _repin(bundle, "golden.npz", b"PK\x03\x04 not really a zip")


def _golden_without_keys(bundle: Path) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, unrelated=np.zeros(3))
    _repin(bundle, "golden.npz", buf.getvalue())


def _deep_manifest(bundle: Path) -> None:
    (bundle / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)


def _manifest_fifo(bundle: Path) -> None:
    (bundle / "manifest.json").unlink()
    os.mkfifo(bundle / "manifest.json")


def _substring_name(bundle: Path) -> None:
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["files"]["xplots/y"] = doc["files"].pop("golden.npz")
    doc["golden"]["file"] = "xplots/y"
    (bundle / "manifest.json").write_text(json.dumps(doc))


def _dotdot_name(bundle: Path) -> None:
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["files"]["../golden.npz"] = doc["files"].pop("golden.npz")
    doc["golden"]["file"] = "../golden.npz"
    (bundle / "manifest.json").write_text(json.dumps(doc))


CASES: dict[str, tuple[Callable[[Path], None], type, str]] = {
    "pinned file replaced by a FIFO": (_fifo, medinfer.IntegrityError, "FIFO"),
    "pinned file a symlink to /dev/zero": (_zero_link, medinfer.IntegrityError, "symbolic link"),
    "pinned file a symlink out of the bundle": (_link_outside, medinfer.IntegrityError, "symbolic link"),
    "unpinned files in a symlinked folder": (_hidden_in_linked_folder, medinfer.IntegrityError, "symbolic link"),
    "unpinned file under __pycache__": (_pycache, medinfer.IntegrityError, "__pycache__"),
    "dangling symlink": (_dangling, medinfer.IntegrityError, "symbolic link"),
    "unpinned FIFO": (_fifo_unpinned, medinfer.IntegrityError, "FIFO"),
    "unpinned empty folder": (_empty_folder, medinfer.IntegrityError, "'extra/' is not pinned"),
    "pinned path is a folder": (_pinned_is_a_folder, medinfer.IntegrityError, "a folder"),
    "garbage graph, re-pinned": (_garbage_graph, medinfer.BundleError, "cannot load this graph"),
    "garbage golden file, re-pinned": (_garbage_golden, medinfer.BundleError, "not a readable golden file"),
    "golden file without its keys": (_golden_without_keys, medinfer.BundleError, "lacks golden inputs"),
    "manifest nested 100 000 deep": (_deep_manifest, medinfer.ManifestError, "deeper"),
    "manifest.json is a FIFO": (_manifest_fifo, medinfer.ManifestError, "FIFO"),
    "file name 'xplots/y' (substring trick)": (_substring_name, medinfer.IntegrityError, "xplots"),
    "file name with '..'": (_dotdot_name, medinfer.ManifestError, "plain file name"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_load_refuses_with_a_typed_error(tmp_path: Path, case: str) -> None:
    make, error, words = CASES[case]
    bundle = tiny.build(tmp_path / "tiny_logistic")
    make(bundle)
    with pytest.raises(error, match=words):
        medinfer.load(bundle)
    unavailable = medinfer.load(bundle, on_error="no_result")
    assert isinstance(unavailable, medinfer.UnavailableModel)
    out = unavailable.try_predict(tiny.GOLDEN_X)
    assert isinstance(out, medinfer.NoResult) and out.reason == error.code


@pytest.mark.parametrize("case", ["pinned file replaced by a FIFO", "garbage graph, re-pinned",
                                  "manifest nested 100 000 deep", "unpinned files in a symlinked folder"])
def test_verify_answers_in_one_line_with_the_exit_code(tmp_path: Path, case: str) -> None:
    make, error, _ = CASES[case]
    bundle = tiny.build(tmp_path / "tiny_logistic")
    make(bundle)
    proc = subprocess.run([sys.executable, "-m", "medinfer", "verify", str(bundle)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == medinfer.errors.EXIT_CODES[error.code], proc.stderr
    # onnxruntime itself prints a cpuid warning under qemu (make test-arm: the emulated CPU has no vendor id)
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("onnxruntime cpuid_info warning")]
    assert "Traceback" not in proc.stderr and len(lines) == 1 and lines[0].startswith("FAIL"), proc.stderr


def test_a_missing_trusted_key_file_is_a_typed_refusal(tiny_bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from medinfer.signing import generate_keypair, sign_bundle

    private, _, _ = generate_keypair(tmp_path / "k.pem")
    sign_bundle(tiny_bundle, private)
    with pytest.raises(medinfer.UsageError, match="trusted key file .*nope.pem.* cannot be read"):
        medinfer.load(tiny_bundle, trusted_keys=[tmp_path / "nope.pem"])
    assert isinstance(medinfer.load(tiny_bundle, trusted_keys=[tmp_path / "nope.pem"], on_error="no_result"),
                      medinfer.UnavailableModel)
