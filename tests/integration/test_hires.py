"""Hires fix on the tiny checkpoints: sizes, upscalers, infotext, prompts, progress."""
from __future__ import annotations

import numpy as np
import pytest

from modules.jobs.progress import JobProgress
from modules.processing.context import UnsupportedRequestError
from modules.processing.infotext import parse_generation_parameters
from modules.processing.params import GenerationParams
from modules.processing.txt2img import run_txt2img
from modules.processing.upscalers import LATENT_UPSCALE_MODES
from tests.integration.conftest import generate


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def test_scale_gives_the_target_size_and_the_infotext_keys(app_ctx):
    processed = generate(app_ctx, "tiny-sd1", prompt="a cat", seed=5, enable_hr=True,
                         hr_scale=1.5, hr_second_pass_steps=2, denoising_strength=0.6,
                         hr_upscaler="Latent (bicubic)")
    assert processed.images[0].size == (96, 96)
    assert (processed.width, processed.height) == (64, 64)      # first-pass size, as A1111
    parsed = parse_generation_parameters(processed.infotexts[0])
    assert (parsed["Size-1"], parsed["Size-2"]) == ("64", "64")
    assert parsed["Denoising strength"] == "0.6"
    assert parsed["Hires upscale"] == "1.5"
    assert parsed["Hires steps"] == "2"
    assert parsed["Hires upscaler"] == "Latent (bicubic)"
    assert "Hires sampler" not in processed.infotexts[0]
    assert "Hires prompt" not in processed.infotexts[0]
    order = [processed.infotexts[0].index(key) for key in
             ("Denoising strength", "Hires upscale", "Hires steps", "Hires upscaler")]
    assert order == sorted(order)


@pytest.mark.parametrize("resize, expected", [((96, 0), (96, 96)), ((0, 80), (80, 80)),
                                              ((96, 72), (96, 72))])
def test_resize_to(app_ctx, resize, expected):
    processed = generate(app_ctx, "tiny-sd1", prompt="a cat", seed=5, enable_hr=True,
                         hr_resize_x=resize[0], hr_resize_y=resize[1], steps=2)
    assert processed.images[0].size == expected
    parsed = parse_generation_parameters(processed.infotexts[0])
    assert (parsed["Hires resize-1"], parsed["Hires resize-2"]) == tuple(map(str, resize))
    assert "Hires upscale" not in processed.infotexts[0]


@pytest.mark.parametrize("upscaler", [m.name for m in LATENT_UPSCALE_MODES]
                         + ["None", "Lanczos", "Nearest"])
def test_every_upscaler_runs(app_ctx, upscaler):
    processed = generate(app_ctx, "tiny-sd1", prompt="a cat", seed=5, enable_hr=True,
                         hr_scale=1.5, hr_upscaler=upscaler, steps=2)
    assert processed.images[0].size == (96, 96)
    assert parse_generation_parameters(processed.infotexts[0])["Hires upscaler"] == upscaler
    assert _pixels(processed.images[0]).std() > 0


def test_pixel_and_latent_upscalers_give_different_images(app_ctx):
    common = dict(prompt="a cat", seed=5, enable_hr=True, hr_scale=1.5, steps=2)
    latent = generate(app_ctx, "tiny-sd1", hr_upscaler="Latent", **common)
    nearest = generate(app_ctx, "tiny-sd1", hr_upscaler="Nearest", **common)
    assert np.abs(_pixels(latent.images[0]) - _pixels(nearest.images[0])).max() > 0


def test_hires_prompt_changes_the_image_and_is_written(app_ctx):
    common = dict(prompt="a cat", seed=7, enable_hr=True, hr_scale=1.5, steps=2)
    same = generate(app_ctx, "tiny-sd1", **common)
    other = generate(app_ctx, "tiny-sd1", hr_prompt="a dog, sitting", **common)
    assert np.abs(_pixels(same.images[0]) - _pixels(other.images[0])).max() > 0
    parsed = parse_generation_parameters(other.infotexts[0])
    assert parsed["Prompt"] == "a cat"
    assert parsed["Hires prompt"] == "a dog, sitting"


def test_hires_sampler_and_checkpoint_are_written(app_ctx):
    processed = generate(app_ctx, "tiny-sd1", prompt="a cat", seed=7, enable_hr=True,
                         hr_scale=1.5, steps=2, hr_sampler_name="DPM++ 2M",
                         hr_checkpoint_name="tiny-sd1_inpaint")
    parsed = parse_generation_parameters(processed.infotexts[0])
    assert parsed["Hires sampler"] == "DPM++ 2M"
    assert parsed["Hires schedule type"] == "Karras"
    assert parsed["Hires checkpoint"].startswith("tiny-sd1_inpaint [")
    assert parsed["Model"] == "tiny-sd1"
    assert processed.images[0].size == (96, 96)


def test_inpainting_model_and_sdxl_run_the_second_pass(app_ctx):
    for checkpoint in ("tiny-sd1_inpaint", "tiny-sdxl"):
        processed = generate(app_ctx, checkpoint, prompt="a cat", seed=3, enable_hr=True,
                             hr_scale=1.5, hr_upscaler="Lanczos", steps=2)
        assert processed.images[0].size == (96, 96)


def test_unknown_upscaler_is_refused_with_its_name(app_ctx):
    with pytest.raises(UnsupportedRequestError, match="ESRGAN_9x"):
        generate(app_ctx, "tiny-sd1", prompt="a cat", enable_hr=True, hr_upscaler="ESRGAN_9x")


class _RecordingProgress(JobProgress):
    def __init__(self) -> None:
        super().__init__("test")
        self.seen: list[tuple[int, int, int, int]] = []

    def on_sampler_step(self, index, total, latent=None):
        super().on_sampler_step(index, total, latent)
        self.seen.append((self.job_no, self.job_count, index, total))


def test_progress_counts_both_passes(app_ctx):
    params = GenerationParams(prompt="a cat", seed=1, steps=3, width=64, height=64,
                              sampler_name="Euler", enable_hr=True, hr_scale=1.5,
                              hr_second_pass_steps=4, denoising_strength=1.0, n_iter=2,
                              do_not_save_grid=True)
    progress = _RecordingProgress()
    with app_ctx.options.override({"sd_model_checkpoint": "tiny-sd1", "samples_save": False,
                                   "grid_save": False}):
        processed = run_txt2img(params, app_ctx.processing_context(progress))
    assert len(processed.images) == 2
    assert {count for _, count, _, _ in progress.seen} == {4}     # 2 batches x 2 passes
    assert sorted({job for job, _, _, _ in progress.seen}) == [0, 1, 2, 3]
    jobs = [job for job, _, _, _ in progress.seen]
    assert jobs == sorted(jobs)
    assert {total for job, _, _, total in progress.seen if job % 2 == 0} == {3}
    assert {total for job, _, _, total in progress.seen if job % 2 == 1} == {4}
    fractions = [(job + (index + 1) / total) / 4 for job, _, index, total in progress.seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
