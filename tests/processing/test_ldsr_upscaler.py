"""LDSR as an upscaler (issue 19): a tiny random LDSR in the release layout (models/LDSR/model.ckpt
+ project.yaml) is listed, upscales to exactly 4x through the Extras API, follows `ldsr_steps`,
runs in hires fix and SD upscale, and a missing project.yaml is a clear 400."""
from __future__ import annotations

import base64
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from tests.engine.tiny_checkpoints import write_tiny_checkpoint
from tests.ldsr_files import write_tiny_ldsr

ROOT = Path(__file__).resolve().parents[2]


def make_api(data: Path, *flags: str) -> SimpleNamespace:
    (data / "models" / "Stable-diffusion").mkdir(parents=True, exist_ok=True)
    write_tiny_checkpoint(data / "models" / "Stable-diffusion" / "tiny.safetensors", "sd1")
    args, _ = parse_args(["--data-dir", str(data), "--nowebui", *flags])
    ctx = build_app_context(args, ROOT)
    return SimpleNamespace(client=TestClient(create_api_app(ctx)), ctx=ctx)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("ldsr")
    write_tiny_ldsr(data / "models" / "LDSR")
    made = make_api(data)
    with made.ctx.options.override({"ldsr_steps": 3, "ldsr_cached": True}):
        yield made
    made.ctx.close()


def encode(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"),
                      dtype=np.int16)


def photo(size: tuple[int, int]) -> Image.Image:
    from skimage import data
    return Image.fromarray(data.astronaut()).resize(size, Image.Resampling.BICUBIC)


def extras(api, image: Image.Image, scale: float) -> np.ndarray:
    answer = api.client.post("/sdapi/v1/extra-single-image", json={
        "image": encode(image), "upscaling_resize": scale, "upscaler_1": "LDSR"})
    assert answer.status_code == 200, answer.text
    return decode(answer.json()["image"])


def test_ldsr_is_listed_with_its_file_and_scale(api):
    listed = {item["name"]: item for item in api.client.get("/sdapi/v1/upscalers").json()}
    assert listed["LDSR"]["scale"] == 4
    assert listed["LDSR"]["model_path"].endswith("LDSR/model.ckpt")
    assert api.ctx.options.get("ldsr_steps") == 3


def test_extras_upscales_to_exactly_four_times_and_repeats(api):
    source = photo((40, 32))
    first = extras(api, source, 4)
    assert first.shape == (128, 160, 3)
    assert np.array_equal(first, extras(api, source, 4))
    lanczos = np.asarray(source.resize((160, 128), Image.Resampling.LANCZOS), dtype=np.int16)
    assert np.abs(first - lanczos).mean() > 1.0          # the network drew it, not a resize


def test_the_step_setting_changes_the_output(api):
    source = photo((40, 32))
    three = extras(api, source, 4)
    with api.ctx.options.override({"ldsr_steps": 6}):
        six = extras(api, source, 4)
    assert six.shape == three.shape
    assert np.abs(six - three).mean() > 1.0


def test_hires_fix_and_sd_upscale_use_ldsr(api):
    answer = api.client.post("/sdapi/v1/txt2img", json={
        "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 5,
        "sampler_name": "Euler", "enable_hr": True, "hr_scale": 2, "hr_upscaler": "LDSR",
        "hr_second_pass_steps": 2, "denoising_strength": 0.5})
    assert answer.status_code == 200, answer.text
    assert decode(answer.json()["images"][0]).shape == (128, 128, 3)
    assert "Hires upscaler: LDSR" in answer.json()["info"]
    answer = api.client.post("/sdapi/v1/img2img", json={
        "init_images": [encode(photo((64, 64)))], "prompt": "a portrait", "steps": 2,
        "seed": 3, "sampler_name": "Euler", "width": 64, "height": 64,
        "denoising_strength": 0.3, "script_name": "SD upscale",
        "script_args": ["", 16, "LDSR", 2.0]})
    assert answer.status_code == 200, answer.text
    assert decode(answer.json()["images"][0]).shape == (128, 128, 3)
    assert "SD upscale upscaler: LDSR" in answer.json()["info"]


def test_a_missing_yaml_is_a_clear_400(tmp_path):
    write_tiny_ldsr(tmp_path / "models" / "LDSR", with_yaml=False)
    made = make_api(tmp_path)
    try:
        assert "LDSR" in [u["name"] for u in made.client.get("/sdapi/v1/upscalers").json()]
        answer = made.client.post("/sdapi/v1/extra-single-image", json={
            "image": encode(photo((16, 16))), "upscaling_resize": 4, "upscaler_1": "LDSR"})
        assert answer.status_code == 400
        assert "project.yaml" in answer.text and "missing" in answer.text
    finally:
        made.ctx.close()


def test_the_models_path_flag_and_no_files(tmp_path):
    write_tiny_ldsr(tmp_path / "elsewhere")
    made = make_api(tmp_path / "data", "--ldsr-models-path", str(tmp_path / "elsewhere"))
    empty = make_api(tmp_path / "empty")
    try:
        assert "LDSR" in [u["name"] for u in made.client.get("/sdapi/v1/upscalers").json()]
        assert "LDSR" not in [u["name"] for u in empty.client.get("/sdapi/v1/upscalers").json()]
    finally:
        made.ctx.close()
        empty.ctx.close()


def extras_tab_values(image: Image.Image) -> dict:
    from modules.ui.extras_tab import EXTRAS_INPUT_NAMES, SINGLE_IMAGE
    values = {name: None for name in EXTRAS_INPUT_NAMES}
    values.update(mode=SINGLE_IMAGE, image=image, resize_mode=0, upscaling_resize=4.0,
                  upscaling_resize_w=512, upscaling_resize_h=512, upscaling_crop=True,
                  upscaler_1="LDSR", upscaler_2="None", extras_upscaler_2_visibility=0.0,
                  gfpgan_visibility=0.0, codeformer_visibility=0.0, codeformer_weight=0.0,
                  show_results=True)
    return values


def test_the_extras_tab_upscales_with_ldsr_like_the_api(api):
    from modules.ui.extras_tab import run_extras_tab
    source = photo((40, 32))
    result = run_extras_tab(api.ctx, extras_tab_values(source))
    assert result.error_html == ""
    [image] = result.images
    assert image.size == (160, 128)
    assert np.array_equal(np.asarray(image.convert("RGB"), dtype=np.int16), extras(api, source, 4))
    assert "Postprocess upscaler: LDSR" in result.html_info


def test_the_extras_tab_shows_the_missing_yaml(tmp_path):
    from modules.ui.extras_tab import run_extras_tab
    write_tiny_ldsr(tmp_path / "models" / "LDSR", with_yaml=False)
    made = make_api(tmp_path)
    try:
        result = run_extras_tab(made.ctx, extras_tab_values(photo((16, 16))))
        assert "project.yaml" in result.error_html and not result.images
    finally:
        made.ctx.close()
