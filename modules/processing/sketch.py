"""The img2img tab's inputs turned into (init image, mask) as A1111's `img2img()` does, pure PIL.

Sub-tabs: img2img (the uploaded image), sketch / color sketch (what the user drew over the
image is the init image), inpaint (image + painted mask), inpaint sketch (colours painted on the
image: the painted pixels are the mask, the painted picture is the init image), inpaint upload
(an image and a separate mask image). The UI calls these; processing takes the result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from modules.processing.masks import create_binary_mask


@dataclass
class Img2ImgInputs:
    init_image: Image.Image
    mask: Image.Image | None = None


def composite_layers(background: Image.Image, layers: Sequence[Image.Image | None] = ()) -> Image.Image:
    """The drawing: transparent stroke layers composited over the background, RGBA."""
    composed = ImageOps.exif_transpose(background).convert("RGBA")
    for layer in layers:
        if layer is not None:
            composed.alpha_composite(layer.convert("RGBA").resize(composed.size))
    return composed


def img2img_inputs(image: Image.Image) -> Img2ImgInputs:
    return Img2ImgInputs(init_image=ImageOps.exif_transpose(image))


def sketch_inputs(background: Image.Image,
                  layers: Sequence[Image.Image | None] = ()) -> Img2ImgInputs:
    """Sketch and color sketch: the image with the strokes drawn on it is the init image."""
    return Img2ImgInputs(init_image=composite_layers(background, layers).convert("RGB"))


def strokes_mask(layers: Sequence[Image.Image | None], size: tuple[int, int]) -> Image.Image:
    """"L" mask of everything painted on the (transparent) stroke layers."""
    mask = Image.new("L", size, 0)
    for layer in layers:
        if layer is not None:
            alpha = layer.convert("RGBA").resize(size).getchannel("A")
            mask = Image.fromarray(np.maximum(np.asarray(mask), np.asarray(alpha)))
    return mask


def inpaint_inputs(image: Image.Image, mask: Image.Image) -> Img2ImgInputs:
    """Inpaint: the painted mask (RGBA strokes use their alpha) binarised at 128."""
    return Img2ImgInputs(init_image=ImageOps.exif_transpose(image),
                         mask=create_binary_mask(mask, round_mask=True))


def inpaint_sketch_inputs(sketch: Image.Image, original: Image.Image | None = None, *,
                          mask_alpha: float = 0.0, mask_blur: float = 4) -> Img2ImgInputs:
    """Inpaint sketch: the mask is every pixel where the sketch differs from the original;
    mask_alpha (0-100, "Mask transparency") weakens it; the init image is the sketch blended
    into the original through the blurred mask."""
    sketch = ImageOps.exif_transpose(sketch).convert("RGB")
    original = sketch if original is None else ImageOps.exif_transpose(original).convert("RGB")
    if original.size != sketch.size:
        original = original.resize(sketch.size)
    changed = np.any(np.asarray(sketch) != np.asarray(original), axis=-1)
    mask = Image.fromarray(changed.astype(np.uint8) * 255, "L")
    mask = ImageEnhance.Brightness(mask).enhance(1 - mask_alpha / 100)
    blur = ImageFilter.GaussianBlur(mask_blur)
    init_image = Image.composite(sketch.filter(blur), original, mask.filter(blur))
    return Img2ImgInputs(init_image=init_image, mask=mask)


def inpaint_upload_inputs(image: Image.Image, mask: Image.Image) -> Img2ImgInputs:
    """Inpaint upload: the image and a separate mask image, used as they are (processing
    binarises the mask and resizes it to the image)."""
    return Img2ImgInputs(init_image=ImageOps.exif_transpose(image), mask=mask)
