"""Upscalers as data (A1111's `shared.sd_upscalers` and `shared.latent_upscale_modes`).

Two tables: the latent upscale modes of hires fix (torch `interpolate` mode + antialias) and the
image upscalers ("None", "Lanczos", "Nearest" built in; model-based ones such as ESRGAN join later
by being added to an `UpscalerRegistry`). The API listings (/sdapi/v1/upscalers,
/sdapi/v1/latent-upscale-modes) and the UI dropdowns are derived from the same records.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from PIL import Image

#: an upscaler's own step: (image, scale factor) → a larger image (any size near image * scale)
UpscaleFunction = Callable[[Image.Image, float], Image.Image]

DEFAULT_LATENT_MODE = "Latent"    # what hires fix uses when hr_upscaler is null
DEFAULT_UPSCALER_SCALE = 4.0      # A1111's UpscalerData default, reported by /upscalers


@dataclass(frozen=True)
class LatentUpscaleMode:
    name: str
    mode: str            # torch.nn.functional.interpolate mode
    antialias: bool

    def upscale(self, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """[B, C, h, w] latents → [B, C, height, width] (latent units)."""
        # antialias is only implemented for float32 bilinear/bicubic on every backend
        resized = torch.nn.functional.interpolate(latents.float(), size=(height, width),
                                                  mode=self.mode, antialias=self.antialias)
        return resized.to(latents.dtype)


LATENT_UPSCALE_MODES: tuple[LatentUpscaleMode, ...] = (
    LatentUpscaleMode("Latent", "bilinear", False),
    LatentUpscaleMode("Latent (antialiased)", "bilinear", True),
    LatentUpscaleMode("Latent (bicubic)", "bicubic", False),
    LatentUpscaleMode("Latent (bicubic antialiased)", "bicubic", True),
    LatentUpscaleMode("Latent (nearest)", "nearest", False),
    LatentUpscaleMode("Latent (nearest-exact)", "nearest-exact", False),
)


def _pil_resize(resample: Image.Resampling) -> UpscaleFunction:
    def upscale(image: Image.Image, scale: float) -> Image.Image:
        return image.resize((int(image.width * scale), int(image.height * scale)),
                            resample=resample)
    return upscale


@dataclass(frozen=True)
class UpscalerInfo:
    """One entry of /sdapi/v1/upscalers. `upscale` is None for "None" (a plain Lanczos resize)."""
    name: str
    upscale: UpscaleFunction | None
    scale: float = DEFAULT_UPSCALER_SCALE
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    #: a neural upscaler reaches large factors by running several times (A1111: at most 3)
    max_passes: int = 1

    def api_item(self) -> dict:
        return {"name": self.name, "model_name": self.model_name, "model_path": self.model_path,
                "model_url": self.model_url, "scale": self.scale}


BUILTIN_UPSCALERS: tuple[UpscalerInfo, ...] = (
    UpscalerInfo("None", None),
    UpscalerInfo("Lanczos", _pil_resize(Image.Resampling.LANCZOS)),
    UpscalerInfo("Nearest", _pil_resize(Image.Resampling.NEAREST)),
)


def _find_by_name(items: Iterable, name: str):
    items = list(items)
    for item in items:
        if item.name == name:
            return item
    lowered = name.lower()
    return next((item for item in items if item.name.lower() == lowered), None)


class UpscalerRegistry:
    """The image upscalers available to a process: the built-ins, then the registered models."""

    def __init__(self, extra: Iterable[UpscalerInfo] = ()) -> None:
        self._upscalers: list[UpscalerInfo] = list(BUILTIN_UPSCALERS)
        for upscaler in extra:
            self.register(upscaler)

    def register(self, upscaler: UpscalerInfo) -> None:
        if any(existing.name == upscaler.name for existing in self._upscalers):
            raise ValueError(f"an upscaler named {upscaler.name!r} is already registered")
        self._upscalers.append(upscaler)

    def list(self) -> list[UpscalerInfo]:
        return list(self._upscalers)

    def names(self) -> list[str]:
        return [upscaler.name for upscaler in self._upscalers]

    def find(self, name: str | None) -> UpscalerInfo | None:
        """Exact name first, then case-insensitive (A1111 matches exactly)."""
        return _find_by_name(self._upscalers, name) if name else None

    def resize(self, image: Image.Image, width: int, height: int,
               upscaler_name: str | None) -> Image.Image:
        """A1111 `images.resize_image(0, …)`: upscale with the named upscaler when the image has to
        grow, then a Lanczos resize to exactly width x height. "None"/None = Lanczos only."""
        upscaler = self.find(upscaler_name) if upscaler_name not in (None, "None") else None
        if upscaler_name not in (None, "None") and upscaler is None:
            raise ValueError(f"could not find upscaler named {upscaler_name}")
        scale = max(width / image.width, height / image.height)
        if upscaler is not None and upscaler.upscale is not None and scale > 1.0:
            image = upscale_by(image, scale, upscaler)
        if image.size != (width, height):
            image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
        return image


def upscale_by(image: Image.Image, scale: float, upscaler: UpscalerInfo) -> Image.Image:
    """A1111 `Upscaler.upscale`: run the upscaler until the image reaches `scale` times its size
    (a model of fixed factor may run several times), then Lanczos to the exact size."""
    if upscaler.upscale is None:
        return image
    target = (int(image.width * scale), int(image.height * scale))
    for _ in range(max(1, upscaler.max_passes)):
        if image.width >= target[0] and image.height >= target[1]:
            break
        remaining = max(target[0] / image.width, target[1] / image.height)
        image = upscaler.upscale(image, remaining)
    if image.size != target:
        image = image.resize(target, resample=Image.Resampling.LANCZOS)
    return image


def latent_upscale_modes() -> tuple[LatentUpscaleMode, ...]:
    return LATENT_UPSCALE_MODES


def find_latent_upscale_mode(name: str | None) -> LatentUpscaleMode | None:
    return _find_by_name(LATENT_UPSCALE_MODES, name) if name else None


def upscalers(registry: UpscalerRegistry | None = None) -> list[UpscalerInfo]:
    """The image upscalers of `registry` (the built-ins when none is given)."""
    return (registry or UpscalerRegistry()).list()


def upscalers_api_list(registry: UpscalerRegistry | None = None) -> list[dict]:
    return [upscaler.api_item() for upscaler in upscalers(registry)]


def latent_upscale_modes_api_list() -> list[dict]:
    return [{"name": mode.name} for mode in LATENT_UPSCALE_MODES]


def hires_upscaler_choices(registry: UpscalerRegistry | None = None) -> list[str]:
    """The hires upscaler dropdown: latent modes first, then the image upscalers (as A1111)."""
    return [mode.name for mode in LATENT_UPSCALE_MODES] + [u.name for u in upscalers(registry)]
