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


def alternative_test_args(original_prompt, *, steps=4, randomness=0.0):
    return ["", True, False, original_prompt, "", True, steps, True, 1.0, randomness, False]


def test_img2img_alternative_test_starts_from_the_noise_of_the_image(client):
    """The start noise is found from the image (not drawn from the seed): two seeds give the
    same image; with randomness 1 the seed's noise is used instead; a new prompt starts from the
    same found noise; the decode settings go into the infotext. (Whether decoding gives the
    image back depends on a trained model, which tests do not have.)"""
    def run(seed, randomness=0.0, prompt="an astronaut"):
        answer = img2img(client, "img2img alternative test",
                         alternative_test_args("an astronaut", randomness=randomness),
                         prompt=prompt, seed=seed, cfg_scale=1.0)
        return answer, decoded(answer)[0]

    first_answer, first = run(1)
    _, second = run(2)
    assert np.array_equal(pixels(first), pixels(second))
    _, random_1 = run(1, randomness=1.0)
    _, random_2 = run(2, randomness=1.0)
    assert not np.array_equal(pixels(random_1), pixels(random_2))
    _, robot = run(1, prompt="a robot")
    assert not np.array_equal(pixels(robot), pixels(first))
    info = json.loads(first_answer.json()["info"])["infotexts"][0]
    for expected in ("Decode prompt: an astronaut", "Decode CFG scale: 1.0", "Decode steps: 4",
                     "Randomness: 0.0", "Sampler: Euler", "Steps: 4", "Denoising strength: 1.0"):
        assert expected in info, (expected, info)


def test_found_noise_has_unit_spread_and_depends_on_the_image(tmp_path):
    import torch
    from modules.engine.conditioning import PromptEncoder, build_batch_conditioning
    from modules.engine.noise_inversion import find_noise_for_latent
    from modules.engine.sd_model import load_model
    from modules.engine.tokenizer import get_clip_tokenizer
    from tests.engine.tiny_checkpoints import write_tiny_checkpoint
    path = tmp_path / "tiny.safetensors"
    write_tiny_checkpoint(path, "sd1", seed=1)
    model = load_model(path)
    conditioning = build_batch_conditioning(PromptEncoder(model, get_clip_tokenizer()),
                                            ["an astronaut"], [""], 3, width=64, height=64)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = find_noise_for_latent(model, conditioning, latent, steps=3, cfg_scale=1.0)
    assert noise.shape == latent.shape and abs(float(noise.std()) - 1.0) < 1e-4
    other = find_noise_for_latent(model, conditioning, latent * 0.5, steps=3, cfg_scale=1.0)
    assert not torch.allclose(noise, other)
    adjusted = find_noise_for_latent(model, conditioning, latent, steps=3, cfg_scale=1.0,
                                     sigma_adjustment=True)
    assert torch.isfinite(adjusted).all() and not torch.allclose(adjusted, noise)


def test_img2img_alternative_test_refuses_bad_randomness(client):
    answer = img2img(client, "img2img alternative test",
                     alternative_test_args("x", randomness=2.0))
    assert answer.status_code == 422 and "Randomness must be between 0 and 1" in answer.text


def test_extra_noise_setting_changes_img2img_and_is_in_the_infotext(client):
    plain = img2img(client, None, [])
    extra = img2img(client, None, [], override_settings={"img2img_extra_noise": 0.5})
    assert "Extra noise: 0.5" in json.loads(extra.json()["info"])["infotexts"][0]
    assert not np.array_equal(pixels(decoded(plain)[0]), pixels(decoded(extra)[0]))
