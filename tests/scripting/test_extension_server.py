"""The test extension in a real `launch.py --nowebui` server: its install.py ran at launch, its
preload flag is parsed, its route answers behind --api-auth, and its script works over HTTP;
with --skip-install the installer does not run."""
from __future__ import annotations

import json

import requests

from tests.scripting.test_extension_api import REQUEST, install_test_extension
from tests.server_process import start_app_server, stop_app_server

AUTH = ("tagger", "secret")


def test_the_extension_installs_and_serves_in_api_only_mode(tmp_path):
    extension = install_test_extension(tmp_path)
    server = start_app_server(tmp_path, args=(
        "--nowebui", "--api-auth", f"{AUTH[0]}:{AUTH[1]}", "--seed-tagger-greeting", "launched"))
    try:
        assert (extension / "installed.txt").read_text() == "installed\n"
        assert requests.get(server.base_url + "/seed-tagger/status", timeout=30).status_code == 401
        status = requests.get(server.base_url + "/seed-tagger/status", auth=AUTH, timeout=30)
        assert status.json()["greeting"] == "launched" and status.json()["ui"] is False
        answer = requests.post(server.base_url + "/sdapi/v1/txt2img", auth=AUTH, timeout=300,
                               json={**REQUEST, "alwayson_scripts": {"Seed tagger": {"args": [True]}}})
        assert answer.status_code == 200, answer.text
        assert json.loads(answer.json()["info"])["all_prompts"][0] == "a red circle, seed 1234"
    finally:
        stop_app_server(server)
    # the test extension and the built-in aesthetic-gradients and character-pose
    assert "loaded from 3 extension(s) (0 failed)" in server.log_text()


def test_skip_install_leaves_the_installer_alone(tmp_path):
    extension = install_test_extension(tmp_path)
    server = start_app_server(tmp_path, args=("--nowebui", "--skip-install",
                                              "--skip-load-model-at-start"))
    stop_app_server(server)
    assert not (extension / "installed.txt").exists()
