"""What the outpainting scripts share: a larger canvas with the image placed in it, the mask of
the new area, and noise that matches the image's colours to start the new area from (Outpainting
mk2's "matched noise": its fall-off exponent shapes the noise's spectrum, lower = finer detail).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw

DIRECTIONS = ("left", "right", "up", "down")


@dataclass(frozen=True)
class Expansion:
    """Pixels added on each side."""
    left: int = 0
    right: int = 0
    up: int = 0
    down: int = 0

    @classmethod
    def of(cls, pixels: int, directions: Iterable[str]) -> "Expansion":
        chosen = {direction.strip().lower() for direction in directions}
        unknown = chosen - set(DIRECTIONS)
        if unknown:
            raise ValueError(f"Unknown outpainting direction {sorted(unknown)[0]!r}: "
                             f"{', '.join(DIRECTIONS)}")
        if not chosen:
            raise ValueError("Choose at least one outpainting direction")
        if pixels <= 0:
            raise ValueError(f"Pixels to expand must be above 0, got {pixels}")
        return cls(*(pixels if direction in chosen else 0 for direction in DIRECTIONS))

    def rounded_to(self, width: int, height: int, multiple: int) -> "Expansion":
        """The same sides grown so that the canvas is a multiple of `multiple` (A1111's poor
        man's outpainting: the extra is shared in proportion to what each side asked)."""
        target_w = math.ceil((width + self.left + self.right) / multiple) * multiple
        target_h = math.ceil((height + self.up + self.down) / multiple) * multiple

        def share(first: int, second: int, total: int) -> tuple[int, int]:
            """`total` px split like first : second (all to the second when neither asked:
            the rounding is then new area on the right / bottom, redrawn like the rest)."""
            grown_first = first * total // (first + second) if first else 0
            return grown_first, total - grown_first if second or not first else 0

        return Expansion(*share(self.left, self.right, target_w - width),
                         *share(self.up, self.down, target_h - height))


def expand_canvas(image: Image.Image, grow: Expansion,
                  background: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    canvas = Image.new("RGB", (image.width + grow.left + grow.right,
                               image.height + grow.up + grow.down), background)
    canvas.paste(image.convert("RGB"), (grow.left, grow.up))
    return canvas


def new_area_mask(size: tuple[int, int], grow: Expansion, inset: int = 0) -> Image.Image:
    """White where the canvas is new (and `inset` px into the image on the grown sides, where
    the seam is redrawn), black over the rest of the original image."""
    width, height = size
    mask = Image.new("L", size, 255)
    keep = (grow.left + (inset if grow.left else 0), grow.up + (inset if grow.up else 0),
            width - grow.right - (inset if grow.right else 0) - 1,
            height - grow.down - (inset if grow.down else 0) - 1)
    if keep[2] >= keep[0] and keep[3] >= keep[1]:
        ImageDraw.Draw(mask).rectangle(keep, fill=0)
    return mask


def matched_noise(image: Image.Image, mask: Image.Image, rng: np.random.Generator, *,
                  fall_off: float = 1.0, color_variation: float = 0.05) -> Image.Image:
    """`image` with its masked (white) area replaced by noise of the known area's colours:
    per channel the known mean and spread, noise whose spectrum falls off as 1 / f^fall_off
    (high values: smooth blobs, low: fine grain), and `color_variation` of independent colour
    noise on top. The known area is returned unchanged."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    new = np.asarray(mask.convert("L"), dtype=np.float64) / 255.0 > 0.5
    known = pixels[~new] if (~new).any() else pixels.reshape(-1, 3)
    mean, spread = known.mean(axis=0), known.std(axis=0) + 1e-3
    height, width = new.shape
    frequency = np.sqrt(np.fft.fftfreq(height)[:, None] ** 2 + np.fft.fftfreq(width)[None, :] ** 2)
    shaping = 1.0 / np.maximum(frequency, 1.0 / max(height, width)) ** max(0.0, fall_off)
    noise = np.empty_like(pixels)
    for channel in range(3):
        white = rng.standard_normal((height, width))
        shaped = np.real(np.fft.ifft2(np.fft.fft2(white) * shaping))
        shaped = (shaped - shaped.mean()) / (shaped.std() + 1e-8)
        noise[..., channel] = mean[channel] + spread[channel] * shaped
    noise += color_variation * rng.standard_normal(noise.shape)
    result = np.where(new[..., None], noise, pixels)
    return Image.fromarray((np.clip(result, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
