"""txt2img end to end on tiny checkpoints of every architecture: sizes, seeds, pixels, infotext."""
from __future__ import annotations

import json

import numpy as np
import pytest

from modules.processing.infotext import parse_generation_parameters
from tests.integration.conftest import KINDS, generate


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("kind", KINDS)
def test_each_architecture_generates_deterministically(app_ctx, kind):
    first = generate(app_ctx, f"tiny-{kind}", prompt="a red circle", seed=1234)
    again = generate(app_ctx, f"tiny-{kind}", prompt="a red circle", seed=1234)
    other = generate(app_ctx, f"tiny-{kind}", prompt="a red circle", seed=1235)
    assert len(first.images) == 1
    assert first.images[0].size == (64, 64)
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    assert not np.array_equal(pixels(first.images[0]), pixels(other.images[0]))
    # a real image, not a flat fill
    assert pixels(first.images[0]).std() > 1.0
    info = json.loads(first.js())
    assert info["all_seeds"] == [1234]
    assert info["sd_model_name"] == f"tiny-{kind}"
    assert info["is_using_inpainting_conditioning"] == (kind == "sd1_inpaint")


def test_batch_of_two_equals_two_single_images(app_ctx):
    batch = generate(app_ctx, "tiny-sd1", prompt="cat", seed=77, batch_size=2)
    single_a = generate(app_ctx, "tiny-sd1", prompt="cat", seed=77)
    single_b = generate(app_ctx, "tiny-sd1", prompt="cat", seed=78)
    # grid first when return_grid is on and there are 2+ images
    images = batch.images[batch.index_of_first_image:]
    assert batch.all_seeds == [77, 78]
    assert np.abs(pixels(images[0]) - pixels(single_a.images[0])).max() <= 1
    assert np.abs(pixels(images[1]) - pixels(single_b.images[0])).max() <= 1


def test_infotext_describes_the_image(app_ctx):
    processed = generate(app_ctx, "tiny-sd1", prompt="a (red:1.2) circle",
                         negative_prompt="blurry", seed=42, cfg_scale=6.5,
                         sampler_name="DPM++ 2M", steps=4, width=72, height=64)
    text = processed.infotexts[0]
    parsed = parse_generation_parameters(text)
    assert parsed["Prompt"] == "a (red:1.2) circle"
    assert parsed["Negative prompt"] == "blurry"
    assert parsed["Steps"] == "4"
    assert parsed["Sampler"] == "DPM++ 2M"
    assert parsed["Schedule type"] == "Karras"
    assert parsed["CFG scale"] == "6.5"
    assert parsed["Seed"] == "42"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("72", "64")
    assert parsed["Model"] == "tiny-sd1"
    assert len(parsed["Model hash"]) == 10
    assert processed.images[0].size == (72, 64)


def test_size_not_multiple_of_8_is_rounded_down(app_ctx):
    processed = generate(app_ctx, "tiny-sd1", prompt="x", seed=1, width=70, height=67)
    assert processed.images[0].size == (64, 64)
    assert processed.width == 64 and processed.height == 64


def test_unknown_sampler_falls_back_to_dpmpp_2m(app_ctx):
    processed = generate(app_ctx, "tiny-sd1", prompt="x", seed=1, sampler_name="No such sampler")
    assert processed.sampler_name == "DPM++ 2M"


def test_saving_writes_png_with_parameters(app_ctx, tmp_path):
    from PIL import Image
    from modules.processing.params import GenerationParams
    from modules.processing.txt2img import run_txt2img
    params = GenerationParams(prompt="saved", seed=5, steps=2, width=64, height=64,
                              sampler_name="Euler", outpath_samples=str(tmp_path))
    with app_ctx.options.override({"sd_model_checkpoint": "tiny-sd1", "samples_save": True,
                                   "grid_save": False}):
        job = app_ctx.jobs.submit("txt2img", lambda pr: run_txt2img(
            params, app_ctx.processing_context(pr)))
        processed = job.wait(timeout=600)
    assert len(processed.saved_files) == 1
    saved = processed.saved_files[0]
    assert saved.endswith("-5.png")
    with Image.open(saved) as image:
        assert image.info["parameters"] == processed.infotexts[0]
