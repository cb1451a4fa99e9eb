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
