"""img2img and inpainting (A1111's StableDiffusionProcessingImg2Img) on the shared pipeline.

`prepare` turns the init images and the mask into what sampling needs (A1111's `init()`):
resized / cropped images, their latents, the latent mask, the inpainting or instruct-pix2pix
conditioning and the overlays that put the original pixels back outside the mask;
`sample` runs each batch from those latents; `finish_images` composites the result.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from modules.engine.cond_types import ImageCond
from modules.engine.denoiser import EditImageCond
from modules.engine.noise import ImageRNG
from modules.processing import script_hooks
from modules.processing.context import ProcessingContext, UnsupportedRequestError
from modules.processing.image_conditioning import img2img_image_conditioning
from modules.processing.masks import (CropRegion, blur_mask, create_binary_mask,
                                      expand_crop_region, fill_masked_area, get_crop_region,
                                      latent_mask_tensor, overlay_for, paste_back,
                                      pixel_mask_tensor)
from modules.processing.memory_guard import JobShape
from modules.processing.params import Img2ImgParams, Processed
from modules.processing.pipeline import (BatchWork, PipelineRun, encode_images, images_to_tensor,
                                         run_generation)
from modules.processing.processing_objects import run_with_selected_script
from modules.processing.upscalers import UpscalerRegistry
from modules.processing.resize import (JUST_RESIZE, LATENT_RESIZE, RESIZE_AND_FILL,
                                       flatten_transparency, resize_image)

log = logging.getLogger(__name__)

FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = 0, 1, 2, 3
MASKED_CONTENT_NAMES = {FILL: "fill", LATENT_NOISE: "latent noise", LATENT_NOTHING: "latent nothing"}
DEFAULT_DENOISING_STRENGTH = 0.75


def img2img_upscaler(run: PipelineRun):
    """A1111's `upscaler_for_img2img`: the upscaler that enlarges a smaller init image (None:
    Lanczos only)."""
    name = run.options.get("upscaler_for_img2img")
    if not name or name == "None":
        return None
    registry = run.ctx.upscalers or UpscalerRegistry()
    return lambda image, width, height: registry.resize(image, width, height, name)


def apply_batch_rule(params: Img2ImgParams) -> Img2ImgParams:
    """A1111's init image rule: one image serves the whole batch; k <= batch_size images make the
    batch size k (set on `params`, as A1111 sets p.batch_size); more images than the batch size
    is an error."""
    images = list(params.init_images or [])
    if not images:
        raise UnsupportedRequestError("img2img needs at least one init image")
    if len(images) == 1 or len(images) == params.batch_size:
        return params
    if len(images) < params.batch_size:
        params.batch_size = len(images)
        return params
    raise UnsupportedRequestError(f"bad number of images passed: {len(images)}; expecting "
                                  f"{params.batch_size} or less")


def mask_blur_sizes(params: Img2ImgParams) -> tuple[int, int]:
    """(x, y) gaussian blur; `mask_blur` sets both when given."""
    if params.mask_blur is not None:
        return int(params.mask_blur), int(params.mask_blur)
    return int(params.mask_blur_x), int(params.mask_blur_y)


@dataclass
class PreparedMask:
    """The request's mask after binarising, inversion, blur and the "only masked" crop."""
    processing_mask: Image.Image          # width x height: latent mask + inpainting conditioning
    overlay_mask: Image.Image             # init image size (only masked) or output size
    crop_region: CropRegion | None        # "only masked": the box processed, in init image pixels


