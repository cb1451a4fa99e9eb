"""The upscaler registry and the latent upscale modes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules.processing.upscalers import (LATENT_UPSCALE_MODES, UpscalerInfo, UpscalerRegistry,
                                          find_latent_upscale_mode, hires_upscaler_choices,
                                          latent_upscale_modes_api_list, upscalers_api_list)


def test_api_listings_in_a1111_order():
    assert [item["name"] for item in upscalers_api_list()] == ["None", "Lanczos", "Nearest"]
    assert upscalers_api_list()[1] == {"name": "Lanczos", "model_name": None, "model_path": None,
                                       "model_url": None, "scale": 4.0}
    assert [m["name"] for m in latent_upscale_modes_api_list()] == [
        "Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
        "Latent (nearest)", "Latent (nearest-exact)"]
    assert hires_upscaler_choices()[:7] == ["Latent", "Latent (antialiased)", "Latent (bicubic)",
                                            "Latent (bicubic antialiased)", "Latent (nearest)",
                                            "Latent (nearest-exact)", "None"]


@pytest.mark.parametrize("mode", LATENT_UPSCALE_MODES, ids=lambda m: m.name)
def test_every_latent_mode_resizes(mode):
    latents = torch.randn(2, 4, 8, 6, generator=torch.Generator().manual_seed(0))
    out = mode.upscale(latents, 16, 12)
    assert out.shape == (2, 4, 16, 12) and out.dtype == latents.dtype
    expected = torch.nn.functional.interpolate(latents, size=(16, 12), mode=mode.mode,
                                               antialias=mode.antialias)
    assert torch.allclose(out, expected)
    if mode.mode.startswith("nearest"):   # nearest modes copy values, never blend them
        assert set(out.unique().tolist()) <= set(latents.unique().tolist())


def test_mode_lookup_is_exact_then_case_insensitive():
    assert find_latent_upscale_mode("Latent (bicubic)").mode == "bicubic"
    assert find_latent_upscale_mode("latent (nearest-exact)").mode == "nearest-exact"
    assert find_latent_upscale_mode("Lanczos") is None


def _checker() -> Image.Image:
    pixels = (np.indices((4, 4)).sum(axis=0) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.stack([pixels] * 3, axis=-1))


def test_nearest_keeps_hard_edges_lanczos_smooths():
    registry = UpscalerRegistry()
    nearest = np.asarray(registry.resize(_checker(), 16, 16, "Nearest"))
    lanczos = np.asarray(registry.resize(_checker(), 16, 16, "Lanczos"))
    assert nearest.shape == lanczos.shape == (16, 16, 3)
    assert set(np.unique(nearest)) == {0, 255}
    assert len(np.unique(lanczos)) > 2
    assert np.array_equal(np.asarray(registry.resize(_checker(), 16, 16, "None")), lanczos)


def test_unknown_upscaler_is_named():
    with pytest.raises(ValueError, match="ESRGAN_9x"):
        UpscalerRegistry().resize(_checker(), 8, 8, "ESRGAN_9x")


def test_registered_model_upscaler_runs_until_the_size_is_reached():
    calls = []

    def double(image: Image.Image, scale: float) -> Image.Image:
        calls.append(scale)
        return image.resize((image.width * 2, image.height * 2), Image.Resampling.NEAREST)

    registry = UpscalerRegistry([UpscalerInfo("2x model", double, scale=2.0, max_passes=3,
                                              model_path="/models/2x.pth")])
    assert registry.names() == ["None", "Lanczos", "Nearest", "2x model"]
    out = registry.resize(_checker(), 24, 24, "2x model")
    assert out.size == (24, 24) and len(calls) == 3    # 4 → 8 → 16 → 32, then Lanczos to 24
    with pytest.raises(ValueError, match="already registered"):
        registry.register(UpscalerInfo("Lanczos", None))
    assert upscalers_api_list(registry)[-1]["model_path"] == "/models/2x.pth"
