"""--api-auth on every route (a1111-compat.md §1.1, issue 4): /sdapi, /internal, the docs, and
routes added after the app was built; --gradio-auth for the UI beside it; CORS only from the
configured origins; no response ever contains a password."""
from __future__ import annotations

import base64
import re

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from modules.api.app import create_api_app
from modules.api.auth import basic_credentials, credentials_match, parse_credentials
from tests.api.test_api_inprocess import FakeRunner, assert_envelope, make_ctx

API_USER, API_PASSWORD = "alice", "pa:ss-Wy8q"
SECRETS = {"api": API_PASSWORD, "gradio": "hunter2-gradio", "ngrok": "2abcNGROKtoken",
           "tls": "/keys/server-private.pem", "other_user": "other-Pq7z"}
AUTH = (API_USER, API_PASSWORD)
SAMPLE_VALUES = {"string": "x", "integer": 1, "number": 1.0, "boolean": True}


def secret_argv(tmp_path) -> list[str]:
    auth_file = tmp_path / "gradio-users.txt"
    auth_file.write_text(f"carol:{SECRETS['gradio']}-file\n", encoding="utf-8")
    return ["--api-auth", f"{API_USER}:{API_PASSWORD},bob:{SECRETS['other_user']}",
            "--gradio-auth", f"dave:{SECRETS['gradio']}", "--gradio-auth-path", str(auth_file),
            "--tls-keyfile", SECRETS["tls"], "--ngrok", SECRETS["ngrok"]]


def extension_router() -> APIRouter:
    """What an extension adds to the app after start-up (like /controlnet/*)."""
    router = APIRouter()

    @router.get("/controlnet/version")
    def version() -> dict:
        return {"version": 2}

    @router.post("/myext/echo")
    def echo(payload: dict) -> dict:
        return payload

    return router


