"""A fresh install with an empty models folder: the app starts and every answer names the folder."""
from __future__ import annotations

from fastapi.testclient import TestClient

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.ui.quicksettings import _status_html
from tests.integration.conftest import ROOT


def test_empty_models_folder_is_named_in_api_and_ui(tmp_path):
    args, _ = parse_args(["--data-dir", str(tmp_path), "--nowebui", "--api"])
    ctx = build_app_context(args, ROOT)
    folder = str(tmp_path / "models" / "Stable-diffusion")
    try:
        client = TestClient(create_api_app(ctx))
        assert client.get("/sdapi/v1/sd-models").json() == []
        response = client.post("/sdapi/v1/txt2img", json={"prompt": "cat", "steps": 2})
        assert 400 <= response.status_code < 600
        body = response.json()
        assert folder in body["detail"]
        assert body["error"] == "NoCheckpointError"
        # the UI shows the same message under the checkpoint dropdown
        assert folder in _status_html(ctx)
    finally:
        ctx.close()
