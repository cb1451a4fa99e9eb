"""Live previews: the sampler's current x0 estimate rendered as an image every N steps.

A1111's preview methods (setting `show_progress_type`):
* "Approx cheap": a fixed linear map of the 4 latent channels to RGB, per architecture;
* "Full": the checkpoint's own VAE (slow, exact);
* "TAESD": the tiny autoencoder's decoder from models/VAE-approx (`taesd_decoder.*` for SD1/SD2,
  `taesdxl_decoder.*` for SDXL), falling back to "Approx cheap" when the file is missing;
* "Approx NN": A1111's small VAE-approx network; we ship no weights for it, so it renders with
  "Approx cheap" (the same speed class and a similar picture).

Rendering runs on the worker thread inside the step callback (`LivePreviews` is installed as the
job's step listener); JobProgress catches its failures, so a preview never breaks sampling.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from PIL import Image

from modules.engine.taesd import (TAESDDecoder, find_taesd_decoder, load_taesd_decoder,
                                  taesd_decoder_stem)
from modules.processing.images import image_grid

if TYPE_CHECKING:
    from modules.app.paths import Paths
    from modules.jobs.progress import JobProgress

log = logging.getLogger(__name__)

PREVIEW_METHODS = ("Full", "Approx NN", "Approx cheap", "TAESD")
VAE_APPROX_FOLDER = "VAE-approx"

# Rows: latent channels, columns: R, G, B. Least-squares fits of each architecture's VAE output
# (published with A1111's / ComfyUI's previewers); the result lands roughly in [-1, 1].
SD_LATENT_TO_RGB = ((0.298, 0.207, 0.208),
                    (0.187, 0.286, 0.173),
                    (-0.158, 0.189, 0.264),
                    (-0.184, -0.271, -0.473))
SDXL_LATENT_TO_RGB = ((0.3448, 0.4168, 0.4395),
                      (-0.1953, -0.0290, 0.0250),
                      (0.1074, 0.0886, -0.0163),
                      (-0.3730, -0.2499, -0.2088))

#: latents [B, C, h, w] → images [B, 3, H, W] in [0, 1] (the model's full VAE decode)
LatentDecoder = Callable[[torch.Tensor], torch.Tensor]


def vae_approx_dir(paths: "Paths") -> Path:
    """models/VAE-approx: where A1111 keeps the preview decoders (TAESD, Approx NN)."""
    return Path(paths.models_dir) / VAE_APPROX_FOLDER


def cheap_approximation(latent: torch.Tensor, *, is_sdxl: bool) -> torch.Tensor:
    """[B, 4, h, w] latent → [B, 3, h, w] RGB in [0, 1] at latent resolution."""
    if latent.shape[1] != 4:
        raise ValueError(f"the cheap preview needs 4 latent channels, got {latent.shape[1]}")
    factors = torch.tensor(SDXL_LATENT_TO_RGB if is_sdxl else SD_LATENT_TO_RGB)
    rgb = torch.einsum("bchw,cr->brhw", latent.detach().float().cpu(), factors)
    return ((rgb + 1.0) / 2.0).clamp(0, 1)


def pixels_to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [0, 1] → PIL RGB images."""
    array = pixels.detach().float().cpu().mul(255).round().clamp(0, 255).to(torch.uint8)
    return [Image.fromarray(np.ascontiguousarray(item)) for item in array.permute(0, 2, 3, 1).numpy()]


