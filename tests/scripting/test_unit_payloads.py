"""ControlNet-style `alwayson_scripts` payloads as the webuiapi client sends them (a list of unit
dicts, an empty list when no unit is used, control modes as names or indices) reach an
extension's always-on script unchanged, alongside the X/Y/Z plot's script_args."""
from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.app import create_api_app
from tests.ui.conftest import app_context

EXTENSION = Path(__file__).resolve().parents[1] / "extensions" / "sd-unit-reader"
REQUEST = {"prompt": "a dancer", "steps": 2, "width": 64, "height": 64, "seed": 3,
           "sampler_name": "Euler"}


def webuiapi_unit(image: Image.Image, **changes) -> dict:
    """webuiapi's ControlNetUnit.to_dict() with its defaults."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    unit = {"image": base64.b64encode(buffer.getvalue()).decode(), "mask": None,
            "module": "none", "model": "None", "weight": 1.0, "resize_mode": "Resize and Fill",
            "low_vram": False, "processor_res": 512, "threshold_a": 64, "threshold_b": 64,
            "guidance_start": 0.0, "guidance_end": 1.0, "control_mode": 0,
            "pixel_perfect": False, "hr_option": "Both", "enabled": True}
    unit.update(changes)
    return unit


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("unit-payloads")
    shutil.copytree(EXTENSION, data / "extensions" / EXTENSION.name)
    with app_context(data, tiny_checkpoint=True) as ctx:
        ctx.options.set("samples_save", False)
        yield TestClient(create_api_app(ctx)), ctx


@pytest.fixture(scope="module")
def client(app):
    return app[0]


def infotext(answer) -> str:
    assert answer.status_code == 200, answer.text
    return json.loads(answer.json()["info"])["infotexts"][0]


def test_unit_dicts_reach_the_script(client):
    pose = Image.new("RGB", (48, 40), (10, 20, 30))
    text = infotext(client.post("/sdapi/v1/txt2img", json={**REQUEST, "alwayson_scripts": {
        "Unit reader": {"args": [
            webuiapi_unit(pose, module="openpose", weight=0.5),
            webuiapi_unit(pose, module="depth", control_mode="ControlNet is more important",
                          enabled=False),
            webuiapi_unit(pose, module="canny", control_mode=2)]}}}))
    assert 'Unit 0: "openpose, weight 0.5, image 48x40, Balanced"' in text
    assert "Unit 1" not in text                                   # disabled
    assert 'Unit 2: "canny, weight 1.0, image 48x40, ControlNet is more important"' in text


def test_an_empty_unit_list_keeps_the_defaults(client):
    text = infotext(client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "alwayson_scripts": {"unit reader": {"args": []}}}))
    assert "Unit 0" not in text


def test_units_and_an_xyz_plot_in_one_request(client):
    pose = Image.new("RGB", (32, 32))
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "script_name": "X/Y/Z plot",
        "script_args": [4, "1,2", "", 0, "", "", 0, "", "", "True", "True", "False", "False",
                        0],
        "alwayson_scripts": {"Unit reader": {"args": [webuiapi_unit(pose)]}}})
    info = json.loads(answer.json()["info"])
    assert len(answer.json()["images"]) == 3
    assert all('Unit 0: "none, weight 1.0, image 32x32, Balanced"' in text
               for text in info["infotexts"])


def test_an_unknown_always_on_script_is_refused(client):
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "alwayson_scripts": {"ADetailer": {"args": [False]}}})
    assert answer.status_code == 422 and "always on script ADetailer not found" in answer.text


def test_model_loaded_and_infotext_pasted_callbacks(app):
    """on_model_loaded sees the model a request loads; on_infotext_pasted edits what a
    request's infotext and the UI's paste give."""
    from modules.ui.prompt_tools import read_generation_parameters
    client, ctx = app
    module = next(module for path, module in ctx.scripts.loaded.modules.items()
                  if path.name == "unit_callbacks.py")
    without_steps = {key: value for key, value in REQUEST.items() if key != "steps"}
    text = infotext(client.post("/sdapi/v1/txt2img", json={
        **without_steps, "infotext": "a dancer\nSteps: 20, Seed: 3, Unit steps: 3"}))
    assert "Steps: 3," in text
    assert module.loaded_models == ["StableDiffusionModel"]
    assert read_generation_parameters(ctx, "a dancer\nSteps: 20, Seed: 3, Unit steps: 4",
                                      {"steps": None}) == [4]


def test_before_token_counter_changes_what_is_counted(app):
    from modules.ui.prompt_tools import token_counter_update
    _, ctx = app
    plain = token_counter_update(ctx, "a __x__", 20, is_positive=True)
    expanded = token_counter_update(ctx, "a __unit__", 20, is_positive=True)
    assert "4/75" in plain and "5/75" in expanded        # "a red blue green yellow"


def test_on_mask_blend_sees_every_inpainting_blend_and_may_replace_it(client):
    """An inpaint of the left half: each sampler call blends, and a script that blends nothing
    gives another image; plain img2img (no mask) does not blend."""
    photo = Image.new("RGB", (64, 64), (200, 120, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    body = {**REQUEST, "init_images": [_b64(photo)], "mask": _b64(mask), "steps": 4,
            "denoising_strength": 1.0, "inpaint_full_res": False, "mask_blur": 0}
    plain = client.post("/sdapi/v1/img2img", json=body)
    assert "Mask blends: 4" in infotext(plain)
    assert "Samplings: ['4x8x8']" in infotext(plain)         # process_before_every_sampling
    nothing = client.post("/sdapi/v1/img2img", json={
        **body, "alwayson_scripts": {"Mask blend counter": {"args": [True]}}})
    assert "Mask blends: 4" in infotext(nothing)
    assert "Overlay size: 64x64" in infotext(plain)       # postprocess_maskoverlay saw it
    kept, redrawn = (np.asarray(Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
                                .convert("RGB"), dtype=int) for answer in (plain, nothing))
    # the right half (outside the mask): the photo with the overlay, the model's without it
    assert (kept[:, 40:] == (200, 120, 40)).all()
    assert not (redrawn[:, 40:] == (200, 120, 40)).all()
    no_mask = {key: value for key, value in body.items() if key != "mask"}
    assert "Mask blends" not in infotext(client.post("/sdapi/v1/img2img", json=no_mask))


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_on_extra_noise_may_replace_the_extra_noise(app):
    client, ctx = app
    module = next(module for path, module in ctx.scripts.loaded.modules.items()
                  if path.name == "unit_callbacks.py")
    body = {**REQUEST, "init_images": [_b64(Image.new("RGB", (64, 64), (90, 30, 200)))],
            "denoising_strength": 0.5}
    plain = client.post("/sdapi/v1/img2img", json=body)
    extra = client.post("/sdapi/v1/img2img", json={
        **body, "override_settings": {"img2img_extra_noise": 0.5}})
    assert "Extra noise: 0.5" in infotext(extra) and "Extra noise" not in infotext(plain)
    assert module.extra_noise_calls == [(1, 4, 8, 8)]
    # the callback took the extra noise away: the same pixels as without it
    pixels = [np.asarray(Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0]))))
              for answer in (plain, extra)]
    assert np.array_equal(*pixels)
