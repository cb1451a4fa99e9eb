"""Custom code runs Python from the request only with --allow-code; without it the request is
refused with 403 and the reason, and the script is not offered."""
from __future__ import annotations

import json

from fastapi.testclient import TestClient

from modules.api.app import create_api_app
from tests.builtin_scripts.conftest import REQUEST, decoded
from tests.ui.conftest import app_context

CODE = """from modules.processing import process_images
p.width = 128
p.seed = 7
return process_images(p)
"""


def test_custom_code_is_refused_without_allow_code(tmp_path):
    with app_context(tmp_path, tiny_checkpoint=True) as ctx:
        client = TestClient(create_api_app(ctx))
        answer = client.post("/sdapi/v1/txt2img", json={
            **REQUEST, "script_name": "Custom code", "script_args": [CODE, 2]})
        assert answer.status_code == 403, answer.text
        assert "--allow-code" in answer.json()["detail"]
        assert "Custom code" not in client.get("/sdapi/v1/scripts").json()["txt2img"]
        assert decoded(client.post("/sdapi/v1/txt2img", json=REQUEST))


def test_custom_code_runs_with_allow_code(tmp_path):
    with app_context(tmp_path, tiny_checkpoint=True, extra_args=["--allow-code"]) as ctx:
        client = TestClient(create_api_app(ctx))
        assert "custom code" in client.get("/sdapi/v1/scripts").json()["txt2img"]
        answer = client.post("/sdapi/v1/txt2img", json={
            **REQUEST, "script_name": "Custom code", "script_args": [CODE, 2]})
        images = decoded(answer)
        assert [image.size for image in images] == [(128, 64)]
        assert json.loads(answer.json()["info"])["seed"] == 7
        broken = client.post("/sdapi/v1/txt2img", json={
            **REQUEST, "script_name": "Custom code", "script_args": ["return 1 / 0", 2]})
        assert broken.status_code == 500
        assert "Script 'Custom code' failed: ZeroDivisionError" in broken.text
