"""txt2img: sampling from noise (A1111's StableDiffusionProcessingTxt2Img) on the shared pipeline."""
from __future__ import annotations

import torch
from PIL import Image

from modules.processing.context import ProcessingContext
from modules.processing.hires import HiresFixMode, first_pass_params, plan_hires_size
from modules.processing.image_conditioning import txt2img_image_conditioning
from modules.processing.memory_guard import JobShape
from modules.processing.params import GenerationParams, Processed
from modules.processing.pipeline import BatchWork, PipelineRun, run_generation
from modules.processing.setup import reject_unsupported
from modules.processing.upscalers import UpscalerRegistry


class Txt2ImgMode:
    kind = "txt2img"
    passes_per_batch = 1

    def prepare(self, run: PipelineRun) -> None:
        run.is_using_inpainting_conditioning = run.model.config.variant == "inpaint"

    def sample(self, run: PipelineRun, batch: BatchWork) -> torch.Tensor:
        plan = run.plan
        batch.conditioning.image_cond = txt2img_image_conditioning(
            run.model, batch.size, plan.width, plan.height)
        return run.sample(batch.conditioning, batch.rng, steps=run.params.steps).latent

    def finish_images(self, run: PipelineRun, batch: BatchWork,
                      images: list[Image.Image]) -> list[Image.Image]:
        return images

    def memory_shape(self, run: PipelineRun) -> JobShape:
        return JobShape(passes=((run.plan.width, run.plan.height),),
                        batch_size=run.params.batch_size, images=run.plan.image_count)


def run_txt2img(params: GenerationParams, ctx: ProcessingContext) -> Processed:
    """One txt2img job; with `enable_hr` a hires second pass follows each batch, using the
    image upscalers of `ctx.upscalers` (the built-in ones when None)."""
    reject_unsupported(params)
    if not params.enable_hr:
        return run_generation(params, ctx, Txt2ImgMode())
    size = plan_hires_size(params, bool(ctx.options.get("use_old_hires_fix_width_height")))
    mode = HiresFixMode(Txt2ImgMode(), size, ctx.upscalers or UpscalerRegistry())
    return run_generation(first_pass_params(params, size), ctx, mode)
