"""The request features of §3.3/§3.5: `infotext` prefill (client fields win, settings go to
override_settings, Size / Sampler / legacy sampler names), styles, send_images / save_images."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from modules.api.app import create_api_app
from modules.api.models import StableDiffusionImg2ImgProcessingAPI, \
    StableDiffusionTxt2ImgProcessingAPI
from modules.api.request_infotext import apply_request_infotext, infotext_request_fields, \
    infotext_setting_overrides
from modules.app.option_defs import default_option_definitions
from modules.app.options import Options
from modules.processing.infotext import parse_generation_parameters
from modules.processing.styles import StyleDatabase
from tests.api.test_api_inprocess import FakeRunner, make_ctx

FOX_INFOTEXT = ("a red fox\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, "
                "Schedule type: Karras, CFG scale: 6.5, Seed: 4242, Size: 64x48, Clip skip: 2, "
                "RNG: CPU")


@pytest.fixture
def options(tmp_path) -> Options:
    """The real settings registry (every infotext-named setting)."""
    return Options(default_option_definitions(), tmp_path / "config.json")


@pytest.fixture
def api(tmp_path, options):
    ctx = make_ctx(["--nowebui", "--api"], tmp_path / "unused.json")
    ctx.options = options
    runner = FakeRunner()
    client = TestClient(create_api_app(ctx, txt2img_runner=runner))
    yield SimpleNamespace(client=client, ctx=ctx, runner=runner)
    ctx.jobs.shutdown()


def test_infotext_fills_unsent_fields_and_client_fields_win(api):
    response = api.client.post("/sdapi/v1/txt2img", json={
        "infotext": FOX_INFOTEXT, "prompt": "client prompt", "steps": 3})
    assert response.status_code == 200, response.text
    params, options_during_job = api.runner.seen[-1]
    assert (params.prompt, params.steps) == ("client prompt", 3)   # sent by the client
    assert params.negative_prompt == "blurry" and params.seed == 4242
    assert (params.width, params.height, params.cfg_scale) == (64, 48, 6.5)
    assert (params.sampler_name, params.scheduler) == ("Euler a", "Karras")
    # Clip skip names a setting: applied for this job only, then restored
    assert options_during_job["CLIP_stop_at_last_layers"] == 2
    assert api.ctx.options.get("CLIP_stop_at_last_layers") == 1
    body = response.json()
    echoed = body["parameters"]
    assert echoed["seed"] == 4242 and echoed["width"] == 64 and echoed["steps"] == 3
    assert echoed["override_settings"] == {"CLIP_stop_at_last_layers": 2}
    assert json.loads(body["info"])["clip_skip"] == 2


def test_client_override_settings_win_over_infotext(api):
    response = api.client.post("/sdapi/v1/txt2img", json={
        "infotext": FOX_INFOTEXT, "steps": 2,
        "override_settings": {"CLIP_stop_at_last_layers": 3}})
    assert response.status_code == 200, response.text
    assert response.json()["parameters"]["override_settings"] == {"CLIP_stop_at_last_layers": 3}
    assert api.runner.seen[-1][1]["CLIP_stop_at_last_layers"] == 3


def test_infotext_value_the_request_rejects_is_a_422(api):
    response = api.client.post("/sdapi/v1/txt2img", json={
        "infotext": "cat\nSteps: 0, Sampler: Euler, Seed: 1, Size: 8x8"})
    assert response.status_code == 422
    assert "steps must be at least 1" in response.json()["detail"]
    assert api.runner.seen == []


@pytest.mark.parametrize("sampler_text, expected", [
    ("Sampler: Euler a Karras", ("Euler a", "Karras")),          # legacy name with a schedule
    ("Sampler: DPM++ 2M Karras", ("DPM++ 2M", "Automatic")),     # Karras is its default
    ("Sampler: DPM++ 2M, Schedule type: Exponential", ("DPM++ 2M", "Exponential")),
    ("Sampler: Euler", ("Euler", "Automatic")),
])
def test_sampler_names_from_infotext(sampler_text, expected):
    params = parse_generation_parameters(f"cat\nSteps: 5, {sampler_text}, Seed: 1, Size: 8x8")
    fields = infotext_request_fields(params)
    assert (fields["sampler_name"], fields["scheduler"]) == expected


def test_settings_from_infotext_only_when_they_differ(options):
    params = parse_generation_parameters(
        "cat\nSteps: 5, Sampler: Euler, Seed: 1, Size: 8x8, Clip skip: 1, RNG: CPU, "
        "Model hash: abcdef1234, Emphasis: No norm")
    assert infotext_setting_overrides(params, options) == {"emphasis": "No norm"}
    # no RNG key means A1111's GPU generator; the checkpoint only swaps when auto swap is allowed
    options.set("disable_weights_auto_swap", False)
    legacy = parse_generation_parameters("cat\nSteps: 5, Sampler: Euler, Seed: 1, Size: 8x8, "
                                         "Model hash: abcdef1234")
    assert infotext_setting_overrides(legacy, options) == {
        "sd_model_checkpoint": "abcdef1234", "randn_source": "GPU"}


def test_img2img_fields_from_infotext(options):
    request = StableDiffusionImg2ImgProcessingAPI(
        init_images=["x"], infotext="cat\nSteps: 5, Sampler: Euler, Seed: 1, Size: 8x16, "
        "Denoising strength: 0.3, Mask blur: 8, Masked content: latent noise, "
        "Inpaint area: Only masked, Masked area padding: 12, Hires upscale: 2")
    filled = apply_request_infotext(request, options)
    assert (filled.width, filled.height, filled.denoising_strength) == (8, 16, 0.3)
    assert (filled.mask_blur, filled.inpainting_fill, filled.inpaint_full_res) == (8, 2, True)
    assert filled.inpaint_full_res_padding == 12 and filled.init_images == ["x"]
    assert not hasattr(filled, "enable_hr")   # txt2img-only fields are not invented
    untouched = StableDiffusionTxt2ImgProcessingAPI(prompt="no infotext")
    assert apply_request_infotext(untouched, options) is untouched


def test_infotext_styles_are_recognised(tmp_path, options):
    styles_file = tmp_path / "styles.csv"
    styles_file.write_text("name,prompt,negative_prompt\n"
                           'fancy,"{prompt}, masterpiece","lowres"\n', encoding="utf-8")
    request = StableDiffusionTxt2ImgProcessingAPI(
        infotext="a fox, masterpiece\nNegative prompt: blurry, lowres\nSteps: 5, Sampler: Euler, "
                 "Seed: 1, Size: 8x8")
    filled = apply_request_infotext(request, options, StyleDatabase([styles_file]))
    assert (filled.prompt, filled.negative_prompt, filled.styles) == ("a fox", "blurry",
                                                                      ["fancy"])


def test_styles_send_images_and_save_images(api):
    quiet = api.client.post("/sdapi/v1/txt2img", json={
        "prompt": "cat", "steps": 1, "styles": ["fancy"], "send_images": False})
    assert quiet.status_code == 200 and quiet.json()["images"] == []
    params = api.runner.seen[-1][0]
    assert params.styles == ["fancy"] and params.do_not_save_samples and params.do_not_save_grid
    saved = api.client.post("/sdapi/v1/txt2img", json={
        "prompt": "cat", "steps": 1, "save_images": True, "do_not_save_samples": True})
    assert saved.status_code == 200 and len(saved.json()["images"]) == 1
    params = api.runner.seen[-1][0]
    assert not params.do_not_save_samples and not params.do_not_save_grid   # save_images rules
