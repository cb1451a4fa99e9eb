"""img2img resize modes (A1111's `images.resize_image`) and flattening of transparent inputs.

Modes: 0 just resize (stretch), 1 crop and resize (cover, centre crop), 2 resize and fill
(fit, then extend the edge rows / columns into the empty bands), 3 just resize (latent upscale):
A1111 resizes the init image in latent space for mode 3; as a pixel resize it behaves like 2.
"""
from __future__ import annotations

from typing import Callable

from PIL import Image

JUST_RESIZE, CROP_AND_RESIZE, RESIZE_AND_FILL, LATENT_RESIZE = 0, 1, 2, 3
RESIZE_MODE_NAMES = ("Just resize", "Crop and resize", "Resize and fill",
                     "Just resize (latent upscale)")

#: optional upscaler for enlargements: (image, width, height) -> image (opts.upscaler_for_img2img)
Upscaler = Callable[[Image.Image, int, int], Image.Image]


def _resize(image: Image.Image, width: int, height: int, upscaler: Upscaler | None) -> Image.Image:
    """Lanczos resize; an upscaler (if given) handles enlargements of colour images first."""
    enlarging = width > image.width or height > image.height
    if upscaler is not None and enlarging and image.mode != "L":
        image = upscaler(image, width, height)
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
    return image


def _canvas_like(image: Image.Image, width: int, height: int) -> Image.Image:
    # A1111 pastes onto a black RGB canvas; masks ("L") keep their mode here
    return Image.new("L" if image.mode == "L" else "RGB", (width, height))


def resize_image(resize_mode: int, image: Image.Image, width: int, height: int,
                 upscaler: Upscaler | None = None) -> Image.Image:
    """`image` brought to exactly width x height with A1111's resize mode semantics."""
    if resize_mode == JUST_RESIZE:
        return _resize(image, width, height, upscaler)

    target_ratio = width / height
    source_ratio = image.width / image.height
    if resize_mode == CROP_AND_RESIZE:
        # scale so the image covers the target, centre it, let the canvas crop the overflow
        scaled_w = width if target_ratio > source_ratio else image.width * height // image.height
        scaled_h = height if target_ratio <= source_ratio else image.height * width // image.width
        scaled = _resize(image, scaled_w, scaled_h, upscaler)
        result = _canvas_like(image, width, height)
        result.paste(scaled, box=(width // 2 - scaled_w // 2, height // 2 - scaled_h // 2))
        return result

    # resize and fill: fit inside the target, then stretch the outermost pixel rows / columns
    # over the empty bands on both sides
    scaled_w = width if target_ratio < source_ratio else image.width * height // image.height
    scaled_h = height if target_ratio >= source_ratio else image.height * width // image.width
    scaled = _resize(image, scaled_w, scaled_h, upscaler)
    result = _canvas_like(image, width, height)
    result.paste(scaled, box=(width // 2 - scaled_w // 2, height // 2 - scaled_h // 2))
    if target_ratio < source_ratio:
        band = height // 2 - scaled_h // 2
        if band > 0:
            top_row = scaled.resize((width, band), box=(0, 0, width, 0))
            bottom_row = scaled.resize((width, band), box=(0, scaled.height, width, scaled.height))
            result.paste(top_row, box=(0, 0))
            result.paste(bottom_row, box=(0, band + scaled_h))
    elif target_ratio > source_ratio:
        band = width // 2 - scaled_w // 2
        if band > 0:
            left_column = scaled.resize((band, height), box=(0, 0, 0, height))
            right_column = scaled.resize((band, height),
                                         box=(scaled.width, 0, scaled.width, height))
            result.paste(left_column, box=(0, 0))
            result.paste(right_column, box=(band + scaled_w, 0))
    return result


def flatten_transparency(image: Image.Image, background_color: str = "#ffffff") -> Image.Image:
    """RGB image with transparent parts painted over `background_color`
    (A1111's `images.flatten`, opts.img2img_background_color)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, background_color)
        background.paste(image, mask=image)
        image = background
    return image.convert("RGB")