def prepare_mask(params: Img2ImgParams, init_size: tuple[int, int], width: int, height: int,
                 extra_params: dict[str, Any]) -> PreparedMask | None:
    """A1111's mask steps, in its order, recording the infotext keys it records."""
    resize_mode = JUST_RESIZE if params.resize_mode == LATENT_RESIZE else params.resize_mode
    mask = create_binary_mask(params.mask, round_mask=params.mask_round)
    if mask.size != init_size:
        mask = resize_image(resize_mode, mask, *init_size)
    if params.inpainting_mask_invert:
        mask = Image.eval(mask, lambda value: 255 - value)
        extra_params["Mask mode"] = "Inpaint not masked"
    blur_x, blur_y = mask_blur_sizes(params)
    mask = blur_mask(mask, blur_x, blur_y)
    if blur_x > 0 or blur_y > 0:
        # A1111 reports one blur value; unequal x / y blurs leave the key out
        extra_params["Mask blur"] = blur_x if blur_x == blur_y else None

    if params.inpaint_full_res:
        crop_region = get_crop_region(mask, params.inpaint_full_res_padding)
        if crop_region is None:
            log.info('Unable to perform "Inpaint Only mask" because mask is blank, '
                     "switch to img2img mode.")
            return None
        crop_region = expand_crop_region(crop_region, width, height, mask.width, mask.height)
        extra_params["Inpaint area"] = "Only masked"
        extra_params["Masked area padding"] = params.inpaint_full_res_padding
        processing_mask = resize_image(RESIZE_AND_FILL, mask.crop(crop_region), width, height)
        return PreparedMask(processing_mask=processing_mask, overlay_mask=mask,
                            crop_region=crop_region)

    processing_mask = resize_image(resize_mode, mask, width, height)
    # the overlay keeps original pixels only where the blurred mask is under half strength
    overlay_mask = processing_mask.point(lambda value: min(255, value * 2))
    return PreparedMask(processing_mask=processing_mask, overlay_mask=overlay_mask,
                        crop_region=None)


@dataclass
class PreparedInputs:
    """What every batch of the job samples from (init images repeated to the batch size)."""
    init_latent: torch.Tensor              # [B, C, h, w]
    pixels: torch.Tensor                   # [B, 3, H, W] in [0, 1], as encoded
    latent_mask: torch.Tensor | None       # [1, 1, h, w], 1 = regenerate
    image_cond: ImageCond
    overlays: list[Image.Image] | None     # per image of a batch
    crop_region: CropRegion | None
    overlay_mask: Image.Image | None = None    # the mask the overlays were cut with


