"""Inpainting end to end on tiny checkpoints: pixels outside the mask come back unchanged for
every masked-content mode and inpaint area, the 9-channel conditioning path, masks of another
size, RGBA / inverted masks, and the infotext keys in A1111's order."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.processing.infotext import parse_generation_parameters
from tests.integration.test_img2img import img2img, make_init_image, pixels

BOX = (20, 16, 44, 40)            # the painted (repaint) square of the masks below


def square_mask(size: tuple[int, int] = (64, 64), box: tuple[int, int, int, int] = BOX,
                mode: str = "L") -> Image.Image:
    mask = Image.new(mode, size, 0)
    ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
    return mask


def inside(box: tuple[int, int, int, int], size: tuple[int, int] = (64, 64)) -> np.ndarray:
    selected = np.zeros((size[1], size[0]), dtype=bool)
    selected[box[1]:box[3], box[0]:box[2]] = True
    return selected


@pytest.mark.parametrize("inpainting_fill", [0, 1, 2, 3])
@pytest.mark.parametrize("only_masked", [False, True])
def test_pixels_outside_the_mask_are_unchanged(app_ctx, inpainting_fill, only_masked):
    init = make_init_image()
    result = img2img(app_ctx, "tiny-sd1", mask=square_mask(), mask_blur=0,
                     inpainting_fill=inpainting_fill, inpaint_full_res=only_masked,
                     inpaint_full_res_padding=4, denoising_strength=0.9, steps=3)
    output = pixels(result.images[0])
    assert result.images[0].size == (64, 64)
    masked = inside(BOX)
    assert np.array_equal(output[~masked], pixels(init)[~masked])
    assert np.abs(output[masked] - pixels(init)[masked]).mean() > 5


def test_blurred_mask_keeps_pixels_beyond_the_blur(app_ctx):
    init = make_init_image()
    result = img2img(app_ctx, "tiny-sd1", mask=square_mask(), mask_blur=2,
                     inpaint_full_res=False, denoising_strength=0.9, steps=3)
    far = ~inside((BOX[0] - 8, BOX[1] - 8, BOX[2] + 8, BOX[3] + 8))
    assert np.array_equal(pixels(result.images[0])[far], pixels(init)[far])


def test_only_masked_keeps_the_init_size_and_infotext_order(app_ctx):
    init = make_init_image(96, 80)
    result = img2img(app_ctx, "tiny-sd1", init_images=[init], mask=square_mask((96, 80)),
                     mask_blur=4, inpainting_fill=2, inpaint_full_res=True,
                     inpaint_full_res_padding=8, denoising_strength=0.75, steps=2)
    assert result.images[0].size == (96, 80)            # pasted back into the original
    assert (result.width, result.height) == (64, 64)    # processed at the request size
    text = result.infotexts[0]
    parsed = parse_generation_parameters(text)
    assert parsed["Mask blur"] == "4"
    assert parsed["Inpaint area"] == "Only masked"
    assert parsed["Masked area padding"] == "8"
    assert parsed["Masked content"] == "latent noise"
    keys = ["Denoising strength", "Mask blur", "Inpaint area", "Masked area padding",
            "Masked content"]
    positions = [text.index(key + ":") for key in keys]
    assert positions == sorted(positions)


def test_whole_picture_original_content_writes_no_masked_content(app_ctx):
    result = img2img(app_ctx, "tiny-sd1", mask=square_mask(), inpainting_fill=1,
                     inpaint_full_res=False, steps=2)
    parsed = parse_generation_parameters(result.infotexts[0])
    # "original" and "Whole picture" are the defaults A1111 leaves out of the infotext
    assert "Masked content" not in result.infotexts[0]
    assert "Inpaint area" not in result.infotexts[0]
    assert parsed["Mask blur"] == "4"


def test_inverted_mask_repaints_the_outside(app_ctx):
    init = make_init_image()
    result = img2img(app_ctx, "tiny-sd1", mask=square_mask(), mask_blur=0,
                     inpainting_mask_invert=1, inpaint_full_res=False,
                     denoising_strength=0.9, steps=2)
    masked = inside(BOX)
    output = pixels(result.images[0])
    assert np.array_equal(output[masked], pixels(init)[masked])
    assert "Mask mode: Inpaint not masked" in result.infotexts[0]


def test_rgba_mask_uses_its_alpha(app_ctx):
    init = make_init_image()
    # opaque black everywhere except a painted (opaque) square: luminance says nothing is
    # masked, the alpha channel says the square is
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).rectangle((BOX[0], BOX[1], BOX[2] - 1, BOX[3] - 1), fill=(0, 0, 0, 255))
    result = img2img(app_ctx, "tiny-sd1", mask=rgba, mask_blur=0, inpaint_full_res=False,
                     denoising_strength=0.9, steps=2)
    masked = inside(BOX)
    output = pixels(result.images[0])
    assert np.array_equal(output[~masked], pixels(init)[~masked])
    assert np.abs(output[masked] - pixels(init)[masked]).mean() > 5


def test_mask_of_another_size_is_resized_to_the_init_image(app_ctx):
    init = make_init_image()
    half_box = tuple(v // 2 for v in BOX)
    small_mask = square_mask((32, 32), half_box)
    result = img2img(app_ctx, "tiny-sd1", mask=small_mask, mask_blur=0,
                     inpaint_full_res=False, denoising_strength=0.9, steps=2)
    output = pixels(result.images[0])
    # Lanczos (3 lobes) softens the upscaled edge by up to 3 source = 6 output pixels
    far = ~inside((BOX[0] - 7, BOX[1] - 7, BOX[2] + 7, BOX[3] + 7))
    core = inside((BOX[0] + 3, BOX[1] + 3, BOX[2] - 3, BOX[3] - 3))
    assert np.array_equal(output[far], pixels(init)[far])
    assert np.abs(output[core] - pixels(init)[core]).mean() > 5


def test_latent_mask_limits_what_the_sampler_regenerates(app_ctx):
    init = make_init_image()
    small_latent_box = (BOX[0], BOX[1], BOX[0] + 8, BOX[1] + 8)
    with_latent_mask = img2img(app_ctx, "tiny-sd1", mask=square_mask(), mask_blur=0,
                               latent_mask=square_mask(box=small_latent_box),
                               inpaint_full_res=False, denoising_strength=0.9, steps=2)
    plain = img2img(app_ctx, "tiny-sd1", mask=square_mask(), mask_blur=0,
                    inpaint_full_res=False, denoising_strength=0.9, steps=2)
    assert not np.array_equal(pixels(with_latent_mask.images[0]), pixels(plain.images[0]))
    masked = inside(BOX)
    assert np.array_equal(pixels(with_latent_mask.images[0])[~masked], pixels(init)[~masked])


def test_inpainting_model_gets_mask_and_masked_image_channels(app_ctx):
    model = app_ctx.model_manager.get("tiny-sd1_inpaint").model
    seen = []
    original_apply = model.apply_model

    def recording_apply(x, t, crossattn, vector=None, concat=None):
        seen.append((x.shape[1], None if concat is None else concat.detach().clone()))
        return original_apply(x, t, crossattn, vector=vector, concat=concat)

    model.apply_model = recording_apply    # an instance attribute, removed below
    try:
        result = img2img(app_ctx, "tiny-sd1_inpaint", mask=square_mask(), mask_blur=0,
                         inpaint_full_res=False, denoising_strength=0.9, steps=2)
    finally:
        del model.apply_model
    assert result.is_using_inpainting_conditioning
    assert seen
    for latent_channels, concat in seen:
        assert latent_channels + concat.shape[1] == 9       # what the 9-channel UNet receives
        latent_mask = concat[0, 0]
        # nearest-neighbour downsampling of the pixel mask: the square's latent cells are 1
        assert latent_mask.sum() > 0 and float(latent_mask[3, 3]) == 1.0
        assert float(latent_mask[0, 0]) == 0.0
    parsed = parse_generation_parameters(result.infotexts[0])
    assert parsed["Conditional mask weight"] == "1.0"
    masked = inside(BOX)
    assert np.array_equal(pixels(result.images[0])[~masked],
                          pixels(make_init_image())[~masked])
