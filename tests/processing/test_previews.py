"""Live previews: the cheap latent→RGB map per architecture, every preview method with its
fallbacks, the every-N-steps cadence, and failures that never reach the sampler."""
from __future__ import annotations

import logging

import pytest
import torch

from modules.jobs.progress import JobProgress
from modules.processing.previews import LivePreviews, PreviewRenderer, cheap_approximation
from tests.engine.test_taesd import write_tiny_taesd


def _unit_latent(channel: int, size: int = 2) -> torch.Tensor:
    latent = torch.zeros(1, 4, size, size)
    latent[:, channel] = 1.0
    return latent


def test_cheap_approximation_uses_each_architectures_factors():
    sd = cheap_approximation(_unit_latent(0), is_sdxl=False)
    sdxl = cheap_approximation(_unit_latent(0), is_sdxl=True)
    assert sd.shape == (1, 3, 2, 2)
    # channel 0 alone maps to its row of factors, then [-1, 1] → [0, 1]
    assert torch.allclose(sd[0, :, 0, 0], (torch.tensor([0.298, 0.207, 0.208]) + 1) / 2)
    assert torch.allclose(sdxl[0, :, 1, 1], (torch.tensor([0.3448, 0.4168, 0.4395]) + 1) / 2)
    # the fourth SD channel pushes towards blue-negative (dark yellow)
    fourth = cheap_approximation(_unit_latent(3) * 4, is_sdxl=False)[0, :, 0, 0]
    assert torch.allclose(fourth, torch.tensor([0.132, 0.0, 0.0]), atol=1e-6)
    with pytest.raises(ValueError, match="4 latent channels"):
        cheap_approximation(torch.zeros(1, 16, 2, 2), is_sdxl=False)


def _full_decode_red(latent: torch.Tensor) -> torch.Tensor:
    pixels = torch.zeros(latent.shape[0], 3, latent.shape[2] * 8, latent.shape[3] * 8)
    pixels[:, 0] = 1.0
    return pixels


def _renderer(method: str, folder=None, **kwargs) -> PreviewRenderer:
    return PreviewRenderer(method, is_sdxl=False, full_decode=_full_decode_red,
                           vae_approx_folder=folder, **kwargs)


def test_full_method_uses_the_models_vae():
    image = _renderer("Full").render(torch.zeros(1, 4, 3, 2))
    assert image.size == (16, 24) and image.getpixel((5, 5)) == (255, 0, 0)


def test_cheap_and_approx_nn_render_at_latent_size():
    for method in ("Approx cheap", "Approx NN"):
        renderer = _renderer(method)
        image = renderer.render(_unit_latent(0, size=4))
        assert renderer.method_for(_unit_latent(0)) == "Approx cheap"
        assert image.size == (4, 4)
        assert image.getpixel((0, 0)) == tuple(round((f + 1) / 2 * 255)
                                               for f in (0.298, 0.207, 0.208))


def test_taesd_method_uses_the_decoder_from_vae_approx(tmp_path):
    write_tiny_taesd(tmp_path / "taesd_decoder.safetensors", output_bias=(0.0, 1.0, 0.0))
    renderer = _renderer("TAESD", tmp_path)
    image = renderer.render(torch.randn(1, 4, 2, 3))
    assert renderer.method_for(torch.zeros(1, 4, 1, 1)) == "TAESD"
    assert image.size == (24, 16) and image.getpixel((3, 3)) == (0, 255, 0)


def test_taesd_without_weights_falls_back_to_cheap(tmp_path, caplog):
    write_tiny_taesd(tmp_path / "taesd_decoder.safetensors")   # SD file, but the model is SDXL
    renderer = PreviewRenderer("TAESD", is_sdxl=True, full_decode=_full_decode_red,
                               vae_approx_folder=tmp_path)
    with caplog.at_level(logging.WARNING):
        image = renderer.render(torch.zeros(1, 4, 2, 2))
    assert renderer.method_for(torch.zeros(1, 4, 2, 2)) == "Approx cheap"
    assert image.size == (2, 2)
    assert "taesdxl" in caplog.text


def test_batch_preview_is_a_grid_or_the_first_image():
    latent = torch.zeros(2, 4, 2, 2)
    assert _renderer("Full", as_grid=True).render(latent).size == (32, 16)
    assert _renderer("Full", as_grid=False).render(latent).size == (16, 16)


def test_previews_every_n_steps_restart_with_each_sub_job():
    progress = JobProgress()
    progress.begin(2)
    rendered: list[tuple[int, int]] = []
    renderer = _renderer("Approx cheap")
    original_render = renderer.render
    renderer.render = lambda latent: (rendered.append((progress.job_no, progress.sampling_step)),
                                      original_render(latent))[1]
    progress.set_step_listener(LivePreviews(renderer, progress, every_n_steps=3))
    for job in range(2):
        if job:
            progress.next_job()
        for index in range(7):
            progress.on_sampler_step(index, 7, torch.zeros(1, 4, 2, 2))
    assert rendered == [(0, 3), (0, 6), (1, 3), (1, 6)]
    assert progress.id_live_preview == 4 and progress.current_image.size == (2, 2)


def test_every_step_when_period_is_zero():
    progress = JobProgress()
    progress.begin(1)
    progress.set_step_listener(LivePreviews(_renderer("Approx cheap"), progress, every_n_steps=0))
    for index in range(4):
        progress.on_sampler_step(index, 4, torch.zeros(1, 4, 2, 2))
    assert progress.id_live_preview == 4


def test_a_failing_preview_never_stops_sampling(caplog):
    progress = JobProgress()
    progress.begin(1)
    broken = PreviewRenderer("Full", is_sdxl=False, full_decode=lambda latent: 1 / 0)
    progress.set_step_listener(LivePreviews(broken, progress, every_n_steps=1))
    with caplog.at_level(logging.ERROR):
        for index in range(5):
            progress.on_sampler_step(index, 5, torch.zeros(1, 4, 2, 2))
    assert progress.sampling_step == 5 and progress.current_image is None
    assert caplog.text.count("live preview failed") == 1    # logged once, not every step
