"""Infotext key order (a1111-compat.md §5.2): keys a mode reports through `extra` keep A1111's
fixed slots; the rest follow in insertion order, Version last."""
from __future__ import annotations

from modules.app.option_defs import default_option_definitions
from modules.app.options import Options
from modules.processing.generation_info import InfotextSource, generation_params


def test_extra_keys_with_fixed_slots_land_in_them():
    source = InfotextSource(
        steps=20, sampler_name="Euler", scheduler_label="Automatic", cfg_scale=7.0, width=512,
        height=512, model_hash="0123456789", model_name="m", denoising_strength=0.75,
        clip_skip=2, face_restoration="CodeFormer",
        extra={"Mask blur": 4, "Conditional mask weight": 1.0, "Image CFG scale": 1.5,
               "ENSD": 31337, "Hires upscale": 2.0})
    params = generation_params(source, Options(default_option_definitions()), seed=1, subseed=2)
    present = [key for key, value in params.items() if value is not None]
    assert present == ["Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed",
                       "Face restoration", "Size", "Model hash", "Model", "Denoising strength",
                       "Conditional mask weight", "Clip skip", "ENSD", "Mask blur",
                       "Hires upscale", "Version"]
