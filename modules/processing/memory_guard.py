"""Memory guard: estimate what a job needs, refuse what cannot fit, decode / encode within budget.

A job's peak beyond the loaded weights is the larger of the UNet's activations (sampling) and the
VAE's (decode at the end, encode of init images or of an upscaled hires pass). Both grow linearly
with the image; the constants below were measured on this project's networks (fp32, CPU, SD1.5 /
SD2.1 / SDXL sizes, peak RSS over a forward pass, see ARCHITECTURE.md) and are rounded up:

* UNet: ~90 KB per latent cell per image (cond + uncond) at 320 channels in fp32, + ~200 MB;
  SD2.1 and SDXL measured at or below SD1.5.
* VAE decode: ~4 KB per output pixel at 128 channels in fp32 (the measured peak varies by ~1%
  between runs); encode ~3.1 KB per input pixel.
  So a 2048x2048 decode needs ~16 GB, which is why large images are decoded in tiles
  (`modules.engine.vae_tiling`), whose peak depends on the tile size only.

`free_memory_bytes` is what the device can give now (RAM: the kernel's `MemAvailable`; CUDA: free
plus what torch's allocator holds unused). A job is refused when even the tiled path cannot fit,
with a message giving both numbers; otherwise the VAE runs on the whole batch, image by image, or
in tiles, whichever fits (the log says when it is not the whole batch).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

import psutil
import torch

from modules.engine.vae_tiling import (DEFAULT_DECODE_TILE, DEFAULT_ENCODE_TILE, LATENT_FACTOR,
                                       decode_tiled, encode_tiled)

log = logging.getLogger(__name__)

MIB = 1024 ** 2
GIB = 1024 ** 3
UNET_FIXED_BYTES = 256 * MIB
UNET_BYTES_PER_CELL_CHANNEL_BYTE = 100_000 / (320 * 4)   # 100 KB per latent cell, SD1.5 fp32
VAE_FIXED_BYTES = 128 * MIB
VAE_DECODE_BYTES_PER_PIXEL_CHANNEL_BYTE = 8.5             # 4.3 KB per pixel at 128 ch fp32
VAE_ENCODE_BYTES_PER_PIXEL_CHANNEL_BYTE = 6.5             # 3.3 KB per pixel at 128 ch fp32
IMAGE_BYTES_PER_PIXEL = 3 * 4 * 2                          # float32 RGB, plus a blended copy
# a finished image kept until the job ends: 8-bit RGB, its PNG and base64 copies when returned
RESULT_BYTES_PER_PIXEL = 3 * 3
DEFAULT_RESERVE_BYTES = 1 * GIB


class InsufficientMemoryError(RuntimeError):
    """A job needs more memory than the device has free; the message gives both numbers."""

    def __init__(self, what: str, needed: int, available: int) -> None:
        self.needed, self.available = needed, available
        super().__init__(f"Not enough memory for {what}: it needs about {needed / GIB:.1f} GB, "
                         f"{max(available, 0) / GIB:.1f} GB are free. Use a smaller size or batch.")


def free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return psutil.virtual_memory().available


def used_memory_bytes(device: torch.device) -> int:
    """What this process holds on `device` now (RAM: resident set size)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return psutil.Process().memory_info().rss


