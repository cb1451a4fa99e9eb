"""Upscaler model files (issue 15, first part): tiny random-weight networks built with
spandrel's own architectures and saved in models/ESRGAN, models/RealESRGAN, models/SwinIR and
models/DAT are listed with their scale, upscale through the Extras API to exactly the requested
size, equal spandrel's own call, and agree tiled and whole."""
from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.engine.upscaler_models import Tiling, image_to_tensor, load_upscaler, run_tiled
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def tiny_networks() -> dict[str, tuple[str, torch.nn.Module]]:
    """file name → (models/ folder, network), each built by spandrel's architecture class."""
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.DAT import DAT
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.SwinIR import SwinIR
    torch.manual_seed(0)
    return {
        "4x_tiny_esrgan.pth": ("ESRGAN", ESRGAN(num_filters=8, num_blocks=1, scale=4)),
        "realesr-general-x4v3.pth": ("RealESRGAN", Compact(num_feat=8, num_conv=2, upscale=4)),
        "tiny_swinir_x2.safetensors": ("SwinIR", SwinIR(
            embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2, img_size=16,
            upsampler="pixelshuffle")),
        "DAT_x2.safetensors": ("DAT", DAT(embed_dim=32, depth=[1], num_heads=[2],
                                          split_size=[2, 4], upscale=2, img_size=16)),
    }


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("upscalers")
    networks = tiny_networks()
    for name, (folder, network) in networks.items():
        (data / "models" / folder).mkdir(parents=True, exist_ok=True)
        state = {key: value.contiguous() for key, value in network.state_dict().items()}
        path = data / "models" / folder / name
        if name.endswith(".pth"):
            torch.save({"params_ema": state}, path)          # as Real-ESRGAN releases are
        else:
            save_file(state, str(path))
    (data / "models" / "ESRGAN" / "torn.pth").write_bytes(b"PK\x03\x04 not a model")
    (data / "models" / "Stable-diffusion").mkdir()
    write_tiny_checkpoint(data / "models" / "Stable-diffusion" / "tiny.safetensors", "sd1")
    args, _ = parse_args(["--data-dir", str(data), "--nowebui"])
    ctx = build_app_context(args, ROOT)
    yield SimpleNamespace(client=TestClient(create_api_app(ctx)), ctx=ctx, data=data,
                          networks=networks)
    ctx.close()


