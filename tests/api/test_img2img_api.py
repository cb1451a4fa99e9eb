"""POST /sdapi/v1/img2img in-process on a tiny checkpoint: response shape, echoed parameters,
base64 inputs (raw and data-URL), inpainting through the API, and the 4xx answers."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.processing.infotext import parse_generation_parameters
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def to_base64(image: Image.Image, data_url: bool = False) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/png;base64,{encoded}" if data_url else encoded


def from_base64(encoded: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(encoded)))


def gradient(width: int = 64, height: int = 64) -> Image.Image:
    ys, xs = np.mgrid[0:height, 0:width]
    array = np.stack([xs * 4 % 256, ys * 4 % 256, np.full_like(xs, 80)], axis=-1)
    return Image.fromarray(array.astype(np.uint8))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    data = tmp_path_factory.mktemp("img2img-api")
    ckpt_dir = data / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / "tiny-sd1.safetensors", "sd1", seed=1)
    args, _ = parse_args(["--data-dir", str(data), "--skip-load-model-at-start", "--nowebui"])
    ctx = build_app_context(args, ROOT)
    with TestClient(create_api_app(ctx)) as test_client:
        yield test_client
    ctx.close()


def payload(**fields) -> dict:
    body = {"init_images": [to_base64(gradient(), data_url=True)], "prompt": "a cat",
            "steps": 2, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler",
            "denoising_strength": 0.5}
    body.update(fields)
    return body


def test_img2img_response_shape_info_and_parameters(client):
    response = client.post("/sdapi/v1/img2img", json=payload(resize_mode=1))
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["images"]) == 1
    image = from_base64(body["images"][0])
    assert image.size == (64, 64)
    assert parse_generation_parameters(image.info["parameters"])["Denoising strength"] == "0.5"
    info = json.loads(body["info"])
    assert info["all_seeds"] == [5] and info["denoising_strength"] == 0.5
    assert info["is_using_inpainting_conditioning"] is False
    # the request is echoed, images nulled (include_init_images is false)
    assert body["parameters"]["init_images"] is None and body["parameters"]["mask"] is None
    assert body["parameters"]["resize_mode"] == 1
    assert body["parameters"]["inpaint_full_res"] is True


def test_include_init_images_echoes_them(client):
    sent = payload(include_init_images=True)
    body = client.post("/sdapi/v1/img2img", json=sent).json()
    assert body["parameters"]["init_images"] == sent["init_images"]


def test_raw_base64_and_inpainting_mask(client):
    init = gradient()
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 39, 39), fill=255)
    response = client.post("/sdapi/v1/img2img", json=payload(
        init_images=[to_base64(init)], mask=to_base64(mask), mask_blur=0,
        inpainting_fill=2, inpaint_full_res=False, denoising_strength=0.9))
    assert response.status_code == 200, response.text
    output = np.asarray(from_base64(response.json()["images"][0]).convert("RGB"))
    outside = np.ones((64, 64), dtype=bool)
    outside[16:40, 16:40] = False
    assert np.array_equal(output[outside], np.asarray(init)[outside])
    info = json.loads(response.json()["info"])
    assert info["extra_generation_params"]["Masked content"] == "latent noise"


def test_missing_init_images_is_404(client):
    response = client.post("/sdapi/v1/img2img", json=payload(init_images=None))
    assert response.status_code == 404
    assert response.json()["detail"] == "Init image not found"


@pytest.mark.parametrize("field", ["init_images", "mask"])
def test_undecodable_image_is_400(client, field):
    value = ["this is not an image"] if field == "init_images" else "bm90IGFuIGltYWdl"
    response = client.post("/sdapi/v1/img2img", json=payload(**{field: value}))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Invalid encoded image")
    assert field in response.json()["detail"]


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_denoising_outside_0_1_is_422_with_a_message(client, strength):
    response = client.post("/sdapi/v1/img2img", json=payload(denoising_strength=strength))
    assert response.status_code == 422
    assert "denoising_strength must be between 0 and 1" in response.text


def test_too_many_init_images_is_a_clear_400(client):
    images = [to_base64(gradient())] * 3
    response = client.post("/sdapi/v1/img2img", json=payload(init_images=images, batch_size=2))
    assert response.status_code == 400
    assert "bad number of images passed: 3" in response.json()["detail"]


def test_schema_shows_base64_strings(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    properties = next(value for key, value in schemas.items() if "Img2Img" in key)["properties"]
    assert {"type": "string"} in properties["mask"]["anyOf"]
    assert properties["init_images"]["anyOf"][0] == {"items": {"type": "string"}, "type": "array"}
    assert properties["inpaint_full_res"]["default"] is True