class Img2ImgMode:
    kind = "img2img"
    passes_per_batch = 1

    def __init__(self) -> None:
        self.inputs: PreparedInputs | None = None

    def prepare(self, run: PipelineRun) -> None:
        params: Img2ImgParams = run.params  # type: ignore[assignment]
        opts, width, height = run.options, run.plan.width, run.plan.height
        strength = params.denoising_strength
        run.denoising_strength = DEFAULT_DENOISING_STRENGTH if strength is None else strength
        background = opts.get("img2img_background_color") or "#ffffff"
        originals = [flatten_transparency(image, background) for image in params.init_images]

        prepared_mask = None
        if params.mask is not None:
            prepared_mask = prepare_mask(params, originals[0].size, width, height,
                                         run.extra_params)
        latent_mask_image = None
        if prepared_mask is not None:
            latent_mask_image = params.latent_mask.convert("L") if params.latent_mask is not None \
                else prepared_mask.processing_mask

        processed, to_encode, overlays = [], [], []
        crop_region = prepared_mask.crop_region if prepared_mask else None
        upscaler = img2img_upscaler(run)
        for original in originals:
            if crop_region is not None:
                overlays.append(overlay_for(original, prepared_mask.overlay_mask))
                image = resize_image(RESIZE_AND_FILL, original.crop(crop_region), width, height,
                                     upscaler)
                encoded = image
            elif params.resize_mode == LATENT_RESIZE:
                # encoded at its own size; the latent is resized below
                image = resize_image(JUST_RESIZE, original, width, height, upscaler)
                encoded = original
            else:
                image = encoded = resize_image(params.resize_mode, original, width, height,
                                               upscaler)
            if prepared_mask is not None and crop_region is None:
                overlays.append(overlay_for(image, prepared_mask.overlay_mask))
            if prepared_mask is not None and params.inpainting_fill != ORIGINAL:
                image = fill_masked_area(image, latent_mask_image)
                encoded = image if encoded.size == image.size else \
                    fill_masked_area(encoded, latent_mask_image)
                if params.inpainting_fill == FILL:
                    run.extra_params["Masked content"] = MASKED_CONTENT_NAMES[FILL]
            processed.append(image)
            to_encode.append(encoded)

        latent_size = (height // 8, width // 8)
        init_latent = self._encode(run, to_encode, latent_size)
        pixels = images_to_tensor(processed)
        if len(originals) == 1 and params.batch_size > 1:
            init_latent = init_latent.expand(params.batch_size, -1, -1, -1).clone()
            pixels = pixels.expand(params.batch_size, -1, -1, -1)
            overlays = overlays * params.batch_size

        latent_mask = pixel_mask = None
        if prepared_mask is not None:
            latent_mask = latent_mask_tensor(latent_mask_image, latent_size[1], latent_size[0],
                                             round_mask=params.mask_round).to(init_latent)
            pixel_mask = pixel_mask_tensor(prepared_mask.processing_mask,
                                           round_mask=params.mask_round)
            if params.inpainting_fill == LATENT_NOISE:
                run.extra_params["Masked content"] = MASKED_CONTENT_NAMES[LATENT_NOISE]
            elif params.inpainting_fill == LATENT_NOTHING:
                init_latent = init_latent * (1 - latent_mask)
                run.extra_params["Masked content"] = MASKED_CONTENT_NAMES[LATENT_NOTHING]

        image_cond = self._image_conditioning(run, pixels, latent_size, pixel_mask)
        self.inputs = PreparedInputs(
            init_latent=init_latent, pixels=pixels, latent_mask=latent_mask, image_cond=image_cond,
            overlays=overlays or None, crop_region=crop_region,
            overlay_mask=prepared_mask.overlay_mask if prepared_mask is not None else None)

    @staticmethod
    def _encode(run: PipelineRun, images: list[Image.Image],
                latent_size: tuple[int, int]) -> torch.Tensor:
        """VAE latents of the images at `latent_size` (mode 3: encoded at their own size, then
        resized bilinearly in latent space)."""
        if all(image.size == images[0].size for image in images):
            latents = [encode_images(run.model, images_to_tensor(images), memory=run.ctx.memory)]
        else:
            latents = [encode_images(run.model, images_to_tensor([image]), memory=run.ctx.memory)
                       for image in images]
        latents = [latent if latent.shape[-2:] == latent_size else
                   torch.nn.functional.interpolate(latent, size=latent_size, mode="bilinear")
                   for latent in latents]
        return torch.cat(latents)

    @staticmethod
    def _image_conditioning(run: PipelineRun, pixels: torch.Tensor, latent_size: tuple[int, int],
                            pixel_mask: torch.Tensor | None) -> ImageCond:
        params: Img2ImgParams = run.params  # type: ignore[assignment]
        variant = run.model.config.variant
        mask_weight = float(run.options.get("inpainting_mask_weight"))
        with torch.inference_mode():
            image_cond = img2img_image_conditioning(run.model, pixels, latent_size, pixel_mask,
                                                    mask_weight)
        if variant == "inpaint":
            run.is_using_inpainting_conditioning = True
            run.extra_params["Conditional mask weight"] = mask_weight
        if variant == "edit":
            if params.image_cfg_scale is not None:
                run.extra_params["Image CFG scale"] = params.image_cfg_scale
            return EditImageCond(concat=image_cond.concat, image_cfg_scale=params.image_cfg_scale)
        return image_cond

    def sample(self, run: PipelineRun, batch: BatchWork) -> torch.Tensor:
        params: Img2ImgParams = run.params  # type: ignore[assignment]
        inputs = self.inputs
        init_latent = inputs.init_latent[:batch.size]
        if inputs.latent_mask is not None and params.inpainting_fill == LATENT_NOISE:
            # the masked area starts from the images' own seed noise (no variation seed)
            seed_noise = ImageRNG(tuple(init_latent.shape[1:]), batch.seeds,
                                  source=run.options.get("randn_source"),
                                  device=run.model.device).first().to(init_latent)
            init_latent = init_latent * (1 - inputs.latent_mask) + seed_noise * inputs.latent_mask
        image_cond = inputs.image_cond
        if image_cond.concat is not None:
            image_cond = dataclasses.replace(image_cond, concat=image_cond.concat[:batch.size])
        batch.conditioning.image_cond = image_cond

        multiplier = params.initial_noise_multiplier
        if multiplier is None:
            multiplier = float(run.options.get("initial_noise_multiplier"))
        rng = batch.rng
        start_noise = getattr(params, "start_noise", None)
        if start_noise is not None:
            # a script chose the start noise (img2img alternative test: noise found from the image)
            rng = ReplacedInitialNoise(rng, start_noise(run, batch, init_latent))
        if multiplier != 1.0:
            run.extra_params["Noise multiplier"] = multiplier
            rng = ScaledInitialNoise(rng, multiplier)
        return run.sample(batch.conditioning, rng, steps=params.steps, init_latent=init_latent,
                          denoising_strength=run.denoising_strength,
                          inpaint_mask=inputs.latent_mask).latent

    def memory_shape(self, run: PipelineRun) -> JobShape:
        """Sampled at the plan's size; init images encoded at that size, or at their own with
        "latent upscale" resizing (the largest of them)."""
        params: Img2ImgParams = run.params  # type: ignore[assignment]
        size = (run.plan.width, run.plan.height)
        encoded = size
        if params.resize_mode == LATENT_RESIZE and params.mask is None:
            encoded = max((image.size for image in params.init_images or []),
                          key=lambda wh: wh[0] * wh[1], default=size)
        return JobShape(passes=(size,), batch_size=params.batch_size, encodes=(encoded,),
                        images=run.plan.image_count)

    def finish_images(self, run: PipelineRun, batch: BatchWork,
                      images: list[Image.Image]) -> list[Image.Image]:
        inputs = self.inputs
        if inputs is None or inputs.overlays is None:
            return images
        overlays = script_hooks.mask_overlays(run.params, inputs.overlay_mask, inputs.overlays)
        return [paste_back(image, overlays[index], inputs.crop_region)
                for index, image in enumerate(images)]


class ScaledInitialNoise:
    """An ImageRNG whose initial noise is multiplied (A1111's initial_noise_multiplier); the
    further noise of ancestral samplers is left as is."""

    def __init__(self, rng: ImageRNG, multiplier: float) -> None:
        self._rng = rng
        self._multiplier = multiplier

    def first(self) -> torch.Tensor:
        return self._rng.first() * self._multiplier

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rng, name)


class ReplacedInitialNoise(ScaledInitialNoise):
    """An ImageRNG whose initial noise is a given tensor; the further noise stays the seeds'."""

    def __init__(self, rng: ImageRNG, noise: torch.Tensor) -> None:
        super().__init__(rng, 1.0)
        self._noise = noise

    def first(self) -> torch.Tensor:
        return self._noise


def run_img2img(params: Img2ImgParams, ctx: ProcessingContext) -> Processed:
    """One img2img job (A1111's img2img): the selected script's run() does it when one is
    chosen in `params.script_args`, else process_img2img."""
    return run_with_selected_script(params, ctx, is_img2img=True, process=process_img2img)


def process_img2img(p: Img2ImgParams, ctx: ProcessingContext) -> Processed:
    """img2img with the always-on scripts' hooks (face restoration and the other shared
    features are decided in run_generation)."""
    apply_batch_rule(p)
    return run_generation(p, ctx, Img2ImgMode())
