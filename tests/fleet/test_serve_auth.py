"""Who may call ``medinfer serve``: bearer tokens (hashed at rest, scoped, expiring, revocable, never in a URL and
never logged) and mutual TLS (client certificates verified against a CA). Every protected endpoint refuses a
client without a credential (401) or without the scope (403) with a JSON error, and every refusal is audited."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import medinfer
import numpy as np
import pytest
from medinfer.fleet.auth import token_digest
from medinfer.fleet.tokens import add_token, revoke_token

from ..helpers import tiny
from ..helpers.serving import request, serving

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.hostile("serve: credentials")
X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.5]], dtype=np.float32)
BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).encode()
# (method, path, body, group): one endpoint of each kind
PROTECTED = [
    ("POST", "/v2/models/tiny_logistic/infer", BODY, "infer"),
    ("GET", "/v2", None, "metadata"),
    ("GET", "/v2/models/tiny_logistic", None, "metadata"),
    ("GET", "/v2/models/tiny_logistic/ready", None, "metadata"),
    ("GET", "/v2/models/tiny_logistic/config", None, "metadata"),
    ("POST", "/v2/repository/index", b"{}", "metadata"),
    ("GET", "/v2/models/stats", None, "metrics"),
    ("GET", "/metrics", None, "metrics"),
]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("serve_auth")
    bundle = tiny.build(root / "tiny_logistic")
    tokens = root / "tokens.json"
    minted = {scope: add_token(tokens, scope, [scope]) for scope in ("infer", "metadata", "metrics", "admin")}
    minted["all"] = add_token(tokens, "all", ["infer", "metadata", "metrics", "admin"])
    minted["expired"] = add_token(tokens, "expired", ["infer", "metadata"],
                                  time.time() - 60)
    minted["revoked"] = add_token(tokens, "revoked", ["infer"])
    log = root / "server.log"
    with serving([bundle], "--token-file", str(tokens), "--audit", str(root / "audit.jsonl"), "--access-log",
                 "--log-format", "json", log=log) as (url, _):
        yield {"url": url, "tokens": minted, "root": root, "file": tokens, "log": log, "bundle": bundle}


def _call(url: str, method: str, path: str, body: bytes | None, token: str | None = None,
          extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", **(extra or {})}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://{url}{path}", data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


@pytest.mark.parametrize(("method", "path", "body", "group"), PROTECTED)
def test_every_protected_endpoint_refuses_a_client_without_a_token(secured, method, path, body, group) -> None:
    status, headers, raw = _call(secured["url"], method, path, body)
    assert status == 401, (status, raw)
    assert headers["content-type"] == "application/json" and headers["www-authenticate"].startswith("Bearer")
    assert "Unauthenticated" in json.loads(raw)["error"]
    good = _call(secured["url"], method, path, body, secured["tokens"][group])
    assert good[0] == 200, good


@pytest.mark.parametrize(("method", "path", "body", "group"), PROTECTED)
def test_a_token_without_the_scope_is_403(secured, method, path, body, group) -> None:
    other = next(s for s in ("infer", "metadata", "metrics") if s != group)
    status, _, raw = _call(secured["url"], method, path, body, secured["tokens"][other])
    assert status == 403 and f"lacks the scope '{group}'" in json.loads(raw)["error"], raw


@pytest.mark.parametrize("case", ["unknown", "expired", "malformed", "basic", "query", "query_only"])
def test_bad_credentials_are_401(secured, case: str) -> None:
    url, tokens = secured["url"], secured["tokens"]
    path, token, extra = "/v2/models/tiny_logistic/infer", None, {}
    if case == "unknown":
        token = "mdi_" + "A" * 43
    elif case == "expired":
        token = tokens["expired"]
    elif case == "malformed":
        extra = {"Authorization": "Bearer two words"}
    elif case == "basic":
        extra = {"Authorization": "Basic dXNlcjpwYXNz"}
    elif case == "query":  # a valid header does not make a token in the URL acceptable
        token, path = tokens["infer"], f"{path}?access_token={tokens['infer']}"
    else:
        path = f"{path}?token={tokens['infer']}"
    status, _, raw = _call(url, "POST", path, BODY, token, extra)
    assert status == 401, raw
    words = {"expired": "expired at", "query": "query string", "query_only": "query string", "unknown": "unknown token"}
    assert words.get(case, "Bearer <token>") in json.loads(raw)["error"]


def test_health_stays_open_for_orchestrators(secured) -> None:
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert request(secured["url"], path)[0] == 200


def test_tritonclient_works_unchanged_with_a_token(secured) -> None:
    th = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    client = th.InferenceServerClient(secured["url"])
    auth = {"Authorization": f"Bearer {secured['tokens']['all']}"}
    inp = th.InferInput("x", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    result = client.infer("tiny_logistic", [inp], headers=auth)
    expected = medinfer.load(secured["bundle"]).predict(X)
    np.testing.assert_array_equal(result.as_numpy("scores"), expected.scores)
    assert client.get_model_metadata("tiny_logistic", headers=auth)["name"] == "tiny_logistic"
    with pytest.raises(InferenceServerException, match="Unauthenticated"):
        client.infer("tiny_logistic", [inp])


def test_refusals_are_audited_and_no_token_is_ever_logged(secured) -> None:
    url, tokens = secured["url"], secured["tokens"]
    _call(url, "POST", "/v2/models/tiny_logistic/infer", BODY, tokens["metrics"])  # 403
    _call(url, "POST", f"/v2/models/tiny_logistic/infer?access_token={tokens['infer']}", BODY)  # 401
    time.sleep(0.2)
    audit = [json.loads(line) for line in (secured["root"] / "audit.jsonl").read_text().splitlines()]
    refused = [r for r in audit if r.get("event") == "auth_refused"]
    assert any(r["status"] == 403 and r["token_name"] == "metrics" and r["group"] == "infer" for r in refused)
    assert any(r["status"] == 401 and "query string" in r["detail"] for r in refused)
    text = (secured["root"] / "audit.jsonl").read_text() + secured["log"].read_text() + secured["file"].read_text()
    for token in tokens.values():
        assert token not in text and token[4:20] not in text
    for line in secured["log"].read_text().splitlines():  # --log-format json: every line one JSON object
        json.loads(line)


def test_a_revoked_token_stops_working_without_a_restart(secured) -> None:
    url, token = secured["url"], secured["tokens"]["revoked"]
    assert _call(url, "POST", "/v2/models/tiny_logistic/infer", BODY, token)[0] == 200
    time.sleep(0.05)
    revoke_token(secured["file"], "revoked")
    end = time.monotonic() + 5
    while time.monotonic() < end and _call(url, "POST", "/v2/models/tiny_logistic/infer", BODY, token)[0] == 200:
        time.sleep(0.2)
    assert _call(url, "POST", "/v2/models/tiny_logistic/infer", BODY, token)[0] == 401


def test_serve_token_cli_shows_the_token_once_and_stores_its_digest(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    cmd = [sys.executable, "-m", "medinfer", "serve-token"]
    made = subprocess.run([*cmd, "add", "--token-file", str(tokens), "--name", "pacs", "--scopes", "infer,metrics",
                           "--expires", "30d"], capture_output=True, text=True, timeout=60, check=True)
    token = made.stdout.strip()
    assert token.startswith("mdi_") and len(token) > 40
    doc = json.loads(tokens.read_text())
    assert token not in tokens.read_text() and doc["tokens"][0]["sha256"] == token_digest(token)
    assert doc["tokens"][0]["scopes"] == ["infer", "metrics"] and doc["tokens"][0]["expires"].endswith("Z")
    assert os.stat(tokens).st_mode & 0o077 == 0
    listed = subprocess.run([*cmd, "list", "--token-file", str(tokens)], capture_output=True, text=True, timeout=60,
                            check=True)
    assert "pacs\tinfer,metrics\texpires" in listed.stdout and token not in listed.stdout
    bad = subprocess.run([*cmd, "add", "--token-file", str(tokens), "--name", "x", "--scopes", "root"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--scopes root" in bad.stderr


@pytest.mark.parametrize(("args", "words"), [
    (["--host", "0.0.0.0"], "nothing authenticates them"),
    (["--host", "::"], "nothing authenticates them"),
    (["--tls-cert", "x.pem"], "--tls-cert and --tls-key go together"),
    (["--client-cert-scopes", "infer"], "need --tls-client-ca"),
    (["--auth-open", "everything"], "--auth-open everything"),
    (["--token-file", "/nonexistent/tokens.json"], "--token-file /nonexistent/tokens.json"),
])
def test_exposed_or_inconsistent_security_settings_refuse_to_start(tiny_bundle_ro: Path, args, words) -> None:
    proc = subprocess.run([sys.executable, "-m", "medinfer", "serve", str(tiny_bundle_ro), "--port", "0", *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_broken_token_file_refuses_to_start(tiny_bundle_ro: Path, tmp_path: Path) -> None:
    bad = tmp_path / "tokens.json"
    bad.write_text('{"tokens": [{"name": "a", "sha256": "sha256:00", "scopes": ["infer"]}]}')
    proc = subprocess.run([sys.executable, "-m", "medinfer", "serve", str(tiny_bundle_ro), "--port", "0",
                           "--token-file", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "sha256:<64 hex>" in proc.stderr


# -- mutual TLS ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("cryptography")
    from ..helpers.certs import make_pki

    root = tmp_path_factory.mktemp("serve_mtls")
    pki = make_pki(root / "pki")
    bundle = tiny.build(root / "tiny_logistic")
    tokens = root / "tokens.json"
    admin = add_token(tokens, "ops", ["admin", "metadata"])
    with serving([bundle], "--tls-cert", pki["server"][0], "--tls-key", pki["server"][1], "--tls-client-ca",
                 pki["ca"], "--token-file", str(tokens), "--audit", str(root / "audit.jsonl"),
                 log=root / "server.log") as (url, _):
        yield {"url": url, "pki": pki, "admin": admin, "root": root}


def _tls(mtls, client: str | None, path: str, body: bytes | None = None, token: str | None = None):
    ctx = ssl.create_default_context(cafile=mtls["pki"]["ca"])
    if client is not None:
        ctx.load_cert_chain(*mtls["pki"][client])
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"https://{mtls['url']}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _until_ready(mtls) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end and _tls(mtls, "client", "/v2/health/ready")[0] != 200:
        time.sleep(0.1)


def test_a_client_certificate_from_the_ca_is_accepted(mtls) -> None:
    _until_ready(mtls)
    status, raw = _tls(mtls, "client", "/v2/models/tiny_logistic/infer", BODY)
    assert status == 200 and json.loads(raw)["outputs"], raw


def test_without_a_client_certificate_only_health_answers(mtls) -> None:
    _until_ready(mtls)
    assert _tls(mtls, None, "/v2/health/live")[0] == 200
    status, raw = _tls(mtls, None, "/v2/models/tiny_logistic/infer", BODY)
    assert status == 401 and "client certificate" in json.loads(raw)["error"]
    # a token does not replace the certificate where one is required; admin needs the token's scope besides
    assert _tls(mtls, None, "/v2/models/tiny_logistic", token=mtls["admin"])[0] == 403
    assert _tls(mtls, "client", "/v2/models/tiny_logistic", token=mtls["admin"])[0] == 200


@pytest.mark.parametrize("client", ["expired", "self_signed", "foreign"])
def test_expired_self_signed_and_foreign_certificates_fail_the_handshake(mtls, client: str) -> None:
    _until_ready(mtls)
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        _tls(mtls, client, "/v2/models/tiny_logistic/infer", BODY)
    assert _tls(mtls, "client", "/v2/health/live")[0] == 200  # the server goes on


def test_plain_http_to_the_tls_port_gets_no_answer(mtls) -> None:
    _until_ready(mtls)
    assert request(mtls["url"], "/v2/health/live")[0] in (0, 400)


def test_the_policy_closes_health_when_told_and_never_reads_a_token_from_the_url(tmp_path: Path) -> None:
    from medinfer.fleet.auth import Authorizer, Forbidden, Unauthenticated, build_policy

    tokens = tmp_path / "tokens.json"
    metrics = add_token(tokens, "scraper", ["metrics"])
    closed = Authorizer(build_policy(str(tokens), (), (), ()))
    with pytest.raises(Unauthenticated):
        closed.check("health", None, None)
    assert closed.check("health", f"Bearer {metrics}", None).token == "scraper"  # any valid credential
    with pytest.raises(Forbidden):
        closed.check("admin", f"Bearer {metrics}", None)
    with pytest.raises(Unauthenticated, match="query string"):
        closed.check("metrics", f"Bearer {metrics}", None, b"x=1&Access_Token=abc")
    certs = Authorizer(build_policy(None, ("infer",), ("health",), ("infer", "metadata")))
    cert = {"subject": ((("commonName", "pacs-gw"),),)}
    assert certs.check("infer", None, cert).cert == "pacs-gw"
    with pytest.raises(Forbidden, match="lacks the scope 'metadata'"):
        certs.check("metadata", None, cert)
    with pytest.raises(Unauthenticated, match="client certificate"):
        certs.check("infer", None, None)
