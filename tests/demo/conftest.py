"""The demo checkpoint behind the real application path (job queue, processing, engine).

Tests that need the trained model are skipped when `models/Stable-diffusion/demo-shapes.safetensors`
is absent (train it with `python -m modules.demo.train_demo_model`); `DEMO_SHAPES_CHECKPOINT`
points them at another file.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from modules.app.cmd_args import parse_args
from modules.app.context import AppContext, build_app_context
from modules.processing.img2img import run_img2img
from modules.processing.params import GenerationParams, Img2ImgParams, Processed
from modules.processing.txt2img import run_txt2img

ROOT = Path(__file__).resolve().parents[2]
DEMO_CHECKPOINT = Path(os.environ.get(
    "DEMO_SHAPES_CHECKPOINT", ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"))
DEMO_NAME = DEMO_CHECKPOINT.stem
# the defaults: default sampler and scheduler, 20 steps, CFG 7, the model's native size
DEFAULTS = dict(steps=20, sampler_name="DPM++ 2M", scheduler="Automatic", cfg_scale=7.0,
                width=64, height=64)


@pytest.fixture(scope="session")
def demo_ctx(tmp_path_factory) -> AppContext:
    if not DEMO_CHECKPOINT.is_file():
        pytest.skip(f"no demo checkpoint at {DEMO_CHECKPOINT} "
                    "(python -m modules.demo.train_demo_model)")
    data = tmp_path_factory.mktemp("demo-data")
    args, _ = parse_args(["--data-dir", str(data), "--ckpt", str(DEMO_CHECKPOINT),
                          "--skip-load-model-at-start"])
    ctx = build_app_context(args, ROOT)
    yield ctx
    ctx.close()


def _run(ctx: AppContext, kind: str, params, runner) -> Processed:
    with ctx.options.override({"sd_model_checkpoint": DEMO_NAME, "samples_save": False,
                               "grid_save": False}):
        job = ctx.jobs.submit(kind,
                              lambda progress: runner(params, ctx.processing_context(progress)))
        return job.wait(timeout=600)


def txt2img(ctx: AppContext, **fields) -> Processed:
    """One txt2img job as the API and UI run it, with the demo defaults."""
    return _run(ctx, "txt2img", GenerationParams(**{**DEFAULTS, **fields}), run_txt2img)


def img2img(ctx: AppContext, **fields) -> Processed:
    return _run(ctx, "img2img", Img2ImgParams(**{**DEFAULTS, **fields}), run_img2img)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models: one thread is as fast and keeps results independent of the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
