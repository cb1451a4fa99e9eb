"""The img2img tab's inputs composited as A1111 does (sketch, inpaint, inpaint sketch, upload)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from modules.processing.sketch import (inpaint_inputs, inpaint_sketch_inputs,
                                       inpaint_upload_inputs, sketch_inputs, strokes_mask)


def strokes(size=(16, 16)) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((4, 4, 7, 7), fill=(255, 0, 0, 255))
    return layer


def test_sketch_draws_strokes_onto_the_init_image():
    background = Image.new("RGB", (16, 16), (0, 0, 255))
    inputs = sketch_inputs(background, [strokes(), None])
    assert inputs.mask is None and inputs.init_image.mode == "RGB"
    assert inputs.init_image.getpixel((5, 5)) == (255, 0, 0)
    assert inputs.init_image.getpixel((12, 12)) == (0, 0, 255)


def test_inpaint_mask_from_painted_alpha():
    inputs = inpaint_inputs(Image.new("RGB", (16, 16)), strokes())
    mask = np.asarray(inputs.mask)
    assert mask[5, 5] == 255 and mask[12, 12] == 0
    assert np.asarray(strokes_mask([strokes()], (16, 16)))[5, 5] == 255


def test_inpaint_sketch_masks_the_changed_pixels():
    original = Image.new("RGB", (16, 16), (0, 0, 255))
    sketch = original.copy()
    ImageDraw.Draw(sketch).rectangle((4, 4, 7, 7), fill=(255, 0, 0))
    inputs = inpaint_sketch_inputs(sketch, original, mask_alpha=0, mask_blur=0)
    mask = np.asarray(inputs.mask)
    assert mask[5, 5] == 255 and mask[12, 12] == 0 and mask.sum() == 16 * 255
    assert inputs.init_image.getpixel((5, 5)) == (255, 0, 0)
    assert inputs.init_image.getpixel((12, 12)) == (0, 0, 255)
    weaker = inpaint_sketch_inputs(sketch, original, mask_alpha=50, mask_blur=0)
    assert 120 <= np.asarray(weaker.mask)[5, 5] <= 130


def test_inpaint_upload_keeps_the_separate_mask():
    mask = Image.new("L", (8, 8), 255)
    inputs = inpaint_upload_inputs(Image.new("RGB", (16, 16)), mask)
    assert inputs.mask is mask and inputs.init_image.size == (16, 16)
