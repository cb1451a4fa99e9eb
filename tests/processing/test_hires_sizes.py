"""A1111's hires-fix size rules (a1111-compat.md §11.1)."""
from __future__ import annotations

import torch

from modules.processing.hires import hires_size, old_hires_first_pass_size, plan_hires_size
from modules.processing.params import GenerationParams


def test_scale_multiplies_the_first_pass():
    size = hires_size(512, 768, 1.5, 0, 0)
    assert (size.upscale_width, size.upscale_height) == (768, 1152)
    assert (size.target_width, size.target_height) == (768, 1152)
    assert size.infotext == {"Hires upscale": 1.5}


def test_resize_to_one_side_keeps_the_aspect_ratio():
    only_x = hires_size(512, 768, 2.0, 1024, 0)
    assert (only_x.target_width, only_x.target_height) == (1024, 1536)
    assert only_x.infotext == {"Hires resize": "1024x0"}
    only_y = hires_size(512, 768, 2.0, 0, 1000)
    assert (only_y.upscale_width, only_y.upscale_height) == (666, 1000)


def test_resize_to_both_covers_then_crops_the_centre():
    # 512x512 to 1024x768: cover = 1024x1024, crop (1024 - 768) // 8 = 32 latent rows
    size = hires_size(512, 512, 2.0, 1024, 768)
    assert (size.upscale_width, size.upscale_height) == (1024, 1024)
    assert (size.crop_x, size.crop_y) == (0, 32)
    assert (size.target_width, size.target_height) == (1024, 768)
    latents = torch.arange(128.0).reshape(1, 1, 128, 1).expand(1, 1, 128, 128)
    cropped = size.crop_latents(latents)
    assert cropped.shape[-2:] == (96, 128)
    assert cropped[0, 0, 0, 0] == 16 and cropped[0, 0, -1, 0] == 111


def test_odd_crop_takes_the_extra_cell_at_the_end():
    size = hires_size(64, 72, 2.0, 128, 128)   # cover 128x144 → crop 2 rows
    latents = torch.arange(18.0).reshape(1, 1, 18, 1).expand(1, 1, 18, 16)
    assert size.crop_y == 2
    assert size.crop_latents(latents)[0, 0, :, 0].tolist() == list(range(1, 17))
    wide = hires_size(64, 64, 2.0, 128, 104)   # crop 3 rows: 1 at the top, 2 at the bottom
    latents = torch.arange(16.0).reshape(1, 1, 16, 1).expand(1, 1, 16, 16)
    assert wide.crop_latents(latents)[0, 0, :, 0].tolist() == list(range(1, 14))


def test_legacy_firstphase_fields_make_width_height_the_target():
    params = GenerationParams(width=1024, height=768, firstphase_width=512, firstphase_height=384,
                              enable_hr=True)
    size = plan_hires_size(params, use_old_hires_fix_width_height=False)
    assert (size.first_width, size.first_height) == (512, 384)
    assert (size.target_width, size.target_height) == (1024, 768)
    assert size.infotext == {"Hires resize": "1024x768"}


def test_old_hires_option_picks_a_first_pass_near_512_squared():
    assert old_hires_first_pass_size(1024, 1024) == (512, 512)
    assert old_hires_first_pass_size(1920, 1080) == (704, 384)
    params = GenerationParams(width=1024, height=1024, enable_hr=True)
    size = plan_hires_size(params, use_old_hires_fix_width_height=True)
    assert (size.first_width, size.first_height, size.target_width) == (512, 512, 1024)
    plain = plan_hires_size(params, use_old_hires_fix_width_height=False)
    assert (plain.first_width, plain.target_width) == (1024, 2048)


def test_first_pass_size_is_rounded_like_the_plan():
    size = plan_hires_size(GenerationParams(width=100, height=70, hr_scale=2.0), False)
    assert (size.first_width, size.first_height) == (96, 64)
    assert (size.target_width, size.target_height) == (192, 128)
