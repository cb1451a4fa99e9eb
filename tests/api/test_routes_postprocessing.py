"""extra-single-image, extra-batch-images, png-info and interrogate in-process, over a real app
context in a temporary data folder (one tiny SD1 checkpoint for the png-info round trip)."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, PngImagePlugin

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]
NOT_INSTALLED = "no face restorer is installed"
INFOTEXT = "a red fox\nSteps: 7, Sampler: Euler, CFG scale: 5, Seed: 42, Size: 32x32"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    ckpt_dir = data / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / "tiny-sd1.safetensors", "sd1", seed=1)
    args, _ = parse_args(["--data-dir", str(data), "--skip-load-model-at-start", "--nowebui"])
    ctx = build_app_context(args, ROOT)
    yield SimpleNamespace(client=TestClient(create_api_app(ctx)), ctx=ctx, data=data)
    ctx.close()


def pattern_image(width: int, height: int) -> Image.Image:
    """Distinct pixels everywhere, so resampling and cropping are visible."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 7 % 256, y * 11 % 256, (x * y) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def encode_png(image: Image.Image, infotext: str | None = None) -> str:
    info = PngImagePlugin.PngInfo()
    if infotext is not None:
        info.add_text("parameters", infotext)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
    image.load()
    return image


def post_single(api, **fields) -> dict:
    response = api.client.post("/sdapi/v1/extra-single-image", json=fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["html_info", "image"]
    return body


def test_scale_by_lanczos_keeps_parameters_and_adds_postprocessing(api):
    source = pattern_image(50, 30)
    body = post_single(api, image="data:image/png;base64," + encode_png(source, INFOTEXT),
                       upscaler_1="Lanczos", upscaling_resize=2)
    image = decode(body["image"])
    # A1111 rounds the scaled size down to multiples of 8: 100x60 -> 96x56
    assert image.format == "PNG" and image.size == (96, 56)
    expected = source.resize((100, 60), Image.Resampling.LANCZOS).resize(
        (96, 56), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(image), np.asarray(expected))
    assert image.info["parameters"] == INFOTEXT
    assert image.info["postprocessing"] == \
        "Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos"
    assert body["html_info"] == "<p>Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos</p>"


def test_nearest_by_integer_factor_repeats_pixels(api):
    source = pattern_image(16, 8)
    body = post_single(api, image=encode_png(source), upscaler_1="Nearest", upscaling_resize=3)
    image = decode(body["image"])
    assert image.size == (48, 24)
    expected = np.repeat(np.repeat(np.asarray(source), 3, axis=0), 3, axis=1)
    assert np.array_equal(np.asarray(image), expected)
    assert "parameters" not in image.info


def test_resize_to_size_with_and_without_crop(api):
    source = pattern_image(32, 32)
    cropped = post_single(api, image=encode_png(source), resize_mode=1, upscaler_1="Nearest",
                          upscaling_resize_w=64, upscaling_resize_h=40, upscaling_crop=True)
    image = decode(cropped["image"])
    assert image.size == (64, 40)
    # scale = max(64/32, 40/32) = 2 -> 64x64, centred on a 64x40 canvas: rows 12..51 remain
    full = np.repeat(np.repeat(np.asarray(source), 2, axis=0), 2, axis=1)
    assert np.array_equal(np.asarray(image), full[12:52])
    assert image.info["postprocessing"] == ("Postprocess upscale to: 64x40, Postprocess crop to: "
                                            "64x40, Postprocess upscaler: Nearest")

    uncropped = post_single(api, image=encode_png(source), resize_mode=1, upscaler_1="Nearest",
                            upscaling_resize_w=64, upscaling_resize_h=40, upscaling_crop=False)
    assert decode(uncropped["image"]).size == (64, 64)


def test_upscaler_none_leaves_the_image_alone(api):
    source = pattern_image(24, 16)
    body = post_single(api, image=encode_png(source, INFOTEXT), upscaler_1="None",
                       upscaling_resize=4)
    image = decode(body["image"])
    assert np.array_equal(np.asarray(image), np.asarray(source))
    assert image.info["parameters"] == INFOTEXT and image.info["postprocessing"] == ""
    assert body["html_info"] == "<p></p>"


def test_second_upscaler_is_blended_by_visibility(api):
    source = pattern_image(16, 16)
    body = post_single(api, image=encode_png(source), upscaler_1="Nearest", upscaler_2="Lanczos",
                       extras_upscaler_2_visibility=0.25, upscaling_resize=2)
    nearest = source.resize((32, 32), Image.Resampling.NEAREST)
    lanczos = source.resize((32, 32), Image.Resampling.LANCZOS)
    expected = Image.blend(nearest, lanczos, 0.25)
    assert np.array_equal(np.asarray(decode(body["image"])), np.asarray(expected))
    assert body["html_info"].endswith("Postprocess upscaler 2: Lanczos</p>")


def test_batch_images_each_processed(api):
    payload = {"upscaler_1": "Nearest", "upscaling_resize": 2,
               "imageList": [{"data": encode_png(pattern_image(8, 8)), "name": "a"},
                             {"data": encode_png(pattern_image(16, 8), INFOTEXT), "name": "b"}]}
    response = api.client.post("/sdapi/v1/extra-batch-images", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["html_info", "images"]
    images = [decode(text) for text in body["images"]]
    assert [image.size for image in images] == [(16, 16), (32, 16)]
    assert images[1].info["parameters"] == INFOTEXT


def assert_error(response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error", "detail", "body", "errors"]
    assert text in body["detail"], body


def test_extras_errors(api):
    image = encode_png(pattern_image(8, 8))
    post = api.client.post
    assert_error(post("/sdapi/v1/extra-single-image", json={"image": "bm90IGFuIGltYWdl"}),
                 400, "Invalid encoded image")
    assert_error(post("/sdapi/v1/extra-single-image", json={"image": image, "upscaler_1": "ESR"}),
                 400, "could not find upscaler named ESR")
    assert_error(post("/sdapi/v1/extra-single-image", json={"image": image,
                                                            "gfpgan_visibility": 0.5}),
                 400, NOT_INSTALLED)
    assert_error(post("/sdapi/v1/extra-batch-images", json={
        "codeformer_visibility": 1, "imageList": [{"data": image, "name": "x"}]}),
        400, NOT_INSTALLED)
    assert post("/sdapi/v1/extra-single-image",
                json={"image": image, "gfpgan_visibility": 2}).status_code == 422


def test_png_info_round_trip_of_a_generated_image(api):
    response = api.client.post("/sdapi/v1/txt2img", json={
        "prompt": "a (red:1.2) fox", "negative_prompt": "blurry", "steps": 2, "width": 64,
        "height": 64, "seed": 77, "cfg_scale": 5, "sampler_name": "Euler"})
    assert response.status_code == 200, response.text
    generated = response.json()
    infotext = json.loads(generated["info"])["infotexts"][0]

    body = api.client.post("/sdapi/v1/png-info",
                           json={"image": "data:image/png;base64," + generated["images"][0]})
    assert body.status_code == 200, body.text
    body = body.json()
    assert list(body) == ["info", "items", "parameters"]
    assert body["info"] == infotext and isinstance(body["items"], dict)
    parameters = body["parameters"]
    assert parameters["Prompt"] == "a (red:1.2) fox"
    assert parameters["Negative prompt"] == "blurry"
    assert (parameters["Steps"], parameters["Seed"], parameters["Sampler"]) == ("2", "77", "Euler")
    assert (parameters["Size-1"], parameters["Size-2"]) == ("64", "64")
    assert parameters["Model"] == "tiny-sd1"

    # extras keep the generation infotext, so png-info of the upscaled file still reads it
    upscaled = post_single(api, image=generated["images"][0], upscaler_1="Lanczos")
    again = api.client.post("/sdapi/v1/png-info", json={"image": upscaled["image"]}).json()
    assert again["info"] == infotext
    assert again["items"]["postprocessing"].startswith("Postprocess upscale by: 2.0")


def test_png_info_without_metadata_and_errors(api):
    body = api.client.post("/sdapi/v1/png-info", json={"image": encode_png(pattern_image(8, 8))})
    assert body.status_code == 200
    assert body.json()["info"] == "" and body.json()["parameters"]["Prompt"] == ""
    assert_error(api.client.post("/sdapi/v1/png-info", json={"image": "%%%"}),
                 400, "Invalid encoded image")
