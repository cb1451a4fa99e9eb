"""Inpainting mask preparation: binarising, alpha masks, blur, crop regions, fill, overlays."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from modules.processing.masks import (blur_mask, create_binary_mask, expand_crop_region,
                                      fill_masked_area, get_crop_region, latent_mask_tensor,
                                      overlay_for, paste_back)


def square(size=(32, 32), box=(8, 8, 15, 15), value=255) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=value)
    return mask


def test_binary_mask_thresholds_at_128():
    grey = Image.new("L", (2, 1))
    grey.putpixel((0, 0), 128)
    grey.putpixel((1, 0), 129)
    assert list(create_binary_mask(grey).getdata()) == [0, 255]
    assert list(create_binary_mask(grey, round_mask=False).getdata()) == [128, 129]


def test_rgba_mask_with_transparency_uses_alpha_opaque_uses_luminance():
    strokes = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    strokes.putpixel((1, 0), (0, 0, 0, 255))      # black but painted
    assert list(create_binary_mask(strokes).getdata()) == [0, 255]
    opaque = Image.new("RGBA", (2, 1), (0, 0, 0, 255))
    opaque.putpixel((1, 0), (255, 255, 255, 255))
    assert list(create_binary_mask(opaque).getdata()) == [0, 255]


def test_blur_is_separable_and_directional():
    mask = square()
    horizontal = np.asarray(blur_mask(mask, 3, 0))
    assert horizontal[11, 6] > 0 and horizontal[5, 11] == 0      # spreads along x only
    vertical = np.asarray(blur_mask(mask, 0, 3))
    assert vertical[5, 11] > 0 and vertical[11, 6] == 0
    assert np.array_equal(np.asarray(blur_mask(mask, 0, 0)), np.asarray(mask))


def test_crop_region_with_padding_and_blank_mask():
    assert get_crop_region(square()) == (8, 8, 16, 16)
    assert get_crop_region(square(), padding=4) == (4, 4, 20, 20)
    assert get_crop_region(square(), padding=100) == (0, 0, 32, 32)
    assert get_crop_region(Image.new("L", (8, 8))) is None


def test_expand_crop_region_matches_the_processing_aspect():
    # a 16x4 region processed at 64x64 grows to 16x16, centred, inside the image
    assert expand_crop_region((8, 14, 24, 18), 64, 64, 32, 32) == (8, 8, 24, 24)
    # near the bottom edge it is shifted up instead of leaving the image
    x1, y1, x2, y2 = expand_crop_region((8, 28, 24, 32), 64, 64, 32, 32)
    assert (y2, y2 - y1, x2 - x1) == (32, 16, 16)
    # a tall region processed wide grows horizontally
    assert expand_crop_region((10, 0, 14, 8), 64, 32, 32, 32) == (4, 0, 20, 8)


def test_fill_paints_the_hole_from_its_surroundings():
    image = Image.new("RGB", (32, 32), (200, 40, 40))
    ImageDraw.Draw(image).rectangle((8, 8, 15, 15), fill=(0, 0, 255))
    filled = np.asarray(fill_masked_area(image, square()))
    assert np.abs(filled[12, 12].astype(int) - (200, 40, 40)).max() <= 3   # blue hole gone
    assert tuple(filled[0, 0]) == (200, 40, 40)


def test_latent_mask_resolution_and_rounding():
    tensor = latent_mask_tensor(square(box=(8, 8, 23, 23)), 4, 4)
    assert tensor.shape == (1, 1, 4, 4)
    assert tensor[0, 0, 1:3, 1:3].eq(1).all() and tensor[0, 0, 0, 0] == 0
    assert set(tensor.unique().tolist()) <= {0.0, 1.0}


def test_overlay_and_paste_back_keep_unmasked_pixels():
    original = Image.new("RGB", (32, 32), (10, 20, 30))
    generated = Image.new("RGB", (32, 32), (250, 250, 250))
    result = np.asarray(paste_back(generated, overlay_for(original, square()), None))
    assert tuple(result[0, 0]) == (10, 20, 30) and tuple(result[12, 12]) == (250, 250, 250)
    # "only masked": a 16x16 result scaled into its box of the original-size canvas
    small = Image.new("RGB", (64, 64), (250, 250, 250))
    result = np.asarray(paste_back(small, overlay_for(original, square()), (4, 4, 20, 20)))
    assert result.shape == (32, 32, 3)
    assert tuple(result[12, 12]) == (250, 250, 250) and tuple(result[30, 30]) == (10, 20, 30)
