"""bfloat16 on the CPU against float32, on the trained demo model through the real application
path: the same seeds give the same pictures (PSNR ≥ 30 dB each) and the shape analyser reads
the asked colour and background as often."""
from __future__ import annotations

import numpy as np
import pytest

from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from tests.demo.adherence import rates, run_trials
from tests.demo.conftest import DEMO_CHECKPOINT, ROOT, txt2img

pytestmark = pytest.mark.slow
COUNT = 16


def psnr(first, second) -> float:
    difference = np.asarray(first, np.float64) - np.asarray(second, np.float64)
    mse = float((difference ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


@pytest.fixture(scope="module")
def trials_by_precision(tmp_path_factory):
    if not DEMO_CHECKPOINT.is_file():
        pytest.skip(f"no demo checkpoint at {DEMO_CHECKPOINT}")
    found = {}
    for precision in ("fp32", "bf16"):
        args, _ = parse_args(["--data-dir", str(tmp_path_factory.mktemp(precision)),
                              "--ckpt", str(DEMO_CHECKPOINT), "--skip-load-model-at-start",
                              "--cpu-precision", precision])
        ctx = build_app_context(args, ROOT)
        try:
            found[precision] = run_trials(lambda **fields: txt2img(ctx, **fields), COUNT)
            found[f"{precision} plan"] = ctx.model_manager.plan
            found[f"{precision} infotext"] = txt2img(ctx, prompt="a red circle",
                                                     seed=5).infotexts[0]
        finally:
            ctx.close()
    return found


def test_bf16_runs_the_unet_and_by_default_the_vae_in_bf16(trials_by_precision):
    import torch
    plan = trials_by_precision["bf16 plan"]
    assert (plan.dtype, plan.vae_dtype) == (torch.bfloat16, torch.bfloat16)
    assert trials_by_precision["fp32 plan"].dtype == torch.float32


def test_bf16_images_match_fp32_of_the_same_seed(trials_by_precision):
    pairs = zip(trials_by_precision["fp32"], trials_by_precision["bf16"])
    values = [psnr(full.image, half.image) for full, half in pairs]
    print(f"bf16 against fp32: PSNR min {min(values):.1f} dB, mean {np.mean(values):.1f} dB")
    assert min(values) >= 30, values
    # the precision is not a generation parameter: the infotext is the same
    assert trials_by_precision["bf16 infotext"] == trials_by_precision["fp32 infotext"]


def test_bf16_adherence_does_not_drop(trials_by_precision):
    full, half = rates(trials_by_precision["fp32"]), rates(trials_by_precision["bf16"])
    for field in ("colour", "background"):
        assert half[field] >= full[field] - 1 / COUNT, (field, full, half)