@dataclass(frozen=True)
class ModelFootprint:
    """What the estimates need to know about a model: widths and element sizes."""
    unet_channels: int = 320
    vae_channels: int = 128
    dtype_bytes: int = 4
    vae_dtype_bytes: int = 4

    @classmethod
    def of(cls, model) -> "ModelFootprint":
        vae_parameter = next(model.first_stage_model.parameters())
        return cls(unet_channels=model.config.unet.model_channels,
                   vae_channels=model.config.vae.ch, dtype_bytes=model.dtype.itemsize,
                   vae_dtype_bytes=vae_parameter.dtype.itemsize)

    def unet_bytes(self, width: int, height: int, images: int) -> int:
        cells = (width // LATENT_FACTOR) * (height // LATENT_FACTOR)
        per_cell = UNET_BYTES_PER_CELL_CHANNEL_BYTE * self.unet_channels * self.dtype_bytes
        return int(UNET_FIXED_BYTES + per_cell * cells * images)

    def decode_bytes(self, width: int, height: int, images: int) -> int:
        per_pixel = VAE_DECODE_BYTES_PER_PIXEL_CHANNEL_BYTE * self.vae_channels * self.vae_dtype_bytes
        return int(VAE_FIXED_BYTES + (per_pixel + IMAGE_BYTES_PER_PIXEL) * width * height * images)

    def encode_bytes(self, width: int, height: int, images: int) -> int:
        per_pixel = VAE_ENCODE_BYTES_PER_PIXEL_CHANNEL_BYTE * self.vae_channels * self.vae_dtype_bytes
        return int(VAE_FIXED_BYTES + (per_pixel + IMAGE_BYTES_PER_PIXEL) * width * height * images)

    def tiled_decode_bytes(self, width: int, height: int) -> int:
        """One image decoded in tiles: one tile's activations plus the blended output."""
        tile = DEFAULT_DECODE_TILE * LATENT_FACTOR
        return self.decode_bytes(min(width, tile), min(height, tile), 1) \
            + IMAGE_BYTES_PER_PIXEL * width * height

    @staticmethod
    def result_bytes(width: int, height: int, images: int) -> int:
        """The job's finished images, held until it ends and its answer is encoded."""
        return RESULT_BYTES_PER_PIXEL * width * height * images

    def tiled_encode_bytes(self, width: int, height: int) -> int:
        tile = DEFAULT_ENCODE_TILE
        return self.encode_bytes(min(width, tile), min(height, tile), 1) \
            + IMAGE_BYTES_PER_PIXEL * width * height


@dataclass(frozen=True)
class JobShape:
    """The sizes a job works at: every sampling pass (width, height), the batch size, which
    sizes are VAE-encoded (img2img init images, a hires pass upscaled as images), and how many
    images it returns (batch size x batch count)."""
    passes: tuple[tuple[int, int], ...]
    batch_size: int
    encodes: tuple[tuple[int, int], ...] = ()
    images: int = 1


class MemoryGuard:
    """Shared by the job worker and the request path. `job_running()` marks a running job so a
    request checked meanwhile counts the memory that job holds as memory it will get back."""

    def __init__(self, reserve_bytes: Callable[[], int] = lambda: DEFAULT_RESERVE_BYTES,
                 free_bytes: Callable[[torch.device], int] = free_memory_bytes) -> None:
        self.reserve_bytes = reserve_bytes
        self.free_bytes = free_bytes
        self._lock = threading.Lock()
        self._held_at_start: tuple[torch.device, int] | None = None

    # -- budgets -----------------------------------------------------------------------------
    def budget(self, device: torch.device) -> int:
        """What a job starting now may use: free memory less the reserve."""
        return self.free_bytes(device) - self.reserve_bytes()

    def capacity(self, device: torch.device) -> int:
        """What a job will have once the running one (if any) has ended."""
        with self._lock:
            held = self._held_at_start
        returned = 0
        if held is not None and held[0] == device:
            returned = max(0, used_memory_bytes(device) - held[1])
        return self.budget(device) + returned

    def job_running(self, device: torch.device) -> "_RunningJob":
        return _RunningJob(self, device)

    # -- checks --------------------------------------------------------------------------------
    def check(self, footprint: ModelFootprint, shape: JobShape, device: torch.device, *,
              available: int | None = None) -> None:
        """Raise InsufficientMemoryError unless the job fits with its VAE work in tiles.
        `available` defaults to `capacity(device)` (the request path's view)."""
        budget = self.capacity(device) if available is None else available
        width, height = shape.passes[-1]
        results = footprint.result_bytes(width, height, shape.images)
        _refuse_above(budget, results, f"keeping {shape.images} image(s) of {width}x{height}")
        budget -= results    # the finished images are held while later batches run
        for width, height in shape.passes:
            _refuse_above(budget, footprint.unet_bytes(width, height, shape.batch_size),
                          f"sampling {shape.batch_size} image(s) of {width}x{height}")
        width, height = shape.passes[-1]
        _refuse_above(budget, footprint.tiled_decode_bytes(width, height),
                      f"decoding an image of {width}x{height}")
        for width, height in shape.encodes:
            _refuse_above(budget, footprint.tiled_encode_bytes(width, height),
                          f"encoding an image of {width}x{height}")

    def require(self, needed: int, what: str, device: torch.device) -> None:
        """Refuse (InsufficientMemoryError) work the job adds beyond its estimate, e.g. loading
        a script's network, when it does not fit the budget now."""
        _refuse_above(self.budget(device), needed, what)

    # -- VAE work within the budget --------------------------------------------------------------
    def decode(self, model, latents: torch.Tensor) -> torch.Tensor:
        """Latents → images in [0, 1], float32 [B, 3, H, W]: the whole batch at once when it fits,
        else image by image, else each image in tiles."""
        vae_dtype = next(model.first_stage_model.parameters()).dtype
        latents = latents.to(model.device, vae_dtype)
        footprint = ModelFootprint.of(model)
        count, height, width = latents.shape[0], latents.shape[-2] * LATENT_FACTOR, \
            latents.shape[-1] * LATENT_FACTOR
        budget = self.budget(model.device)
        with torch.inference_mode():
            if footprint.decode_bytes(width, height, count) <= budget:
                decoded = model.decode_first_stage(latents).float()
            elif footprint.decode_bytes(width, height, 1) <= budget:
                log.info("Decoding %d images of %dx%d one at a time to fit in %.1f GB free",
                         count, width, height, budget / GIB)
                decoded = torch.cat([model.decode_first_stage(latents[i:i + 1]).float()
                                     for i in range(count)])
            else:
                _refuse_above(budget, footprint.tiled_decode_bytes(width, height),
                              f"decoding an image of {width}x{height}")
                log.info("Decoding %d image(s) of %dx%d in tiles (a whole decode needs %.1f GB, "
                         "%.1f GB free)", count, width, height,
                         footprint.decode_bytes(width, height, 1) / GIB, budget / GIB)
                decoded = torch.cat([decode_tiled(model.first_stage_model, latents[i:i + 1])
                                     for i in range(count)])
        return ((decoded + 1.0) / 2.0).clamp(0, 1)

    def encode(self, model, pixels: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [0, 1] [B, 3, H, W] → scaled latents (float32), in tiles when a whole
        encode does not fit."""
        vae_dtype = next(model.first_stage_model.parameters()).dtype
        images = (pixels * 2.0 - 1.0).to(model.device, vae_dtype)
        footprint = ModelFootprint.of(model)
        count, height, width = images.shape[0], images.shape[-2], images.shape[-1]
        budget = self.budget(model.device)
        with torch.inference_mode():
            if footprint.encode_bytes(width, height, count) <= budget:
                return model.encode_first_stage(images, generator=generator).float()
            _refuse_above(budget, footprint.tiled_encode_bytes(width, height),
                          f"encoding an image of {width}x{height}")
            log.info("Encoding %d image(s) of %dx%d in tiles (a whole encode needs %.1f GB, "
                     "%.1f GB free)", count, width, height,
                     footprint.encode_bytes(width, height, count) / GIB, budget / GIB)
            return torch.cat([encode_tiled(model.first_stage_model, images[i:i + 1], generator)
                              for i in range(count)])


def _refuse_above(budget: int, needed: int, what: str) -> None:
    if needed > budget:
        raise InsufficientMemoryError(what, needed, budget)


class _RunningJob:
    """Context manager: marks the memory this process holds at the start of a job."""

    def __init__(self, guard: MemoryGuard, device: torch.device) -> None:
        self.guard, self.device = guard, device

    def __enter__(self) -> None:
        with self.guard._lock:
            self.guard._held_at_start = (self.device, used_memory_bytes(self.device))

    def __exit__(self, *exc_info) -> None:
        with self.guard._lock:
            self.guard._held_at_start = None
