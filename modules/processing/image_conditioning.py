"""Extra UNet input channels for inpainting (9-channel) and instruct-pix2pix (8-channel) models."""
from __future__ import annotations

import torch

from modules.engine.cond_types import ImageCond


def txt2img_image_conditioning(model, batch_size: int, width: int, height: int) -> ImageCond:
    """txt2img on an inpainting model: everything masked, masked image = mid grey (as A1111 does);
    on an edit model: a zero image latent. Normal models get no extra channels."""
    variant = model.config.variant
    if variant not in ("inpaint", "edit"):
        return ImageCond()
    vae_dtype = next(model.first_stage_model.parameters()).dtype
    grey = torch.zeros(batch_size, 3, height, width, device=model.device, dtype=vae_dtype)
    if variant == "edit":
        latent_h, latent_w = height // 8, width // 8
        return ImageCond(concat=torch.zeros(batch_size, model.config.latent_channels, latent_h,
                                            latent_w, device=model.device, dtype=model.dtype))
    latent = model.encode_first_stage(grey).to(model.dtype)
    mask = torch.ones_like(latent[:, :1])
    return ImageCond(concat=torch.cat([mask, latent], dim=1))


def inpainting_image_conditioning(model, source_pixels: torch.Tensor, latent_size: tuple[int, int],
                                  mask: torch.Tensor | None, mask_weight: float) -> ImageCond:
    """9-channel inpainting models: [mask, latent of the image with the masked area greyed out].

    source_pixels: [B, 3, H, W] in [0, 1]; mask: [1 or B, 1, H, W] in [0, 1] (1 = repaint) or
    None for "everything masked". mask_weight (opts.inpainting_mask_weight, "Conditional mask
    weight") blends between the masked image (1) and the untouched image (0)."""
    signed = source_pixels.to(model.device, torch.float32) * 2.0 - 1.0
    if mask is None:
        mask = torch.ones(1, 1, *signed.shape[-2:])
    mask = mask.to(signed)
    # zero in [-1, 1] is mid grey, what the model saw in the masked area during training
    conditioning_image = torch.lerp(signed, signed * (1.0 - mask), mask_weight)
    vae_dtype = next(model.first_stage_model.parameters()).dtype
    latent = model.encode_first_stage(conditioning_image.to(vae_dtype)).to(model.dtype)
    latent_mask = torch.nn.functional.interpolate(mask, size=latent_size)
    latent_mask = latent_mask.expand(latent.shape[0], -1, -1, -1).to(latent)
    return ImageCond(concat=torch.cat([latent_mask, latent], dim=1))


def edit_image_conditioning(model, source_pixels: torch.Tensor) -> ImageCond:
    """8-channel instruct-pix2pix models: the init image's latent (the VAE posterior's mode,
    without the latent scaling factor, as those models were trained)."""
    vae = model.first_stage_model
    vae_dtype = next(vae.parameters()).dtype
    signed = source_pixels.to(model.device, vae_dtype) * 2.0 - 1.0
    latent = model.encode_first_stage(signed) / vae.scaling_factor
    return ImageCond(concat=latent.to(model.dtype))


def img2img_image_conditioning(model, source_pixels: torch.Tensor, latent_size: tuple[int, int],
                               mask: torch.Tensor | None, mask_weight: float) -> ImageCond:
    """The extra UNet channels of an img2img batch for the loaded model's variant."""
    variant = model.config.variant
    if variant == "inpaint":
        return inpainting_image_conditioning(model, source_pixels, latent_size, mask, mask_weight)
    if variant == "edit":
        return edit_image_conditioning(model, source_pixels)
    return ImageCond()
