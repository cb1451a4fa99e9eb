"""Few-step setups (SD-Turbo / LCM style: 1-8 steps at CFG 1) through the real job path: the
UNet runs once per step with one row per image (the negative-prompt pass is skipped at CFG 1,
as diffusers does), and at CFG > 1 with two rows; the infotext records what was asked."""
from __future__ import annotations

import pytest

from modules.processing.infotext import parse_generation_parameters
from tests.integration.conftest import generate


def unet_rows(app_ctx, **fields) -> tuple[list[int], object]:
    """The batch size of every UNet call of one job, and the job's result."""
    model = app_ctx.model_manager.get("tiny-sd1").model
    rows: list[int] = []
    hook = model.model.diffusion_model.register_forward_pre_hook(
        lambda module, args: rows.append(int(args[0].shape[0])))
    try:
        processed = generate(app_ctx, "tiny-sd1", **fields)
    finally:
        hook.remove()
    return rows, processed


@pytest.mark.parametrize("sampler, scheduler, steps", [
    ("Euler a", "SGM Uniform", 1),        # SD-Turbo style
    ("LCM", "SGM Uniform", 4),            # LCM style
    ("Euler", "Automatic", 2),
])
def test_cfg_1_runs_one_unet_row_per_image_and_step(app_ctx, sampler, scheduler, steps):
    rows, processed = unet_rows(app_ctx, prompt="a cat", seed=3, steps=steps, cfg_scale=1.0,
                                sampler_name=sampler, scheduler=scheduler, batch_size=2)
    assert rows == [2] * steps
    assert len(processed.all_seeds) == 2
    infotext = parse_generation_parameters(processed.infotexts[0])
    assert (infotext["Steps"], infotext["Sampler"], infotext["CFG scale"]) == \
        (str(steps), sampler, "1.0")


def test_cfg_above_1_runs_the_negative_prompt_too(app_ctx):
    rows, _ = unet_rows(app_ctx, prompt="a cat", seed=3, steps=4, cfg_scale=2.0,
                        sampler_name="LCM", scheduler="SGM Uniform", batch_size=2)
    assert rows == [4] * 4
