"""A1111's img2img resize modes and transparency flattening, on small synthetic images."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.processing.resize import flatten_transparency, resize_image


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = (255, 0, 0)
    array[:, width // 2:] = (0, 0, 255)
    return Image.fromarray(array)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
@pytest.mark.parametrize("size", [(40, 40), (64, 24), (16, 48)])
def test_every_mode_gives_the_requested_size(mode, size):
    assert resize_image(mode, halves(60, 30), *size).size == size


def test_just_resize_stretches():
    out = np.asarray(resize_image(0, halves(60, 30), 40, 40))
    assert tuple(out[20, 2]) == (255, 0, 0) and tuple(out[20, 37]) == (0, 0, 255)


def test_crop_and_resize_covers_and_crops_the_sides():
    # 2:1 into 1:1: scaled to 80x40, centre 40 columns kept -> half red, half blue still
    out = np.asarray(resize_image(1, halves(60, 30), 40, 40))
    assert tuple(out[20, 2]) == (255, 0, 0) and tuple(out[20, 37]) == (0, 0, 255)
    # a tall target crops width: only the centre band survives
    out = np.asarray(resize_image(1, halves(60, 30), 10, 40))
    assert out.shape == (40, 10, 3)
    assert out[:, :, 0].mean() > 50 and out[:, :, 2].mean() > 50


def test_resize_and_fill_extends_edges_into_the_bands():
    image = Image.new("RGB", (40, 20), (10, 200, 30))
    out = np.asarray(resize_image(2, image, 40, 40))
    # fitted 40x20 in the middle, top and bottom bands stretched from the edge rows: no black
    assert np.abs(out.astype(int) - (10, 200, 30)).max() <= 2


def test_masks_stay_single_channel():
    mask = Image.new("L", (30, 10), 255)
    assert resize_image(1, mask, 20, 20).mode == "L"


def test_flatten_transparency_uses_the_background_colour():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 255, 0, 255))
    flat = flatten_transparency(image, "#0000ff")
    assert flat.mode == "RGB"
    assert flat.getpixel((0, 0)) == (0, 255, 0) and flat.getpixel((3, 3)) == (0, 0, 255)
    assert flatten_transparency(Image.new("RGB", (2, 2), "white")).getpixel((1, 1)) == (255, 255, 255)