def encode(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB")


def photo(size: tuple[int, int] = (48, 40)) -> Image.Image:
    from skimage import data
    return Image.fromarray(data.astronaut()).resize(size, Image.Resampling.BICUBIC)


def test_the_files_are_listed_by_name_with_their_scale(api):
    listed = {item["name"]: item for item in api.client.get("/sdapi/v1/upscalers").json()}
    assert listed["4x_tiny_esrgan"]["scale"] == 4
    assert listed["R-ESRGAN General 4xV3"]["scale"] == 4        # A1111's name for the release
    assert listed["tiny_swinir_x2"]["scale"] == 2
    assert listed["DAT x2"]["scale"] == 2
    assert listed["4x_tiny_esrgan"]["model_path"].endswith("4x_tiny_esrgan.pth")
    assert "torn" not in listed
    assert {"None", "Lanczos", "Nearest"} <= set(listed)
    realesrgan = api.client.get("/sdapi/v1/realesrgan-models").json()
    assert [item["name"] for item in realesrgan] == ["R-ESRGAN General 4xV3"]


@pytest.mark.parametrize("name, file", [("4x_tiny_esrgan", "4x_tiny_esrgan.pth"),
                                        ("R-ESRGAN General 4xV3", "realesr-general-x4v3.pth"),
                                        ("tiny_swinir_x2", "tiny_swinir_x2.safetensors"),
                                        ("DAT x2", "DAT_x2.safetensors")])
def test_an_extras_upscale_equals_spandrels_own_call(api, name, file):
    folder, network = api.networks[file]
    source = photo()
    scale = 4 if "4x" in name or "4xV3" in name else 2
    with api.ctx.options.override({"ESRGAN_tile": 0, "SWIN_tile": 0, "DAT_tile": 0}):
        answer = api.client.post("/sdapi/v1/extra-single-image", json={
            "image": encode(source), "upscaling_resize": scale, "upscaler_1": name})
    assert answer.status_code == 200, answer.text
    result = np.asarray(decode(answer.json()["image"]), dtype=np.int16)
    assert result.shape == (source.height * scale, source.width * scale, 3)
    with torch.no_grad():
        expected = network.eval()(image_to_tensor(source)).clamp(0, 1)
    expected = expected[0].permute(1, 2, 0).mul(255).round().numpy()
    assert np.abs(result - expected).max() <= 1


def test_a_size_that_is_not_the_models_factor_ends_exactly_there(api):
    answer = api.client.post("/sdapi/v1/extra-single-image", json={
        "image": encode(photo()), "resize_mode": 1, "upscaling_resize_w": 130,
        "upscaling_resize_h": 90, "upscaler_1": "4x_tiny_esrgan"})
    assert answer.status_code == 200, answer.text
    assert decode(answer.json()["image"]).size == (130, 90)


@pytest.mark.parametrize("file", ["4x_tiny_esrgan.pth", "realesr-general-x4v3.pth",
                                  "tiny_swinir_x2.safetensors", "DAT_x2.safetensors"])
def test_tiled_and_whole_agree(api, file):
    folder, _ = api.networks[file]
    descriptor = load_upscaler(api.data / "models" / folder / file)
    pixels = image_to_tensor(photo((52, 44)))
    whole = run_tiled(descriptor, pixels, Tiling(0, 0))
    tiled = run_tiled(descriptor, pixels, Tiling(24, 8))
    assert tiled.shape == whole.shape
    difference = (tiled - whole).abs()
    assert difference.mean() < 0.01 and difference.max() < 0.1


def test_lanczos_twice_is_pils(api):
    source = photo()
    answer = api.client.post("/sdapi/v1/extra-single-image", json={
        "image": encode(source), "upscaling_resize": 2, "upscaler_1": "Lanczos"})
    assert answer.status_code == 200, answer.text
    expected = source.resize((source.width * 2, source.height * 2), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(decode(answer.json()["image"])), np.asarray(expected))


def test_a_file_spandrel_cannot_read_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    from modules.processing.model_upscalers import scan_upscaler_files
    (tmp_path / "ESRGAN").mkdir()
    (tmp_path / "ESRGAN" / "broken.pth").write_bytes(b"\x00" * 64)
    save_file({"conv.weight": torch.zeros(3, 3, 3, 3)},
              str(tmp_path / "ESRGAN" / "not_an_upscaler.safetensors"))
    with caplog.at_level(logging.WARNING):
        assert scan_upscaler_files([("ESRGAN", tmp_path / "ESRGAN")]) == []
    assert "broken.pth" in caplog.text and "not_an_upscaler.safetensors" in caplog.text


def test_hires_fix_upscales_with_a_model_file(api):
    body = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 5,
            "sampler_name": "Euler", "enable_hr": True, "hr_scale": 2,
            "hr_second_pass_steps": 2, "denoising_strength": 0.5}
    images = {}
    for upscaler in ("4x_tiny_esrgan", "Lanczos"):
        answer = api.client.post("/sdapi/v1/txt2img", json={**body, "hr_upscaler": upscaler})
        assert answer.status_code == 200, answer.text
        images[upscaler] = decode(answer.json()["images"][0])
        info = answer.json()["info"]
        assert f"Hires upscaler: {upscaler}" in info
    assert images["4x_tiny_esrgan"].size == (128, 128)
    assert not np.array_equal(np.asarray(images["4x_tiny_esrgan"]),
                              np.asarray(images["Lanczos"]))


