"""txt2img: sampling from noise (A1111's StableDiffusionProcessingTxt2Img) on the shared pipeline."""
from __future__ import annotations

import torch
from PIL import Image

from modules.processing.context import ProcessingContext
from modules.processing.hires import HiresFixMode, plan_hires_size
from modules.processing.image_conditioning import txt2img_image_conditioning
from modules.processing.memory_guard import JobShape
from modules.processing.params import GenerationParams, Processed
from modules.processing.pipeline import BatchWork, PipelineRun, run_generation
from modules.processing.processing_objects import run_with_selected_script
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
    """One txt2img job (A1111's txt2img): the selected script's run() does it when one is
    chosen in `params.script_args`, else process_txt2img."""
    return run_with_selected_script(params, ctx, is_img2img=False, process=process_txt2img)


def process_txt2img(p: GenerationParams, ctx: ProcessingContext) -> Processed:
    """txt2img with the always-on scripts' hooks; with `enable_hr` a hires second pass follows
    each batch, using the image upscalers of `ctx.upscalers` (the built-in ones when None)."""
    reject_unsupported(p)
    if not p.enable_hr:
        return run_generation(p, ctx, Txt2ImgMode())
    size = plan_hires_size(p, bool(ctx.options.get("use_old_hires_fix_width_height")))
    mode = HiresFixMode(Txt2ImgMode(), size, ctx.upscalers or UpscalerRegistry())
    # the first pass runs at its own size (A1111 keeps it in p.width / p.height too)
    p.width, p.height = size.first_width, size.first_height
    return run_generation(p, ctx, mode)
