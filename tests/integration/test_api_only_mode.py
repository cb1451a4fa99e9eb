"""API-only mode as a user starts it: `launch.py --nowebui` (real uvicorn, no Gradio), bound to
127.0.0.1 on 7861 unless told otherwise, with --api-auth guarding every route."""
from __future__ import annotations


import pytest
import requests

from modules.app.cmd_args import parse_args
from tests.server_process import start_app_server, stop_app_server

import webui

AUTH = ("api-user", "s3cret:with-colon")


@pytest.mark.parametrize("argv, expected", [
    (["--nowebui"], ("127.0.0.1", 7861)),
    (["--nowebui", "--port", "9000"], ("127.0.0.1", 9000)),
    (["--nowebui", "--listen"], ("0.0.0.0", 7861)),
    (["--nowebui", "--listen", "--server-name", "192.168.1.5"], ("192.168.1.5", 7861)),
    ([], ("127.0.0.1", 7860)),
    (["--api", "--listen", "--port", "8080"], ("0.0.0.0", 8080)),
])
def test_server_address_defaults(argv, expected):
    assert webui.server_address(parse_args(argv)[0]) == expected


@pytest.fixture(scope="module")
def api_only_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("api-only")
    server = start_app_server(data, args=("--nowebui", "--skip-load-model-at-start",
                                          "--api-auth", f"{AUTH[0]}:{AUTH[1]}"))
    yield server.base_url, server.log_path
    stop_app_server(server)


def test_api_only_server_answers_without_gradio(api_only_server):
    base, log_path = api_only_server
    # every route, /internal included, asks for the credentials
    refused = requests.get(base + "/internal/ping", timeout=10)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Basic"
    assert refused.json()["detail"] == "Incorrect username or password"
    assert requests.get(base + "/internal/ping", auth=AUTH, timeout=10).json() == {}
    assert requests.get(base + "/docs", timeout=10).status_code == 401

    # no Gradio: nothing at /, no Gradio config, Swagger at /docs
    root = requests.get(base + "/", auth=AUTH, timeout=10)
    assert root.status_code == 404 and "gradio" not in root.text.lower()
    assert requests.get(base + "/config", auth=AUTH, timeout=10).status_code == 404
    docs = requests.get(base + "/docs", auth=AUTH, timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    samplers = requests.get(base + "/sdapi/v1/samplers", auth=AUTH, timeout=10).json()
    assert "Euler a" in [sampler["name"] for sampler in samplers]

    # the flags are echoed without the password, and the log names the loopback address
    flags = requests.get(base + "/sdapi/v1/cmd-flags", auth=AUTH, timeout=10)
    assert flags.json()["nowebui"] is True and AUTH[1] not in flags.text
    assert f"API on http://127.0.0.1:{base.rsplit(':', 1)[1]}" in log_path.read_text()
    assert AUTH[1] not in log_path.read_text()
