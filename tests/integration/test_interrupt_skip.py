"""Interrupt and skip reach a running txt2img job through the job queue."""
from __future__ import annotations

import time

import pytest

from modules.processing.params import GenerationParams
from modules.processing.txt2img import run_txt2img


def _submit(app_ctx, settings=None, **fields):
    params = GenerationParams(prompt="stop", seed=3, width=64, height=64, sampler_name="Euler",
                              **fields)
    overrides = {"sd_model_checkpoint": "tiny-sd1", "samples_save": False, "grid_save": False,
                 "return_grid": False, **(settings or {})}

    def run(progress):
        # settings apply while the job runs, as the API's override_settings do
        with app_ctx.options.override(overrides):
            return run_txt2img(params, app_ctx.processing_context(progress))

    job = app_ctx.jobs.submit("txt2img", run)
    return job, job.wait


def _wait_for_step(job, step: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while job.progress.sampling_step < step and not job.finished:
        assert time.time() < deadline, "job never reached the step"
        time.sleep(0.01)


def test_interrupt_returns_the_finished_part_quickly(app_ctx):
    job, wait = _submit(app_ctx, steps=200, n_iter=3)
    _wait_for_step(job, 2)
    app_ctx.jobs.interrupt_current()
    processed = wait(timeout=120)
    # the first batch is returned (partially denoised), the other two never start
    assert len(processed.images) == 1
    assert job.progress.job_no == 0
    assert job.progress.sampling_step < 10


def test_skip_drops_the_current_batch_and_goes_on(app_ctx):
    job, wait = _submit(app_ctx, steps=60, n_iter=3)
    _wait_for_step(job, 2)
    app_ctx.jobs.skip_current()
    processed = wait(timeout=300)
    assert len(processed.images) == 2
    assert processed.all_seeds == [3, 4, 5]
    assert [f"Seed: {seed}," in text for seed, text in zip((4, 5), processed.infotexts)] == \
        [True, True]


@pytest.mark.parametrize("save_incomplete", [False, True])
def test_interrupted_images_are_saved_only_when_asked(app_ctx, tmp_path, save_incomplete):
    job, wait = _submit(app_ctx, {"samples_save": True, "save_incomplete_images": save_incomplete},
                        steps=200, outpath_samples=str(tmp_path))
    _wait_for_step(job, 2)
    app_ctx.jobs.interrupt_current()
    processed = wait(timeout=120)
    assert len(processed.images) == 1           # returned either way
    assert len(list(tmp_path.rglob("*.png"))) == (1 if save_incomplete else 0)
