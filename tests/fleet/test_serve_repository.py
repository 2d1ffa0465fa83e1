"""Triton's repository extension on ``medinfer serve``: a folder of bundles served as a repository, index, load
and unload over HTTP and gRPC, and a new version swapped in under load without one failed request."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from medinfer.fleet.tokens import add_token
from medinfer.integrity import contract_digest

from ..helpers import tiny
from ..helpers.serving import request, serving

pytest.importorskip("uvicorn")
BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).encode()


def build_version(folder: Path, version: str) -> Path:
    """The tiny bundle under another version (its graph's metadata names that version's contract)."""
    meta = {"medinfer.name": "tiny_logistic", "medinfer.version": version,
            "medinfer.contract_sha256": contract_digest({**tiny.contract(), "version": version})}
    return tiny.build(folder, version=version, metadata=meta)


@pytest.fixture
def repo(tmp_path: Path):
    root = tmp_path / "repo"
    tiny.build(root / "tiny_logistic")
    tiny.build_sigmoid(root / "tiny_sigmoid")
    tokens = tmp_path / "tokens.json"
    minted = {"admin": add_token(tokens, "ops", ["admin", "metadata"]), "infer": add_token(tokens, "app", ["infer"])}
    with serving([root], "--token-file", str(tokens), "--grpc-port", "0", "--max-concurrency", "4",
                 log=tmp_path / "server.log") as (url, proc):
        yield {"url": url, "grpc": proc.grpc_url, "root": root, "tmp": tmp_path, "tokens": minted}


def _post(repo, path: str, body: bytes, who: str) -> tuple[int, bytes]:
    status, _, raw = request(repo["url"], path, body, {"Authorization": f"Bearer {repo['tokens'][who]}",
                                                       "Content-Type": "application/json"})
    return status, raw


def test_a_folder_of_bundles_is_served_as_a_repository(repo) -> None:
    status, raw = _post(repo, "/v2/repository/index", b"{}", "admin")
    index = {m["name"]: m for m in json.loads(raw)}
    assert status == 200 and set(index) == {"tiny_logistic", "tiny_sigmoid"}
    assert all(m["state"] == "READY" for m in index.values())
    assert _post(repo, "/v2/models/tiny_sigmoid/infer", BODY, "infer")[0] == 200


def test_a_folder_without_bundles_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "medinfer", "serve", str(tmp_path / "empty"), "--port", "0"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "neither a bundle" in proc.stderr and "Traceback" not in proc.stderr


def test_a_new_version_swaps_in_under_load_without_a_failed_request(repo) -> None:
    host, port = repo["url"].split(":")
    versions: list[str] = []
    sent_at: list[float] = []  # when each answered request was sent
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        headers = {"Authorization": f"Bearer {repo['tokens']['infer']}", "Content-Type": "application/json"}
        while not stop.is_set():
            try:
                sent = time.monotonic()
                conn.request("POST", "/v2/models/tiny_logistic/infer", BODY, headers)
                resp = conn.getresponse()
                raw = resp.read()
                if resp.status != 200:
                    failures.append(f"{resp.status} {raw[:200]!r}")
                else:
                    sent_at.append(sent)
                    versions.append(json.loads(raw)["model_version"])
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))
                conn = http.client.HTTPConnection(host, int(port), timeout=30)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    staged = build_version(repo["tmp"] / "staged", "0.0.2")
    os.rename(repo["root"] / "tiny_logistic", repo["tmp"] / "old")
    os.rename(staged, repo["root"] / "tiny_logistic")
    status, raw = _post(repo, "/v2/repository/models/tiny_logistic/load", b"{}", "admin")
    assert status == 200, raw
    loaded = time.monotonic()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    # requests running during the swap finish on the model they started with; every one sent after the load
    # returned gets the new version
    after = {v for v, t in zip(versions, sent_at) if t > loaded}
    assert versions[0] == "0.0.1" and after == {"0.0.2"}, (versions[:3], after)
    index = {m["name"]: m for m in json.loads(_post(repo, "/v2/repository/index", b"{}", "admin")[1])}
    assert index["tiny_logistic"]["version"] == "0.0.2"


def test_a_version_that_fails_its_checks_never_replaces_the_serving_one(repo) -> None:
    with open(repo["root"] / "tiny_logistic" / "model.onnx", "ab") as fh:  # tampered in place
        fh.write(b"\0")
    status, raw = _post(repo, "/v2/repository/models/tiny_logistic/load", b"{}", "admin")
    assert status == 400 and "IntegrityError" in json.loads(raw)["error"] and "nothing was replaced" in raw.decode()
    assert _post(repo, "/v2/models/tiny_logistic/infer", BODY, "infer")[0] == 200


def test_unload_and_load_over_http_and_grpc_need_the_admin_scope(repo) -> None:
    tg = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    assert _post(repo, "/v2/repository/models/tiny_sigmoid/unload", b"{}", "infer")[0] == 403
    assert _post(repo, "/v2/repository/models/tiny_sigmoid/unload", b"{}", "admin")[0] == 200
    status, raw = _post(repo, "/v2/models/tiny_sigmoid/infer", BODY, "infer")
    assert status == 503 and "unloaded" in json.loads(raw)["error"]
    assert request(repo["url"], "/v2/health/ready")[0] == 200  # an unloaded model does not make the server unready
    assert _post(repo, "/v2/repository/models/nope/load", b"{}", "admin")[0] == 404
    client = tg.InferenceServerClient(repo["grpc"])
    admin = {"authorization": f"Bearer {repo['tokens']['admin']}"}
    with pytest.raises(InferenceServerException, match="lacks the scope 'admin'"):
        client.load_model("tiny_sigmoid", headers={"authorization": f"Bearer {repo['tokens']['infer']}"})
    client.load_model("tiny_sigmoid", headers=admin)
    assert client.is_model_ready("tiny_sigmoid", headers=admin)
    assert _post(repo, "/v2/models/tiny_sigmoid/infer", BODY, "infer")[0] == 200
    client.unload_model("tiny_sigmoid", headers=admin)
    assert not client.is_model_ready("tiny_sigmoid", headers=admin)
