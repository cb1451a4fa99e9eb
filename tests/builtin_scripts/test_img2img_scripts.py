"""The img2img built-in scripts on a tiny checkpoint through the API with script_name: SD
upscale's output size, the outpainting scripts' larger canvas with the original kept, and
Loopback's chain of images."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.builtin_scripts.conftest import REQUEST, decoded


def photo(size=(64, 64)) -> Image.Image:
    from skimage import data
    return Image.fromarray(data.astronaut()).resize(size, Image.Resampling.LANCZOS)


def encoded(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def img2img(client, script_name, script_args, **fields):
    body = {**REQUEST, "init_images": [encoded(photo())], "denoising_strength": 0.6,
            "prompt": "an astronaut", "script_name": script_name, "script_args": script_args,
            **fields}
    return client.post("/sdapi/v1/img2img", json=body)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_sd_upscale_doubles_the_image_through_tiles(client):
    answer = img2img(client, "SD upscale", ["", 16, "Lanczos", 2.0], width=64, height=64)
    images = decoded(answer)
    assert [image.size for image in images] == [(128, 128)]
    info = json.loads(answer.json()["info"])
    assert "SD upscale overlap: 16" in info["infotexts"][0]
    assert "SD upscale upscaler: Lanczos" in info["infotexts"][0]
    # redrawn, yet still the photo: close to a plain Lanczos upscale of it
    lanczos = pixels(photo().resize((128, 128), Image.Resampling.LANCZOS))
    assert not np.array_equal(pixels(images[0]), lanczos)


def test_sd_upscale_by_upscaler_index_and_batch_count(client):
    answer = img2img(client, "sd upscale", ["", 0, 1, 1.5], n_iter=2, width=64, height=64)
    assert [image.size for image in decoded(answer)] == [(96, 96), (96, 96)]


def test_sd_upscale_refuses_an_unknown_upscaler(client):
    answer = img2img(client, "SD upscale", ["", 16, "Nonexistent", 2.0])
    assert answer.status_code == 422 and "Unknown upscaler 'Nonexistent'" in answer.text


@pytest.mark.parametrize("fill", [0, "original"])
def test_poor_mans_outpainting_grows_the_canvas_and_keeps_the_image(client, fill):
    answer = img2img(client, "Poor man's outpainting", [32, 2, fill, ["left", "down"]],
                     denoising_strength=0.9)
    (result,) = decoded(answer)
    assert result.size == (128, 128)      # 64 + 32, rounded up to a multiple of 64
    placed_left, placed_top = 128 - 64, 0
    original = pixels(photo())
    seam = 4 + 16       # the mask's inset (2 x mask blur) and the reach of its blur
    inner = pixels(result)[placed_top:placed_top + 64 - seam,
                           placed_left + seam:placed_left + 64]
    assert np.array_equal(inner, original[:64 - seam, seam:])
    new_area = pixels(result)[:, :placed_left]
    assert new_area.std() > 0              # drawn, not left empty


def test_outpainting_mk2_grows_each_side_and_keeps_the_image(client):
    answer = img2img(client, "Outpainting mk2", ["", 16, 2, ["right", "up"], 1.0, 0.05],
                     denoising_strength=0.8)
    (result,) = decoded(answer)
    assert result.size == (64 + 16, 64 + 16)
    kept = pixels(result)[16 + 8:, :64 - 8]
    assert np.array_equal(kept, pixels(photo())[8:, :56])
    assert pixels(result)[:16].std() > 0


def test_outpainting_refuses_an_unknown_direction(client):
    answer = img2img(client, "Outpainting mk2", ["", 16, 2, ["sideways"], 1.0, 0.05])
    assert answer.status_code == 422 and "Unknown outpainting direction 'sideways'" in \
        answer.text


def test_loopback_feeds_each_image_into_the_next(client):
    answer = img2img(client, "Loopback", [3, 0.2, "Linear", "None"], denoising_strength=0.6)
    images = decoded(answer)
    info = json.loads(answer.json()["info"])
    assert len(images) == 1 + 3 and images[0].size == (3 * 64, 64)     # the grid first
    assert info["infotexts"][1] != info["infotexts"][3]
    assert "Denoising strength: 0.6" in info["infotexts"][1]
    assert "Denoising strength: 0.2" in info["infotexts"][3]
    assert "Seed: 42" in info["infotexts"][1] and "Seed: 44" in info["infotexts"][3]
    assert "Final denoising strength: 0.2" in info["infotexts"][1]
    # loop 2 is img2img of loop 1's image with seed 43 and strength 0.4
    second = decoded(client.post("/sdapi/v1/img2img", json={
        **REQUEST, "prompt": "an astronaut", "init_images": [encoded(images[1])],
        "denoising_strength": 0.4, "seed": 43}))[0]
    assert np.array_equal(pixels(second), pixels(images[2]))


def test_loopback_curves():
    from scripts.loopback import denoising_strength_at as at
    assert at(0, 5, 0.8, 0.2, "Linear") == 0.8 and abs(at(4, 5, 0.8, 0.2, "Linear") - 0.2) < 1e-9
    assert at(2, 5, 0.8, 0.2, "Aggressive") < at(2, 5, 0.8, 0.2, "Linear") < \
        at(2, 5, 0.8, 0.2, "Lazy")
