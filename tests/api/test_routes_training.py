"""create/embedding, create/hypernetwork, train/embedding, train/hypernetwork: until training
exists they answer A1111's shape `{info: "<action> error: ..."}` (status 200, as A1111 reports
every failure of these routes) and write nothing."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client_and_data(tmp_path):
    args, _ = parse_args(["--data-dir", str(tmp_path), "--skip-load-model-at-start", "--nowebui"])
    ctx = build_app_context(args, ROOT)
    yield TestClient(create_api_app(ctx)), tmp_path
    ctx.close()


@pytest.mark.parametrize("route, payload, prefix, missing", [
    ("create/embedding", {"name": "fox", "num_vectors_per_token": 4, "overwrite_old": False,
                          "init_text": "*"}, "create embedding error: ", "textual inversion"),
    ("create/hypernetwork", {"name": "fox", "enable_sizes": ["768"], "layer_structure": [1, 2, 1]},
     "create hypernetwork error: ", "hypernetwork"),
    ("train/embedding", {"id_task": "t", "embedding_name": "fox", "learn_rate": "0.005",
                         "steps": 10}, "train embedding error: ", "textual inversion training"),
    ("train/hypernetwork", {"id_task": "t", "hypernetwork_name": "fox", "steps": 10},
     "train hypernetwork error: ", "hypernetwork training"),
])
def test_training_routes_report_the_missing_feature(client_and_data, route, payload, prefix,
                                                    missing):
    client, data = client_and_data
    response = client.post(f"/sdapi/v1/{route}", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["info"]
    assert body["info"].startswith(prefix)
    assert f"no {missing} support" in body["info"]
    files = [path for path in data.rglob("*") if path.suffix in (".pt", ".safetensors")]
    assert files == []


def test_training_routes_need_a_json_object(client_and_data):
    client, _ = client_and_data
    assert client.post("/sdapi/v1/create/embedding", json=[1, 2]).status_code == 422
    assert client.post("/sdapi/v1/train/embedding").status_code == 422