def test_sd_upscale_and_the_img2img_upscaler_use_a_model_file(api):
    body = {"init_images": [encode(photo((64, 64)))], "prompt": "a portrait", "steps": 2,
            "seed": 3, "sampler_name": "Euler", "width": 64, "height": 64,
            "denoising_strength": 0.3, "script_name": "SD upscale",
            "script_args": ["", 16, "4x_tiny_esrgan", 2.0]}
    answer = api.client.post("/sdapi/v1/img2img", json=body)
    assert answer.status_code == 200, answer.text
    assert decode(answer.json()["images"][0]).size == (128, 128)
    assert "SD upscale upscaler: 4x_tiny_esrgan" in answer.json()["info"]
    assert "4x_tiny_esrgan" in [u["name"] for u in api.client.get(
        "/sdapi/v1/upscalers").json()]
    grown = {}
    for upscaler in ("4x_tiny_esrgan", "Lanczos"):     # a small init image grows with it
        with api.ctx.options.override({"upscaler_for_img2img": upscaler}):
            answer = api.client.post("/sdapi/v1/img2img", json={
                **{k: v for k, v in body.items() if not k.startswith("script")},
                "init_images": [encode(photo((32, 32)))]})
        assert answer.status_code == 200, answer.text
        grown[upscaler] = decode(answer.json()["images"][0])
    assert grown["Lanczos"].size == grown["4x_tiny_esrgan"].size == (64, 64)
    assert not np.array_equal(np.asarray(grown["Lanczos"]), np.asarray(grown["4x_tiny_esrgan"]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_where_the_architecture_allows(api, dtype):
    """bfloat16 / float16 (the device plan's dtype on GPUs) give the float32 picture within a
    few levels; the output stays float32 in [0, 1]."""
    path = api.data / "models" / "ESRGAN" / "4x_tiny_esrgan.pth"
    full = load_upscaler(path)
    half = load_upscaler(path, dtype=dtype)
    assert half.supports_half and half.supports_bfloat16           # spandrel's word on ESRGAN
    assert next(half.model.parameters()).dtype == dtype
    pixels = image_to_tensor(photo((32, 24)))
    whole, reduced = run_tiled(full, pixels, Tiling(0, 0)), run_tiled(half, pixels, Tiling(0, 0))
    assert reduced.dtype == torch.float32
    assert (whole - reduced).abs().mean() < 0.02


def test_bad_extras_requests_are_clear_4xx(api):
    post = api.client.post
    image = encode(photo())

    def detail(response) -> str:
        return str(response.json().get("detail"))

    for scale in (0, 100):
        response = post("/sdapi/v1/extra-single-image", json={
            "image": image, "upscaler_1": "4x_tiny_esrgan", "upscaling_resize": scale})
        assert response.status_code == 422 and "upscaling_resize" in detail(response)
    # an empty upload and a zero-byte file are refused before any work
    empty = post("/sdapi/v1/extra-single-image", json={"image": "", "upscaler_1": "Lanczos"})
    assert empty.status_code == 400 and "image is empty" in detail(empty)
    zero = post("/sdapi/v1/extra-single-image", json={
        "image": "data:image/png;base64,", "upscaler_1": "Lanczos"})
    assert zero.status_code == 400 and "Invalid encoded image" in detail(zero)
    batch = post("/sdapi/v1/extra-batch-images", json={
        "imageList": [{"data": image, "name": "a"}, {"data": "", "name": "b"}],
        "upscaler_1": "Lanczos"})
    assert batch.status_code == 400 and "imageList[1]" in detail(batch)
    # the corrupt file was left out of the list, so asking for it names it as unknown
    torn = post("/sdapi/v1/extra-single-image", json={"image": image, "upscaler_1": "torn"})
    assert torn.status_code == 400 and "could not find upscaler named torn" in detail(torn)
    scale_to_zero = post("/sdapi/v1/extra-single-image", json={
        "image": image, "upscaler_1": "Lanczos", "resize_mode": 1, "upscaling_resize_w": 0})
    assert scale_to_zero.status_code == 422 and "upscaling_resize_w" in detail(scale_to_zero)
