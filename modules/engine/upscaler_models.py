"""Neural image upscalers from the user's model files (ESRGAN, Real-ESRGAN and its compact
net, SwinIR, Swin2SR, SCUNet, DAT, HAT, … — whatever spandrel and spandrel_extra_arches
recognise), architecture and scale read from the weights; run over overlapping tiles so a
large image fits in memory.

Files are read by our own safe readers (safetensors; pickles with `weights_only=True`) and the
state dict handed to spandrel, which unwraps `params_ema` / `params` and builds the network.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import spandrel
import spandrel_extra_arches
import torch
from PIL import Image

from modules.engine.checkpoint_io import CheckpointLoadError, read_weights_file

UPSCALER_EXTENSIONS = (".pth", ".pt", ".safetensors", ".ckpt", ".bin")


class UpscalerModelError(ValueError):
    """A file spandrel cannot read as an image-to-image model (the message says why)."""


def _loader(device: torch.device | str) -> spandrel.ModelLoader:
    # the extra architectures join in a registry of our own: spandrel's global one stays as is
    registry = spandrel.ArchRegistry()
    registry.add(*spandrel.MAIN_REGISTRY)
    registry.add(*spandrel_extra_arches.EXTRA_REGISTRY, ignore_duplicates=True)
    return spandrel.ModelLoader(device, registry=registry)


def read_upscaler_weights(path: Path, *, allow_unsafe_pickle: bool = False) -> dict:
    try:
        return read_weights_file(path, allow_unsafe_pickle=allow_unsafe_pickle)
    except CheckpointLoadError as error:
        raise UpscalerModelError(error.reason) from error


def load_image_model(path: Path, device: torch.device | str = "cpu", *,
                     dtype: torch.dtype = torch.float32,
                     allow_unsafe_pickle: bool = False) -> spandrel.ImageModelDescriptor:
    """The file's network (any image-to-image model spandrel knows), in eval mode on `device`;
    in `dtype` when it is float16 or bfloat16 and the architecture supports it (spandrel says
    which do), else float32."""
    state = read_upscaler_weights(path, allow_unsafe_pickle=allow_unsafe_pickle)
    try:
        descriptor = _loader(device).load_from_state_dict(state)
    except (spandrel.UnsupportedModelError, KeyError, RuntimeError, ValueError) as error:
        raise UpscalerModelError(f"not a model spandrel knows ({error})") from error
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UpscalerModelError(f"a {descriptor.purpose} model, not an image-to-image model")
    if dtype == torch.float16 and descriptor.supports_half:
        descriptor.half()
    elif dtype == torch.bfloat16 and descriptor.supports_bfloat16:
        descriptor.bfloat16()
    return descriptor.eval()


def load_upscaler(path: Path, device: torch.device | str = "cpu", *,
                  dtype: torch.dtype = torch.float32,
                  allow_unsafe_pickle: bool = False) -> spandrel.ImageModelDescriptor:
    """`load_image_model` for upscalers: face restorers (GFPGAN, CodeFormer…) and inpainting
    models are refused, since they do not take a whole image."""
    descriptor = load_image_model(path, device, dtype=dtype,
                                  allow_unsafe_pickle=allow_unsafe_pickle)
    if descriptor.purpose not in ("SR", "Restoration"):
        raise UpscalerModelError(f"a {descriptor.architecture.name} {descriptor.purpose} model, "
                                 "not an upscaler")
    return descriptor


@dataclass(frozen=True)
class Tiling:
    size: int = 192          # A1111's ESRGAN_tile (0: the whole image at once)
    overlap: int = 8         # A1111's ESRGAN_tile_overlap


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    array = tensor[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


@torch.inference_mode()
def run_tiled(descriptor: spandrel.ImageModelDescriptor, pixels: torch.Tensor,
              tiling: Tiling) -> torch.Tensor:
    """[1, 3, H, W] in [0, 1] → [1, 3, H·s, W·s]. Tiles of `tiling.size` overlap by
    `tiling.overlap` pixels; where they overlap, each is weighted by a linear ramp so seams
    blend (size 0: one call on the whole image)."""
    scale = descriptor.scale
    dtype = next(descriptor.model.parameters()).dtype
    device = descriptor.device
    height, width = pixels.shape[-2:]
    if tiling.size <= 0 or (height <= tiling.size and width <= tiling.size):
        return descriptor(pixels.to(device, dtype)).float().cpu()
    tile, overlap = tiling.size, min(tiling.overlap, tiling.size // 2)
    out = torch.zeros(1, 3, height * scale, width * scale)
    weight = torch.zeros(1, 1, height * scale, width * scale)
    for top in _starts(height, tile, overlap):
        for left in _starts(width, tile, overlap):
            piece = pixels[..., top:top + tile, left:left + tile]
            result = descriptor(piece.to(device, dtype)).float().cpu()
            ramp = _ramp(result.shape[-2:], overlap * scale,
                         (top > 0, top + tile < height, left > 0, left + tile < width))
            rows = slice(top * scale, top * scale + result.shape[-2])
            cols = slice(left * scale, left * scale + result.shape[-1])
            out[..., rows, cols] += result * ramp
            weight[..., rows, cols] += ramp
    return out / weight


def _ramp(shape: torch.Size, width: int, inner_edges: tuple[bool, bool, bool, bool]
          ) -> torch.Tensor:
    """A tile's blending weight: 1 inside, rising linearly over `width` pixels at each edge that
    borders another tile (top, bottom, left, right)."""
    height, wide = shape
    ys, xs = torch.ones(height), torch.ones(wide)
    if width > 0:
        rise = (torch.arange(width, dtype=torch.float32) + 1) / (width + 1)
        top, bottom, left, right = inner_edges
        if top:
            ys[:width] = torch.minimum(ys[:width], rise)
        if bottom:
            ys[-width:] = torch.minimum(ys[-width:], rise.flip(0))
        if left:
            xs[:width] = torch.minimum(xs[:width], rise)
        if right:
            xs[-width:] = torch.minimum(xs[-width:], rise.flip(0))
    return (ys[:, None] * xs[None, :])[None, None]


def upscale_image(descriptor: spandrel.ImageModelDescriptor, image: Image.Image,
                  tiling: Tiling = Tiling()) -> Image.Image:
    """One pass of the model: the image at its scale (RGB)."""
    return tensor_to_image(run_tiled(descriptor, image_to_tensor(image), tiling))
