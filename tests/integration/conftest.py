"""An application context over a temporary data dir holding one tiny checkpoint per architecture."""
from __future__ import annotations

from pathlib import Path

import pytest

from modules.app.cmd_args import parse_args
from modules.app.context import AppContext, build_app_context
from modules.processing.params import GenerationParams, Processed
from modules.processing.txt2img import run_txt2img
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("sd1", "sd1_inpaint", "sd2_v", "sdxl")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data")
    ckpt_dir = data / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    for kind in KINDS:
        path = write_tiny_checkpoint(ckpt_dir / f"tiny-{kind}.safetensors", kind, seed=1)
        if kind == "sd2_v":
            path.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    return data


@pytest.fixture(scope="session")
def app_ctx(tiny_data_dir) -> AppContext:
    args, _ = parse_args(["--data-dir", str(tiny_data_dir), "--skip-load-model-at-start"])
    ctx = build_app_context(args, ROOT)
    yield ctx
    ctx.close()


def generate(ctx: AppContext, checkpoint: str, **fields) -> Processed:
    """Run one txt2img job through the job queue, the way the API and UI do."""
    fields.setdefault("steps", 3)
    fields.setdefault("width", 64)
    fields.setdefault("height", 64)
    fields.setdefault("sampler_name", "Euler")
    params = GenerationParams(**fields)
    with ctx.options.override({"sd_model_checkpoint": checkpoint, "samples_save": False,
                               "grid_save": False}):
        job = ctx.jobs.submit("txt2img",
                              lambda progress: run_txt2img(params, ctx.processing_context(progress)))
        return job.wait(timeout=600)
