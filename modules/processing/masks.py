"""Inpainting masks as A1111 prepares them: binarising, blur, the "only masked" crop region,
the masked-content fill, the latent mask, and the overlay that puts original pixels back outside
the mask. White (255) = repaint."""
from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from modules.processing.resize import CROP_AND_RESIZE, resize_image

CropRegion = tuple[int, int, int, int]          # x1, y1, x2, y2 (PIL box)

# (gaussian radius, times composited): coarse blurs first, then ever finer ones on top
_FILL_PASSES = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))


def create_binary_mask(mask: Image.Image, round_mask: bool = True) -> Image.Image:
    """An "L" mask. An RGBA mask whose alpha is not fully opaque uses its alpha channel (painted
    strokes), anything else its luminance; `round_mask` thresholds at 128."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        grey = mask.getchannel("A")
    else:
        grey = mask.convert("L")
    if round_mask:
        grey = grey.point(lambda value: 255 if value > 128 else 0)
    return grey


def _blur_kernel_size(sigma: float) -> int:
    # A1111 sizes the kernel to ~2.5 sigma on each side
    return 2 * int(2.5 * sigma + 0.5) + 1


def blur_mask(mask: Image.Image, blur_x: float, blur_y: float) -> Image.Image:
    """Separable gaussian blur of an "L" mask (horizontal `blur_x`, vertical `blur_y` sigma)."""
    array = np.array(mask.convert("L"))
    if blur_x > 0:
        array = cv2.GaussianBlur(array, (_blur_kernel_size(blur_x), 1), blur_x)
    if blur_y > 0:
        array = cv2.GaussianBlur(array, (1, _blur_kernel_size(blur_y)), blur_y)
    return Image.fromarray(array)


def get_crop_region(mask: Image.Image, padding: int = 0) -> CropRegion | None:
    """Bounding box of the non-zero mask pixels grown by `padding` (clamped to the image), or
    None when nothing is masked."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    if not padding:
        return box
    return (max(x1 - padding, 0), max(y1 - padding, 0),
            min(x2 + padding, mask.width), min(y2 + padding, mask.height))


def _grow_span(low: int, high: int, wanted: float, limit: int) -> tuple[int, int]:
    """Grow [low, high) symmetrically to about `wanted` long, shifted back inside [0, limit)."""
    extra = int(wanted - (high - low))
    low -= extra // 2
    high += extra - extra // 2
    if high >= limit:
        low -= high - limit
        high = limit
    if low < 0:
        high -= low
        low = 0
    return low, min(high, limit)


def expand_crop_region(region: CropRegion, processing_width: int, processing_height: int,
                       image_width: int, image_height: int) -> CropRegion:
    """Grow the crop region to the aspect ratio it will be processed at (a 128x32 mask region
    processed at 512x512 becomes 128x128), staying inside the image where possible."""
    x1, y1, x2, y2 = region
    processing_ratio = processing_width / processing_height
    if (x2 - x1) / (y2 - y1) > processing_ratio:
        y1, y2 = _grow_span(y1, y2, (x2 - x1) / processing_ratio, image_height)
    else:
        x1, x2 = _grow_span(x1, x2, (y2 - y1) * processing_ratio, image_width)
    return x1, y1, x2, y2


def fill_masked_area(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Masked content "fill": the masked area painted from the surrounding colours, by stacking
    ever less blurred copies of the unmasked pixels (premultiplied alpha keeps the masked hole
    from darkening the blur)."""
    keep = ImageOps.invert(mask.convert("L").resize(image.size))
    unmasked = Image.new("RGBa", image.size)
    unmasked.paste(image.convert("RGBA").convert("RGBa"), mask=keep)
    filled = Image.new("RGBA", image.size)
    for radius, repeats in _FILL_PASSES:
        blurred = unmasked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    return filled.convert("RGB")


def latent_mask_tensor(mask: Image.Image, latent_width: int, latent_height: int,
                       round_mask: bool = True) -> torch.Tensor:
    """The mask at latent resolution, [1, 1, h, w] float in [0, 1] (1 = regenerate)."""
    small = mask.convert("L").resize((latent_width, latent_height), resample=Image.Resampling.BICUBIC)
    values = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)
    if round_mask:
        values = values.round()
    return values[None, None]


def pixel_mask_tensor(mask: Image.Image, round_mask: bool = True) -> torch.Tensor:
    """The mask at pixel resolution, [1, 1, H, W] float in [0, 1] (inpainting conditioning)."""
    values = torch.from_numpy(np.asarray(mask.convert("L"), dtype=np.float32) / 255.0)
    if round_mask:
        values = values.round()
    return values[None, None]


def overlay_for(image: Image.Image, overlay_mask: Image.Image) -> Image.Image:
    """RGBA copy of the original image that is opaque where the overlay mask is 0 (keep) and
    transparent where it is 255 (repainted); composited over the result at the end."""
    overlay = Image.new("RGBa", image.size)
    keep = ImageOps.invert(overlay_mask.convert("L").resize(image.size))
    overlay.paste(image.convert("RGBA").convert("RGBa"), mask=keep)
    return overlay.convert("RGBA")


def paste_back(result: Image.Image, overlay: Image.Image | None,
               paste_box: CropRegion | None) -> Image.Image:
    """The final image: an "only masked" result scaled into its crop box on a canvas of the
    original size, then the original pixels composited on top outside the mask."""
    if overlay is None:
        return result
    if paste_box is not None:
        x1, y1, x2, y2 = paste_box
        canvas = Image.new("RGBA", overlay.size)
        canvas.paste(resize_image(CROP_AND_RESIZE, result, x2 - x1, y2 - y1), (x1, y1))
        result = canvas
    composed = result.convert("RGBA")
    composed.alpha_composite(overlay)
    return composed.convert("RGB")
