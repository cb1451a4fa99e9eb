"""A1111 options and fields that change what txt2img makes: clip skip, tiling, styles, variation
seeds, batch count, grids and files on disk."""
from __future__ import annotations

import numpy as np
from PIL import Image

from modules.processing.infotext import parse_generation_parameters
from modules.processing.params import GenerationParams
from modules.processing.styles import PromptStyle
from modules.processing.txt2img import run_txt2img
from tests.integration.conftest import generate


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_clip_skip_changes_the_image_and_is_written(app_ctx):
    plain = generate(app_ctx, "tiny-sd1", prompt="a cat", seed=10)
    with app_ctx.options.override({"CLIP_stop_at_last_layers": 2}):
        skipped = generate(app_ctx, "tiny-sd1", prompt="a cat", seed=10)
    assert not np.array_equal(pixels(plain.images[0]), pixels(skipped.images[0]))
    assert parse_generation_parameters(skipped.infotexts[0])["Clip skip"] == "2"
    assert skipped.clip_skip == 2
    assert "Clip skip" not in plain.infotexts[0]


def test_tiling_is_used_and_written(app_ctx):
    plain = generate(app_ctx, "tiny-sd1", prompt="tiles", seed=4)
    tiled = generate(app_ctx, "tiny-sd1", prompt="tiles", seed=4, tiling=True)
    assert not np.array_equal(pixels(plain.images[0]), pixels(tiled.images[0]))
    assert parse_generation_parameters(tiled.infotexts[0])["Tiling"] == "True"
    # the circular padding is removed after the job: the next plain job is unchanged
    again = generate(app_ctx, "tiny-sd1", prompt="tiles", seed=4)
    assert np.array_equal(pixels(plain.images[0]), pixels(again.images[0]))


def test_styles_are_merged_into_the_prompt(app_ctx):
    app_ctx.styles.set_style(PromptStyle("oil", "{prompt}, oil painting", "photo", None))
    processed = generate(app_ctx, "tiny-sd1", prompt="a boat", negative_prompt="blurry",
                         styles=["oil"], seed=1)
    assert processed.prompt == "a boat, oil painting"
    assert processed.negative_prompt == "blurry, photo"
    parsed = parse_generation_parameters(processed.infotexts[0])
    assert parsed["Prompt"] == "a boat, oil painting"
    assert processed.styles == ["oil"]


def test_variation_seed_keeps_the_seed_and_blends_noise(app_ctx):
    base = generate(app_ctx, "tiny-sd1", prompt="v", seed=20, batch_size=2)
    varied = generate(app_ctx, "tiny-sd1", prompt="v", seed=20, subseed=500,
                      subseed_strength=0.5, batch_size=2)
    assert varied.all_seeds == [20, 20]
    assert varied.all_subseeds == [500, 501]
    parsed = parse_generation_parameters(varied.infotexts[-1])
    assert parsed["Variation seed"] == "501" and parsed["Variation seed strength"] == "0.5"
    first = varied.index_of_first_image
    assert not np.array_equal(pixels(base.images[base.index_of_first_image]),
                              pixels(varied.images[first]))


def test_batch_count_and_grid_and_files(app_ctx, tmp_path):
    params = GenerationParams(prompt="grid", seed=7, steps=2, width=64, height=64, n_iter=2,
                              batch_size=1, sampler_name="Euler",
                              outpath_samples=str(tmp_path / "samples"),
                              outpath_grids=str(tmp_path / "grids"))
    with app_ctx.options.override({"sd_model_checkpoint": "tiny-sd1", "samples_save": True,
                                   "grid_save": True, "return_grid": True}):
        job = app_ctx.jobs.submit("txt2img", lambda pr: run_txt2img(
            params, app_ctx.processing_context(pr)))
        processed = job.wait(timeout=600)
    assert processed.all_seeds == [7, 8]
    assert processed.index_of_first_image == 1
    grid, *images = processed.images
    assert grid.size == (128, 64) and [im.size for im in images] == [(64, 64), (64, 64)]
    samples = sorted((tmp_path / "samples").rglob("*.png"))
    assert [p.name[6:] for p in samples] == ["7.png", "8.png"]
    assert [p.name[:5] for p in samples] == ["00000", "00001"]
    grids = list((tmp_path / "grids").rglob("grid-*.png"))
    assert len(grids) == 1
    with Image.open(grids[0]) as saved_grid:
        assert saved_grid.size == (128, 64)
        assert "Seed: 7" in saved_grid.info["parameters"]
    assert app_ctx.paths.params_file.read_text(encoding="utf-8") == processed.infotexts[1]
