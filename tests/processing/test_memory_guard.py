"""The memory guard: its estimates hold on full-size networks, a job that cannot fit is refused
with both numbers, and the VAE is run whole, image by image or in tiles as the free memory
allows (the same images either way, up to the tiles' blending)."""
from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

import pytest
import torch

from modules.engine.detection import detect_model_config
from modules.engine.sd_model import load_model
from modules.engine.unet import UNetModel
from modules.engine.vae import AutoencoderKL
from modules.processing.memory_guard import (GIB, MIB, InsufficientMemoryError, JobShape,
                                             MemoryGuard, ModelFootprint)
from tests.ref_models import load_ref

DEMO = Path(__file__).resolve().parents[2] / "models" / "Stable-diffusion" / \
    "demo-shapes.safetensors"


def _status_bytes(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1)) * 1024


def peak_bytes_of(work) -> int:
    """How far above the current resident size `work()` took this process (kernel's VmHWM)."""
    before = _status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    work()
    return _status_bytes("VmHWM") - before


def zero_weight(module_class, config) -> torch.nn.Module:
    with torch.device("meta"):
        module = module_class(config)
    module = module.to_empty(device="cpu").requires_grad_(False)
    for tensor in module.parameters():
        tensor.zero_()
    return module.eval()


@pytest.fixture(scope="module")
def sd15_config():
    shapes = load_ref("sd15")["tensors"]
    return detect_model_config({key: torch.empty(shape, device="meta")
                                for key, shape in shapes.items()})


@pytest.mark.slow
@torch.inference_mode()
def test_estimates_cover_what_full_size_sd15_networks_take(sd15_config):
    """Measured here, not assumed: the peak of a full-size SD1.5 VAE decode / encode and UNet
    step stays under the guard's estimate (and within 2x of it: not absurdly cautious)."""
    footprint = ModelFootprint(unet_channels=320, vae_channels=128)
    vae = zero_weight(AutoencoderKL, sd15_config.vae)
    decode = peak_bytes_of(functools.partial(vae.decode, torch.zeros(1, 4, 48, 48)))
    encode = peak_bytes_of(functools.partial(vae.encode, torch.zeros(1, 3, 384, 384)))
    vae = None       # freed before the UNet is built
    unet = zero_weight(UNetModel, sd15_config.unet)
    step = peak_bytes_of(functools.partial(unet, torch.zeros(2, 4, 48, 48),
                                           torch.tensor([500., 500.]), torch.zeros(2, 77, 768)))
    for what, measured, estimate in (("decode", decode, footprint.decode_bytes(384, 384, 1)),
                                     ("encode", encode, footprint.encode_bytes(384, 384, 1)),
                                     ("unet", step, footprint.unet_bytes(384, 384, 1))):
        assert measured <= estimate <= 2 * measured + 256 * MIB, \
            (what, measured / MIB, estimate / MIB)


def test_a_job_that_cannot_fit_is_refused_with_both_numbers():
    guard = MemoryGuard(reserve_bytes=lambda: 0)
    footprint = ModelFootprint()
    device = torch.device("cpu")
    available = guard.budget(device)
    with pytest.raises(InsufficientMemoryError) as caught:
        guard.check(footprint, JobShape(((4096, 4096),), 32), device)
    message = str(caught.value)
    assert "sampling 32 image(s) of 4096x4096" in message
    assert f"{footprint.unet_bytes(4096, 4096, 32) / GIB:.1f} GB" in message
    assert caught.value.needed > caught.value.available
    assert abs(caught.value.available - available) < 2 * GIB     # the free memory of now
    # what fits in tiles is admitted: a 4096x4096 image is decoded in tiles on any machine
    guard.check(footprint, JobShape(((512, 512), (4096, 4096)), 1), device,
                available=footprint.unet_bytes(4096, 4096, 1)
                + footprint.result_bytes(4096, 4096, 1) + 64 * MIB)


@pytest.fixture(scope="module")
def demo_model():
    return load_model(DEMO)


@pytest.fixture(scope="module")
def two_latents(demo_model) -> torch.Tensor:
    """Two 768x768 latents of a real picture and their whole decode."""
    from skimage import data
    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    photo = torch.nn.functional.interpolate(photo, size=(768, 768), mode="bilinear")
    with torch.inference_mode():
        latents = demo_model.encode_first_stage(photo * 2 - 1).repeat(2, 1, 1, 1)
    return latents


@pytest.mark.parametrize("free_gib, expected", [(64.0, None), (1.0, "one at a time"),
                                                (0.45, "in tiles")])
def test_decode_runs_whole_per_image_or_tiled_as_memory_allows(demo_model, two_latents, caplog,
                                                               free_gib, expected):
    """Free memory is what the guard is told (its `free_bytes` reading); the rest is real.
    The demo model's estimates: 0.75 GB an image whole, 0.42 GB in tiles."""
    guard = MemoryGuard(reserve_bytes=lambda: 0, free_bytes=lambda device: int(free_gib * GIB))
    with caplog.at_level(logging.INFO, logger="modules.processing.memory_guard"):
        images = guard.decode(demo_model, two_latents)
    assert images.shape == (2, 3, 768, 768)
    assert 0.0 <= images.min() and images.max() <= 1.0
    logged = " ".join(record.getMessage() for record in caplog.records)
    if expected is None:
        assert "Decoding" not in logged
    else:
        assert expected in logged, logged
    if expected is not None:
        whole = MemoryGuard(free_bytes=lambda device: 64 * GIB).decode(demo_model, two_latents)
        assert (images - whole).abs().mean() < 0.05


def test_decode_refuses_when_not_even_a_tile_fits(demo_model):
    guard = MemoryGuard(reserve_bytes=lambda: 0, free_bytes=lambda device: 64 * MIB)
    with pytest.raises(InsufficientMemoryError, match="decoding an image of 512x512"):
        guard.decode(demo_model, torch.zeros(1, 4, 64, 64))


def test_the_finished_images_of_a_long_job_count_too():
    """800 images of 4096x4096 pass every size limit, but would be held until the job ends."""
    guard = MemoryGuard(reserve_bytes=lambda: 0, free_bytes=lambda device: 24 * GIB)
    footprint = ModelFootprint(unet_channels=32, vae_channels=32)     # a tiny model
    with pytest.raises(InsufficientMemoryError, match="keeping 800 image"):
        guard.check(footprint, JobShape(((4096, 4096),), 8, images=800), torch.device("cpu"))
    guard.check(footprint, JobShape(((512, 512),), 8, images=800), torch.device("cpu"))
