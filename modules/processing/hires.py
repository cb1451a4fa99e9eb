"""Hires fix (txt2img `enable_hr`): A1111's target-size rules (a1111-compat.md §11.1) and the
second pass — upscale the first pass (in latent space or as images), then img2img-style sampling
from fresh noise of the same seeds, with its own prompts, steps, sampler, scheduler, checkpoint."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from modules.engine.prompt_parser import strip_prompt_comments
from modules.engine.samplers import effective_scheduler, find_sampler, get_sampler_and_scheduler
from modules.processing.context import UnsupportedRequestError
from modules.processing.image_conditioning import (img2img_image_conditioning,
                                                   txt2img_image_conditioning)
from modules.processing import script_hooks
from modules.processing.memory_guard import JobShape
from modules.processing.params import GenerationParams
from modules.processing.pipeline import (BatchWork, PipelineRun, encode_images,
                                         images_to_tensor, tensors_to_images)
from modules.processing.setup import round_to_multiple_of_8
from modules.processing.upscalers import (DEFAULT_LATENT_MODE, LatentUpscaleMode,
                                          UpscalerRegistry, find_latent_upscale_mode)

LATENT_FACTOR = 8                         # pixels per latent cell (A1111's opt_f)
SAME_CHECKPOINT = "Use same checkpoint"
SAME_SAMPLER = "Use same sampler"


def old_hires_first_pass_size(width: int, height: int) -> tuple[int, int]:
    """A1111's pre-1.0 automatic first pass: scale to about 512x512 pixels, round up to 64."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


