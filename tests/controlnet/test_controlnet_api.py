"""ControlNet through the API, in-process over a real app context with a tiny SD1 checkpoint and
tiny ControlNets in models/ControlNet: sd-webui-controlnet's payloads and routes, the detected map
returned with the image, the infotext, weight 0 = the plain image, and the refusals."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from tests.engine.tiny_checkpoints import write_tiny_checkpoint, write_tiny_controlnet

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("controlnet-api")
    ckpt_dir = data / "models" / "Stable-diffusion"
    control_dir = data / "models" / "ControlNet"
    ckpt_dir.mkdir(parents=True)
    control_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / "tiny.safetensors", "sd1", seed=1)
    write_tiny_controlnet(control_dir / "control_v11p_sd15_canny.pth", "sd1", seed=4)
    write_tiny_controlnet(control_dir / "control_sd15_depth.safetensors", "sd1", seed=5)
    write_tiny_controlnet(control_dir / "controlnet_xl_canny.safetensors", "sdxl", seed=6)
    (control_dir / "broken_canny.safetensors").write_bytes(b"not a safetensors file")
    args, _ = parse_args(["--data-dir", str(data), "--nowebui"])
    ctx = build_app_context(args, ROOT)
    yield SimpleNamespace(client=TestClient(create_api_app(ctx)), ctx=ctx)
    ctx.close()


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def square_photo(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), (20, 40, 160))
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill=(230, 200, 30))
    return image


def model_name(api, stem: str) -> str:
    names = api.client.get("/controlnet/model_list").json()["model_list"]
    return next(name for name in names if name.startswith(stem + " ["))


def txt2img(api, *units, **fields):
    body = {"prompt": "a yellow square", "width": 64, "height": 64, "steps": 3, "seed": 9,
            "sampler_name": "Euler", **fields}
    if units:
        body["alwayson_scripts"] = {"controlnet": {"args": list(units)}}
    return api.client.post("/sdapi/v1/txt2img", json=body)


def test_routes_answer_as_sd_webui_controlnet(api):
    assert api.client.get("/controlnet/version").json() == {"version": 2}
    models = api.client.get("/controlnet/model_list").json()["model_list"]
    assert [name.split(" [")[0] for name in models] == [
        "broken_canny", "control_sd15_depth", "control_v11p_sd15_canny", "controlnet_xl_canny"]
    assert all(len(name.split(" [")[1]) == 9 for name in models)      # 8 hex + "]"
    modules = api.client.get("/controlnet/module_list").json()
    assert modules["module_list"][:3] == ["none", "invert (from white bg & black line)", "canny"]
    assert modules["module_detail"]["canny"]["sliders"][1]["name"] == "Canny Low Threshold"
    types = api.client.get("/controlnet/control_types").json()["control_types"]
    assert types["Canny"]["default_option"] == "canny"
    assert types["Canny"]["default_model"].startswith("control_v11p_sd15_canny [")
    assert not any("depth" in name for name in types["Canny"]["model_list"])
    assert api.client.get("/controlnet/settings").json() == {"control_net_unit_count": 3}


def test_detect_canny_equals_opencv_for_the_same_thresholds(api):
    photo = square_photo(128)
    for field in ("controlnet_input_images", "controlnet_images"):
        response = api.client.post("/controlnet/detect", json={
            "controlnet_module": "canny", field: [png_b64(photo)],
            "controlnet_processor_res": 128, "controlnet_threshold_a": 50,
            "controlnet_threshold_b": 150})
        assert response.status_code == 200, response.text
        assert response.json()["info"] == "Success"
        detected = np.asarray(decode(response.json()["images"][0]).convert("L"))
        expected = cv2.Canny(np.asarray(photo), 50, 150)
        assert np.array_equal(detected, expected)
        assert detected.max() == 255


def test_txt2img_with_one_unit_returns_the_map_and_the_infotext(api):
    plain_before = decode(txt2img(api).json()["images"][0])
    unit = {"enabled": True, "module": "canny", "model": model_name(api, "control_v11p_sd15_canny"),
            "weight": 1.0, "image": png_b64(square_photo()), "resize_mode": "Just Resize",
            "processor_res": 64, "threshold_a": 100, "threshold_b": 200}
    response = txt2img(api, unit)
    assert response.status_code == 200, response.text
    images = [decode(text) for text in response.json()["images"]]
    assert len(images) == 2 and images[1].size == (64, 64)      # the image, then the map
    edges = np.asarray(images[1].convert("L"))
    assert set(np.unique(edges)) <= {0, 255} and edges.max() == 255
    infotext = json.loads(response.json()["info"])["infotexts"][0]
    assert ('ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [' in infotext)
    assert "Weight: 1.0, Resize Mode: Just Resize, Processor Res: 64" in infotext

    plain = decode(txt2img(api).json()["images"][0])
    assert np.array_equal(np.asarray(plain), np.asarray(plain_before))   # the patch is gone
    assert np.abs(np.asarray(images[0], dtype=int) - np.asarray(plain, dtype=int)).max() > 0
    off = dict(unit, weight=0.0)
    unchanged = decode(txt2img(api, off).json()["images"][0])
    assert np.array_equal(np.asarray(unchanged), np.asarray(plain))


def test_webuiapi_unit_payload_is_accepted(api):
    # webuiapi's ControlNetUnit.to_dict(): input_image, lowvram, guidance, control_mode index
    unit = {"input_image": png_b64(square_photo()), "mask": None, "module": "canny",
            "model": "control_v11p_sd15_canny", "weight": 0.8, "resize_mode": "Resize and Fill",
            "lowvram": False, "processor_res": 64, "threshold_a": 64, "threshold_b": 64,
            "guidance": 1.0, "guidance_start": 0.0, "guidance_end": 1.0, "control_mode": 2,
            "pixel_perfect": True}
    response = txt2img(api, unit)
    assert response.status_code == 200, response.text
    infotext = json.loads(response.json()["info"])["infotexts"][0]
    assert "Control Mode: ControlNet is more important" in infotext
    assert "Pixel Perfect: True" in infotext


@pytest.mark.parametrize("unit, expected", [
    ({"module": "cany", "model": "control_v11p_sd15_canny"}, "unknown module 'cany'; available: "
                                                             "none, invert"),
    ({"module": "canny", "model": "control_v11p_sd15_cany"}, "model 'control_v11p_sd15_cany' not "
                                                             "found; available: broken_canny"),
    ({"module": "canny", "model": "controlnet_xl_canny"}, "is a SDXL ControlNet"),
    ({"module": "canny", "model": "broken_canny"}, "cannot be loaded"),
])
def test_bad_units_are_422_naming_what_is_available(api, unit, expected):
    response = txt2img(api, dict(unit, image=png_b64(square_photo())))
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]
    assert txt2img(api).status_code == 200                  # the next request works


def test_a_unit_without_an_image_is_422(api):
    response = txt2img(api, {"module": "canny", "model": "control_v11p_sd15_canny"})
    assert response.status_code == 422
    assert "ControlNet unit 0 has no image" in response.json()["detail"]


def test_the_broken_file_is_listed_as_unusable_with_its_reason(api):
    labels = dict((name, label) for label, name in api.ctx.controlnet.models.choices())
    broken = next(name for name in labels if name.startswith("broken_canny"))
    assert "(unusable: corrupt" in labels[broken]
    assert all(label == name for name, label in labels.items() if name != broken)


def test_img2img_uses_the_init_image_when_the_unit_has_none(api):
    unit = {"module": "canny", "model": "control_v11p_sd15_canny", "processor_res": 64}
    response = api.client.post("/sdapi/v1/img2img", json={
        "init_images": [png_b64(square_photo())], "prompt": "a yellow square", "width": 64,
        "height": 64, "steps": 3, "seed": 9, "denoising_strength": 0.6,
        "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert response.status_code == 200, response.text
    images = [decode(text) for text in response.json()["images"]]
    assert len(images) == 2
    expected = cv2.Canny(np.asarray(square_photo()), 100, 200)
    assert np.array_equal(np.asarray(images[1].convert("L")), expected)


def test_hires_fix_runs_the_unit_on_both_passes(api):
    unit = {"module": "canny", "model": "control_v11p_sd15_canny", "weight": 1.0,
            "image": png_b64(square_photo())}
    fields = dict(enable_hr=True, hr_scale=2, hr_upscaler="Latent", denoising_strength=0.5,
                  hr_second_pass_steps=2)
    with_unit = txt2img(api, unit, **fields)
    assert with_unit.status_code == 200, with_unit.text
    images = [decode(text) for text in with_unit.json()["images"]]
    assert images[0].size == (128, 128) and len(images) == 2
    plain = decode(txt2img(api, **fields).json()["images"][0])
    assert np.abs(np.asarray(images[0], dtype=int) - np.asarray(plain, dtype=int)).max() > 0


def test_a_huge_control_image_is_refused_before_it_is_decoded(api):
    buffer = io.BytesIO()
    Image.new("L", (9000, 8000)).save(buffer, format="PNG")       # 72 MP, a few kB as PNG
    unit = {"module": "canny", "model": "control_v11p_sd15_canny",
            "image": base64.b64encode(buffer.getvalue()).decode()}
    response = txt2img(api, unit)
    assert response.status_code == 422
    assert "9000x8000: above 64 megapixels" in response.json()["detail"]


def test_detect_and_render_refuse_bad_input_with_422(api):
    empty = api.client.post("/controlnet/detect", json={"controlnet_module": "canny",
                                                        "controlnet_input_images": [""]})
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    huge = api.client.post("/controlnet/render_openpose_json", json=[
        {"people": [], "canvas_width": 100000, "canvas_height": 100000}])
    assert huge.status_code == 422 and "canvas 100000x100000" in huge.json()["detail"]
    junk = api.client.post("/controlnet/render_openpose_json", json=[
        {"people": [{"pose_keypoints_2d": "x"}], "canvas_width": "wide"}])
    assert junk.status_code == 422


def test_a_controlnet_larger_than_free_memory_is_refused_before_it_is_read(api):
    """The file's size is checked against the memory budget before a byte is read: a 4 TB
    ControlNet is a 422 that says so, and the next request works."""
    import psutil
    huge = api.ctx.paths.controlnet_dir / "control_huge_canny.safetensors"
    write_tiny_controlnet(huge, "sd1", seed=7)
    with open(huge, "r+b") as handle:
        handle.truncate(4 * 1024 ** 4)                    # sparse: no disk is used
    assert huge.stat().st_size > psutil.virtual_memory().total
    try:
        api.ctx.controlnet.models.refresh()
        unit = {"module": "canny", "model": "control_huge_canny", "image": png_b64(square_photo()),
                "processor_res": 64}
        response = txt2img(api, unit)
        assert response.status_code == 422, response.text
        assert "Not enough memory for loading ControlNet control_huge_canny" in \
            response.json()["detail"]
        assert txt2img(api).status_code == 200
    finally:
        huge.unlink()
        api.ctx.controlnet.models.refresh()


def test_a_unit_mask_limits_where_it_steers(api):
    """sd-webui-controlnet's unit mask (also `effective_region_mask`): black = not steered. An
    all-black mask gives the plain image exactly, a white one the unmasked unit's."""
    unit = {"module": "canny", "model": "control_v11p_sd15_canny", "processor_res": 64,
            "image": png_b64(square_photo())}

    def first_image(response):
        assert response.status_code == 200, response.text
        return np.asarray(decode(response.json()["images"][0]))

    plain = first_image(txt2img(api))
    steered = first_image(txt2img(api, unit))
    black = png_b64(Image.new("L", (64, 64), 0))
    white = png_b64(Image.new("L", (64, 64), 255))
    assert np.array_equal(first_image(txt2img(api, dict(unit, mask=black))), plain)
    assert np.array_equal(first_image(txt2img(api, dict(unit, effective_region_mask=white))),
                          steered)
    assert not np.array_equal(steered, plain)
