"""A tiny-checkpoint app in-process for the built-in scripts, and helpers."""
from __future__ import annotations

import base64
import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.app import create_api_app
from tests.ui.conftest import app_context

REQUEST = {"steps": 2, "width": 64, "height": 64, "seed": 42, "sampler_name": "Euler",
           "batch_size": 1}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with app_context(tmp_path_factory.mktemp("builtin-scripts"), tiny_checkpoint=True) as ctx:
        ctx.options.set("samples_save", False)
        yield TestClient(create_api_app(ctx))


def decoded(answer) -> list[Image.Image]:
    assert answer.status_code == 200, answer.text
    return [Image.open(io.BytesIO(base64.b64decode(item))) for item in answer.json()["images"]]