class PreviewRenderer:
    """Turns a batch of latents into one preview image with the chosen method.

    `full_decode` is the model's VAE decode; `vae_approx_folder` is searched for TAESD weights
    (loaded on first use, once per renderer, i.e. once per job). With `as_grid` a batch is shown as
    a grid (A1111's show_progress_grid), otherwise only its first image.
    """

    def __init__(self, method: str, *, is_sdxl: bool, full_decode: LatentDecoder,
                 vae_approx_folder: Path | None = None, as_grid: bool = True,
                 device: torch.device | str = "cpu") -> None:
        if method not in PREVIEW_METHODS:
            log.warning("unknown live preview method %r; using 'Approx cheap'", method)
            method = "Approx cheap"
        self.requested_method = method
        self.is_sdxl = is_sdxl
        self.full_decode = full_decode
        self.vae_approx_folder = vae_approx_folder
        self.as_grid = as_grid
        self.device = device
        self._taesd: TAESDDecoder | None = None
        self._taesd_missing = False

    def method_for(self, latent: torch.Tensor) -> str:
        """The method that will actually render `latent` (after the fallbacks)."""
        method = self.requested_method
        if method == "Approx NN":
            method = "Approx cheap"   # no Approx NN weights ship; same speed class
        if method == "TAESD" and self._taesd_decoder() is None:
            method = "Approx cheap"
        if method == "Approx cheap" and latent.shape[1] != 4:
            method = "Full"           # the linear factors exist for 4-channel latents only
        return method

    def _taesd_decoder(self) -> TAESDDecoder | None:
        if self._taesd is None and not self._taesd_missing:
            path = None if self.vae_approx_folder is None else \
                find_taesd_decoder(self.vae_approx_folder, is_sdxl=self.is_sdxl)
            if path is None:
                self._taesd_missing = True
                log.warning("TAESD previews: no %s in %s; using 'Approx cheap'",
                            taesd_decoder_stem(self.is_sdxl), self.vae_approx_folder)
            else:
                self._taesd = load_taesd_decoder(path, device=self.device)
        return self._taesd

    def render_pixels(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] latents → [B, 3, H, W] in [0, 1]."""
        method = self.method_for(latent)
        if method == "TAESD":
            decoder = self._taesd_decoder()
            assert decoder is not None
            return decoder.decode(latent)
        if method == "Approx cheap":
            return cheap_approximation(latent, is_sdxl=self.is_sdxl)
        return self.full_decode(latent)

    def render(self, latent: torch.Tensor) -> Image.Image:
        """One preview image of the batch: a grid of all images, or the first one."""
        batch = latent if self.as_grid else latent[:1]
        images = pixels_to_pil(self.render_pixels(batch))
        return image_grid(images, rows=None, batch_size=len(images)) if len(images) > 1 \
            else images[0]


class LivePreviews:
    """The job's step listener: every `every_n_steps` steps of a sub-job (0 = every step) the
    current x0 estimate is rendered and stored as the job's `current_image`."""

    def __init__(self, renderer: PreviewRenderer, progress: "JobProgress",
                 every_n_steps: int) -> None:
        self.renderer = renderer
        self.progress = progress
        self.every_n_steps = max(0, int(every_n_steps))
        self._last_preview_step = 0
        self._job_no = -1

    def __call__(self, step: int, total: int, latent: Any) -> None:
        if latent is None:
            return
        if self.progress.job_no != self._job_no:   # a new sub-job counts from 0 again
            self._job_no, self._last_preview_step = self.progress.job_no, 0
        if step <= self._last_preview_step or step - self._last_preview_step < self.every_n_steps:
            return
        self._last_preview_step = step
        self.progress.set_current_image(self.renderer.render(latent))


def live_previews_for_job(options: Any, progress: "JobProgress", *, model: Any,
                          full_decode: LatentDecoder,
                          vae_approx_folder: Path | None) -> LivePreviews | None:
    """The step listener the settings ask for (live_previews_enable, show_progress_every_n_steps,
    show_progress_type, show_progress_grid), or None when previews are off (period -1)."""
    if not options.get("live_previews_enable"):
        return None
    every_n_steps = int(options.get("show_progress_every_n_steps"))
    if every_n_steps < 0:
        return None
    renderer = PreviewRenderer(
        str(options.get("show_progress_type")), is_sdxl=bool(model.config.is_sdxl),
        full_decode=full_decode, vae_approx_folder=vae_approx_folder,
        as_grid=bool(options.get("show_progress_grid")), device=getattr(model, "device", "cpu"))
    return LivePreviews(renderer, progress, every_n_steps)