@pytest.fixture
def protected(tmp_path):
    ctx = make_ctx(["--nowebui", *secret_argv(tmp_path)], tmp_path / "config.json")
    app = create_api_app(ctx, txt2img_runner=FakeRunner())
    client = TestClient(app)
    client.get("/internal/ping")            # the app is running before the extension arrives
    app.include_router(extension_router())
    yield client
    ctx.jobs.shutdown()


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def every_operation(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every operation in /openapi.json, plus the docs pages themselves."""
    schema = client.get("/openapi.json", auth=AUTH).json()
    operations = [(method.upper(), concrete(path)) for path, item in schema["paths"].items()
                  for method in item if method in ("get", "post", "put", "patch", "delete")]
    return operations + [("GET", "/docs"), ("GET", "/redoc"), ("GET", "/openapi.json"),
                         ("GET", "/docs/oauth2-redirect"), ("GET", "/no/such/route")]


def assert_unauthorized(response) -> None:
    body = assert_envelope(response, 401, "HTTPException")
    assert body["detail"] == "Incorrect username or password"
    assert response.headers["WWW-Authenticate"] == "Basic"


def test_every_route_needs_credentials(protected):
    operations = every_operation(protected)
    paths = {path for _, path in operations}
    # the schema covers the core routes, /internal and the extension's routes
    assert {"/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/cmd-flags", "/internal/ping",
            "/internal/pending-tasks", "/controlnet/version", "/myext/echo"} <= paths
    for method, path in operations:
        assert_unauthorized(protected.request(method, path, json={}))
        assert_unauthorized(protected.request(method, path, json={}, auth=("alice", "wrong")))
    # with credentials they answer (a route may still refuse the empty body, but not with 401)
    for method, path in operations:
        response = protected.request(method, path, json={}, auth=AUTH)
        assert response.status_code != 401, (method, path)
    assert protected.get("/internal/ping", auth=AUTH).json() == {}
    assert protected.get("/controlnet/version", auth=("bob", SECRETS["other_user"])).json() \
        == {"version": 2}
    assert "swagger" in protected.get("/docs", auth=AUTH).text.lower()


@pytest.mark.parametrize("header", [
    "Basic " + base64.b64encode(b"alice").decode(),                 # no colon
    "Basic !!!not-base64!!!", "Bearer " + base64.b64encode(b"alice:pa:ss-Wy8q").decode(),
    "Basic " + base64.b64encode(b"alice:pa").decode(),               # the password cut at ':'
    "Basic " + base64.b64encode(b"ALICE:pa:ss-Wy8q").decode(), "Basic ", ""])
def test_malformed_or_wrong_credentials_are_refused(protected, header):
    assert_unauthorized(protected.get("/sdapi/v1/samplers", headers={"Authorization": header}))


def test_credential_helpers():
    assert parse_credentials(" a:b , c:d:e ,") == {"a": "b", "c": "d:e"}
    with pytest.raises(ValueError) as error:
        parse_credentials("justapassword")
    assert "justapassword" not in str(error.value)
    assert basic_credentials("basic " + base64.b64encode(b"u:p:q").decode()) == ("u", "p:q")
    assert basic_credentials(None) is None
    assert credentials_match({"u": "p"}, "u", "p") and not credentials_match({"u": "p"}, "u", "")
    assert not credentials_match({}, "", "")


def test_no_response_contains_a_secret(protected):
    """Every route, called with credentials and with a wrong password, answers without any of
    the passwords, tokens or key paths given on the command line."""
    texts = []
    for method, path in every_operation(protected):
        texts.append(protected.request(method, path, json={}, auth=AUTH).text)
        texts.append(protected.request(method, path, auth=("alice", SECRETS["gradio"])).text)
    flags = protected.get("/sdapi/v1/cmd-flags", auth=AUTH).json()
    for key in ("api_auth", "gradio_auth", "gradio_auth_path", "tls_keyfile", "ngrok"):
        assert flags[key] == "<redacted>", key
    joined = "\n".join(texts)
    for name, secret in SECRETS.items():
        assert secret not in joined, name
    assert "pa:ss" not in joined


# -- CORS ---------------------------------------------------------------------------------------
def cors_client(tmp_path, *argv: str) -> TestClient:
    ctx = make_ctx(["--nowebui", *argv], tmp_path / "config.json")
    return TestClient(create_api_app(ctx, txt2img_runner=FakeRunner()))


def test_cors_only_for_configured_origins(tmp_path):
    client = cors_client(tmp_path, "--cors-allow-origins", "https://good.example, http://l:3000",
                         "--cors-allow-origins-regex", r"https://.*\.trusted\.example",
                         "--api-auth", "u:p")
    for origin in ("https://good.example", "http://l:3000", "https://app.trusted.example"):
        response = client.get("/sdapi/v1/samplers", headers={"Origin": origin}, auth=("u", "p"))
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
        # a preflight carries no credentials: answered before the auth check
        preflight = client.options("/sdapi/v1/txt2img", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        # a refused login is still readable by an allowed page
        refused = client.get("/sdapi/v1/samplers", headers={"Origin": origin})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"]
    for origin in ("https://evil.example", "https://trusted.example.evil.com", "null"):
        response = client.get("/sdapi/v1/samplers", headers={"Origin": origin}, auth=("u", "p"))
        assert "access-control-allow-origin" not in response.headers
        preflight = client.options("/sdapi/v1/txt2img", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers


def test_no_cors_flags_allow_no_cross_origin(tmp_path):
    client = cors_client(tmp_path)
    response = client.get("/internal/ping", headers={"Origin": "http://localhost:3000"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    preflight = client.options("/sdapi/v1/txt2img", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


# -- UI mode: --api-auth for the API, Gradio's login for the UI ---------------------------------
@pytest.fixture
def ui_client(tmp_path):
    from modules.ui.app import create_ui_app
    ctx = make_ctx(["--api", "--api-auth", "alice:api-pw", "--gradio-auth", "gina:ui-pw"],
                   tmp_path / "config.json")
    app = create_ui_app(ctx, tabs=[], txt2img_runner=FakeRunner())
    with TestClient(app) as client:
        app.include_router(extension_router())
        yield client
    ctx.jobs.shutdown()


def test_ui_mode_splits_api_auth_and_gradio_login(ui_client):
    for path in ("/sdapi/v1/samplers", "/internal/ping", "/docs", "/openapi.json",
                 "/controlnet/version", "/sdapi/v1/not-a-route"):
        assert_unauthorized(ui_client.get(path))
        assert ui_client.get(path, auth=("gina", "ui-pw")).status_code == 401
    assert ui_client.get("/sdapi/v1/samplers", auth=("alice", "api-pw")).status_code == 200
    # (a route added after create_ui_app is shadowed by the Gradio mount at "/", but guarded)
    assert ui_client.get("/controlnet/version", auth=("alice", "api-pw")).status_code != 401

    # Gradio's routes are not behind Basic auth but behind Gradio's own login
    page = ui_client.get("/")
    assert page.status_code == 200 and "WWW-Authenticate" not in page.headers
    assert ui_client.get("/config").status_code == 401
    assert ui_client.post("/login", data={"username": "gina", "password": "wrong"}) \
        .status_code == 400
    login = ui_client.post("/login", data={"username": "gina", "password": "ui-pw"})
    assert login.status_code == 200, login.text
    config = ui_client.get("/config")
    assert config.status_code == 200 and "components" in config.json()
    # the Gradio session cookie opens the UI, not the API
    assert ui_client.get("/sdapi/v1/samplers").status_code == 401
