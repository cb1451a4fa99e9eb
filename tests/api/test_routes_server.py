"""server-kill / server-restart / server-stop: present only with --api-server-stop; kill and stop
answer, then call the shutdown callback; restart is 501."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules.api.app import create_api_app
from modules.api.errors import install_error_handlers
from modules.api.routes_server import server_router
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context

ROOT = Path(__file__).resolve().parents[2]
SERVER_ROUTES = ("/sdapi/v1/server-kill", "/sdapi/v1/server-restart", "/sdapi/v1/server-stop")


def app_paths(tmp_path, *flags: str) -> dict:
    args, _ = parse_args(["--data-dir", str(tmp_path), "--skip-load-model-at-start",
                          "--nowebui", *flags])
    ctx = build_app_context(args, ROOT)
    try:
        client = TestClient(create_api_app(ctx))
        paths = client.get("/openapi.json").json()["paths"]
        missing = client.post("/sdapi/v1/server-stop").status_code if not flags else None
    finally:
        ctx.close()
    return {"paths": paths, "stop_status": missing}


def test_server_routes_absent_without_the_flag(tmp_path):
    result = app_paths(tmp_path)
    assert not any(route in result["paths"] for route in SERVER_ROUTES)
    assert result["stop_status"] == 404


def test_server_routes_present_with_the_flag(tmp_path):
    paths = app_paths(tmp_path, "--api-server-stop")["paths"]
    for route in SERVER_ROUTES:
        assert "post" in paths[route], route


@pytest.fixture
def server():
    calls: list[str] = []
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(server_router(shutdown=lambda: calls.append("shutdown")))
    return TestClient(app), calls


def test_stop_answers_then_shuts_down(server):
    client, calls = server
    response = client.post("/sdapi/v1/server-stop")
    assert response.status_code == 200 and response.text == "Stopping."
    assert calls == ["shutdown"]


def test_kill_answers_then_shuts_down(server):
    client, calls = server
    response = client.post("/sdapi/v1/server-kill")
    assert response.status_code == 200 and response.json() is None
    assert calls == ["shutdown"]


def test_restart_is_not_available(server):
    client, calls = server
    response = client.post("/sdapi/v1/server-restart")
    assert response.status_code == 501
    body = response.json()
    assert body["error"] == "HTTPException" and "not restartable" in body["detail"]
    assert calls == []