@dataclass(frozen=True)
class HiresSize:
    """Sizes of a hires job (pixels). The second pass upscales to `upscale_width x upscale_height`
    (covering the target) and crops `crop_x` / `crop_y` latent cells to reach the target."""
    first_width: int
    first_height: int
    upscale_width: int
    upscale_height: int
    crop_x: int = 0
    crop_y: int = 0
    infotext: dict[str, Any] = field(default_factory=dict)

    @property
    def target_width(self) -> int:
        return (self.upscale_width // LATENT_FACTOR - self.crop_x) * LATENT_FACTOR

    @property
    def target_height(self) -> int:
        return (self.upscale_height // LATENT_FACTOR - self.crop_y) * LATENT_FACTOR

    def crop_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Centre crop of `crop_x` / `crop_y` cells, the odd one taken at the end (as A1111)."""
        height, width = latents.shape[-2:]
        return latents[..., self.crop_y // 2:height - (self.crop_y + 1) // 2,
                       self.crop_x // 2:width - (self.crop_x + 1) // 2]


def first_pass_request(params: GenerationParams, use_old_hires_fix_width_height: bool
                       ) -> tuple[int, int, int, int]:
    """(first width, first height, hr_resize_x, hr_resize_y) after the legacy rules: the
    firstphase_width/height fields, or the `use_old_hires_fix_width_height` option, make
    width/height the final size (a resize-to target) and choose another first pass."""
    width, height = params.width, params.height
    resize_x, resize_y = params.hr_resize_x, params.hr_resize_y
    if params.firstphase_width or params.firstphase_height:
        first_w, first_h = params.firstphase_width, params.firstphase_height
        # a single legacy field keeps the final aspect ratio
        first_w = first_w or max(LATENT_FACTOR, first_h * width // height)
        first_h = first_h or max(LATENT_FACTOR, first_w * height // width)
        return first_w, first_h, width, height
    if use_old_hires_fix_width_height:
        first_w, first_h = old_hires_first_pass_size(width, height)
        return first_w, first_h, width, height
    return width, height, resize_x, resize_y


def hires_size(width: int, height: int, hr_scale: float, hr_resize_x: int,
               hr_resize_y: int) -> HiresSize:
    """A1111 `calculate_target_resolution` from the (rounded) first-pass size."""
    if hr_resize_x == 0 and hr_resize_y == 0:
        return HiresSize(width, height, int(width * hr_scale), int(height * hr_scale),
                         infotext={"Hires upscale": hr_scale})
    infotext = {"Hires resize": f"{hr_resize_x}x{hr_resize_y}"}
    if hr_resize_y == 0:
        return HiresSize(width, height, hr_resize_x, hr_resize_x * height // width, infotext=infotext)
    if hr_resize_x == 0:
        return HiresSize(width, height, hr_resize_y * width // height, hr_resize_y, infotext=infotext)
    # both given: scale to cover the target keeping the aspect ratio, crop the excess
    if width / height < hr_resize_x / hr_resize_y:
        upscale_w, upscale_h = hr_resize_x, hr_resize_x * height // width
    else:
        upscale_w, upscale_h = hr_resize_y * width // height, hr_resize_y
    return HiresSize(width, height, upscale_w, upscale_h,
                     crop_x=(upscale_w - hr_resize_x) // LATENT_FACTOR,
                     crop_y=(upscale_h - hr_resize_y) // LATENT_FACTOR, infotext=infotext)


def plan_hires_size(params: GenerationParams, use_old_hires_fix_width_height: bool) -> HiresSize:
    first_w, first_h, resize_x, resize_y = first_pass_request(params, use_old_hires_fix_width_height)
    first_w, first_h = round_to_multiple_of_8(first_w), round_to_multiple_of_8(first_h)
    return hires_size(first_w, first_h, params.hr_scale, resize_x, resize_y)


class HiresFixMode:
    """txt2img with a hires second pass; `first_pass` is the plain txt2img mode."""
    kind = "txt2img"
    passes_per_batch = 2

    def __init__(self, first_pass, size: HiresSize, upscalers: UpscalerRegistry) -> None:
        self.first_pass = first_pass
        self.size = size
        self.upscalers = upscalers
        self.latent_mode: LatentUpscaleMode | None = None
        self.checkpoint_title: str | None = None
        self.sampler_name: str | None = None
        self.scheduler: str | None = None

    # -- once per job ----------------------------------------------------------------------
    def prepare(self, run: PipelineRun) -> None:
        self.first_pass.prepare(run)
        params, extra = run.params, run.extra_params
        run.denoising_strength = params.denoising_strength
        upscaler_name = params.hr_upscaler or DEFAULT_LATENT_MODE
        self.latent_mode = find_latent_upscale_mode(upscaler_name)
        if self.latent_mode is None and self.upscalers.find(upscaler_name) is None \
                and upscaler_name != "None":
            raise UnsupportedRequestError(f"could not find upscaler named {upscaler_name}")
        if params.hr_checkpoint_name and params.hr_checkpoint_name != SAME_CHECKPOINT:
            info = run.ctx.model_manager.checkpoints.get_closest(params.hr_checkpoint_name)
            if info is None:
                raise UnsupportedRequestError(
                    f"Could not find checkpoint with name {params.hr_checkpoint_name}")
            if info.filename != run.loaded.info.filename:
                self.checkpoint_title = info.title
                extra["Hires checkpoint"] = f"{info.stem} [{info.shorthash}]"
        if params.hr_sampler_name and params.hr_sampler_name != SAME_SAMPLER:
            self.sampler_name, scheduler = get_sampler_and_scheduler(
                params.hr_sampler_name, params.hr_scheduler, convert_automatic=False)
            if self.sampler_name != run.plan.sampler_name:
                extra["Hires sampler"] = self.sampler_name
        else:
            scheduler = params.hr_scheduler or params.scheduler
        sampler = find_sampler(self.sampler_name or run.plan.sampler_name)
        label = effective_scheduler(sampler, scheduler).label
        self.scheduler = label
        hires_prompts, hires_negatives = self.hires_prompts(run)
        if hires_prompts != run.plan.prompts:
            extra["Hires prompt"] = hires_prompts[0]
        if hires_negatives != run.plan.negative_prompts:
            extra["Hires negative prompt"] = hires_negatives[0]
        if label != run.plan.scheduler_label:
            extra["Hires schedule type"] = label
        extra.update(self.size.infotext)
        if params.hr_second_pass_steps:
            extra["Hires steps"] = params.hr_second_pass_steps
        if params.hr_upscaler is not None:
            extra["Hires upscaler"] = params.hr_upscaler

    @staticmethod
    def hires_prompts(run: PipelineRun) -> tuple[list[str], list[str]]:
        """Per image: hr_prompt / hr_negative_prompt (styles applied), empty = the first pass's."""
        params, plan, styles = run.params, run.plan, run.ctx.styles
        strip = strip_prompt_comments if run.options.get("enable_prompt_comments") else str
        count = plan.image_count
        prompts = plan.prompts
        if params.hr_prompt:
            prompts = [strip(styles.apply_styles_to_prompt(params.hr_prompt, plan.styles))] * count
        negatives = plan.negative_prompts
        if params.hr_negative_prompt:
            negatives = [strip(styles.apply_negative_styles_to_prompt(params.hr_negative_prompt,
                                                                      plan.styles))] * count
        return prompts, negatives

    # -- per batch -------------------------------------------------------------------------
    def sample(self, run: PipelineRun, batch: BatchWork) -> torch.Tensor:
        refiner_pass = str(run.options.get("hires_fix_refiner_pass") or "second pass")
        if run.refiner is not None and refiner_pass != "second pass":
            run.extra_params["Hires refiner"] = refiner_pass
        plan = run.plan
        batch.conditioning.image_cond = txt2img_image_conditioning(
            run.model, batch.size, plan.width, plan.height)
        first = run.sample(batch.conditioning, batch.rng, steps=run.params.steps,
                           use_refiner=refiner_pass in ("first pass", "both passes")).latent
        if run.progress.interrupted or run.progress.skipped:
            return first
        run.progress.next_job()
        script_hooks.before_hr(run)
        return self.second_pass(run, batch, first,
                                use_refiner=refiner_pass in ("second pass", "both passes"))

    def second_pass(self, run: PipelineRun, batch: BatchWork, first: torch.Tensor, *,
                    use_refiner: bool) -> torch.Tensor:
        params, size = run.params, self.size
        base = run.loaded
        loaded = base
        if self.checkpoint_title is not None:
            loaded = run.ctx.model_manager.get(self.checkpoint_title, vae_path=base.vae_path)
        model = loaded.model
        target_h = size.upscale_height // LATENT_FACTOR
        target_w = size.upscale_width // LATENT_FACTOR
        if self.latent_mode is not None:
            latents = self.latent_mode.upscale(first, target_h, target_w)
            image_cond = self.latent_image_conditioning(run, model, latents)
        else:
            pixels = self.upscale_images(run, first, size.upscale_width, size.upscale_height)
            latents = encode_images(model, pixels, memory=run.ctx.memory)
            image_cond = img2img_image_conditioning(
                model, pixels, tuple(latents.shape[-2:]), None,
                float(run.options.get("inpainting_mask_weight") or 1.0))
        latents = size.crop_latents(latents)
        if image_cond.concat is not None:
            image_cond.concat = size.crop_latents(image_cond.concat)

        height, width = latents.shape[-2] * LATENT_FACTOR, latents.shape[-1] * LATENT_FACTOR
        steps = params.hr_second_pass_steps or params.steps
        prompts, negatives = self.hires_prompts(run)
        prompts, negatives = prompts[batch.start:batch.start + batch.size], \
            negatives[batch.start:batch.start + batch.size]
        encoder = run.encoder if loaded is base else run.make_encoder(model)
        # prompt-editing decimals in (1, 2] address the hires pass (a1111-compat.md §12.4)
        conditioning = run.conditioning(prompts, negatives, params.steps, width=width,
                                        height=height, encoder=encoder, hires_steps=steps)
        conditioning.image_cond = image_cond
        # A1111 makes fresh noise for the hires pass from the same seeds
        rng = run.make_rng(tuple(latents.shape[1:]), batch.seeds, batch.subseeds)
        result = run.sample(conditioning, rng, steps=steps, sampler_name=self.sampler_name,
                            scheduler=self.scheduler, model=model if loaded is not base else None,
                            init_latent=latents, denoising_strength=params.denoising_strength,
                            use_refiner=use_refiner,
                            refiner_prompts=(prompts, negatives, width, height, steps))
        return result.latent

    def latent_image_conditioning(self, run: PipelineRun, model, latents: torch.Tensor):
        height, width = latents.shape[-2] * LATENT_FACTOR, latents.shape[-1] * LATENT_FACTOR
        mask_weight = float(run.options.get("inpainting_mask_weight") or 1.0)
        if model.config.variant == "inpaint" and mask_weight < 1.0:
            pixels = run.decode(latents, model)
            return img2img_image_conditioning(model, pixels, tuple(latents.shape[-2:]), None,
                                              mask_weight)
        if model.config.variant == "edit":
            return img2img_image_conditioning(model, run.decode(latents, model),
                                              tuple(latents.shape[-2:]), None, mask_weight)
        return txt2img_image_conditioning(model, latents.shape[0], width, height)

    def upscale_images(self, run: PipelineRun, first: torch.Tensor, width: int,
                       height: int) -> torch.Tensor:
        """Decode the first pass, upscale each image with the chosen upscaler → [B, 3, H, W]."""
        images = tensors_to_images(run.decode(first))
        name = run.params.hr_upscaler
        upscaled: list[Image.Image] = [self.upscalers.resize(image, width, height, name)
                                       for image in images]
        return images_to_tensor(upscaled)

    def finish_images(self, run: PipelineRun, batch: BatchWork,
                      images: list[Image.Image]) -> list[Image.Image]:
        return self.first_pass.finish_images(run, batch, images)

    def memory_shape(self, run: PipelineRun) -> JobShape:
        """Both passes; a hires upscaled as images is VAE-encoded at the upscaled size."""
        first = self.first_pass.memory_shape(run)
        upscaled = (self.size.upscale_width, self.size.upscale_height)
        latent = find_latent_upscale_mode(run.params.hr_upscaler or DEFAULT_LATENT_MODE)
        return JobShape(passes=(*first.passes, upscaled), batch_size=first.batch_size,
                        encodes=() if latent is not None else (upscaled,), images=first.images)
