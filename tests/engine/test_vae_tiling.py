"""Tiled VAE decode / encode: exact assembly of the tiles, and on the demo model's trained VAE a
result whose difference from a whole decode is smaller than the VAE's own reconstruction error."""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from modules.demo.shapes_dataset import random_scene, render_scene
from modules.engine.sd_model import load_model
from modules.engine.vae_tiling import blend_tiles, decode_tiled, encode_tiled, tile_starts

DEMO = Path(__file__).resolve().parents[2] / "models" / "Stable-diffusion" / \
    "demo-shapes.safetensors"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Of images in [-1, 1]."""
    error = (a.clamp(-1, 1) - b.clamp(-1, 1)).pow(2).mean().item()
    return 10 * math.log10(4 / error)


def test_tiles_cover_the_image_with_the_overlap():
    assert tile_starts(50, 64, 16) == [0]
    starts = tile_starts(200, 64, 16)
    assert starts[0] == 0 and starts[-1] == 200 - 64
    assert all(later - earlier <= 64 - 16 for earlier, later in zip(starts, starts[1:]))


def test_blended_tiles_reassemble_a_tile_wise_function_exactly():
    latents = torch.rand(2, 4, 50, 70)

    def upsample(tile: torch.Tensor) -> torch.Tensor:       # what a decoder does to the size
        return torch.nn.functional.interpolate(tile, scale_factor=8, mode="nearest")[:, :3]

    assert torch.allclose(blend_tiles(latents, 16, 4, 8, 3, upsample), upsample(latents),
                          atol=1e-6)
    images = torch.rand(1, 3, 400, 560)

    def pool(tile: torch.Tensor) -> torch.Tensor:            # what an encoder does to the size
        return torch.nn.functional.avg_pool2d(tile, 8).repeat(1, 2, 1, 1)

    assert torch.allclose(blend_tiles(images, 128, 32, 1 / 8, 6, pool), pool(images),
                          atol=1e-6)


@pytest.fixture(scope="module")
def demo_vae():
    return load_model(DEMO).first_stage_model


@pytest.fixture(scope="module")
def scene_image() -> torch.Tensor:
    """A 384x384 mosaic of the demo model's own kind of picture, in [-1, 1]."""
    rng = random.Random(3)
    tiles = [np.asarray(render_scene(random_scene(rng), 128).convert("RGB")) for _ in range(9)]
    mosaic = np.concatenate([np.concatenate(tiles[row * 3:row * 3 + 3], axis=1)
                             for row in range(3)], axis=0)
    return torch.from_numpy(mosaic).permute(2, 0, 1)[None].float() / 127.5 - 1


@torch.inference_mode()
def test_tiled_decode_stays_closer_to_a_whole_decode_than_the_vae_to_its_input(demo_vae,
                                                                               scene_image):
    latents = demo_vae.encode(scene_image)
    whole = demo_vae.decode(latents)
    reconstruction = psnr(whole, scene_image)
    tiled = decode_tiled(demo_vae, latents, tile=16, overlap=8)      # 9 tiles of 128 px
    assert tiled.shape == whole.shape == (1, 3, 384, 384)
    assert psnr(tiled, whole) > reconstruction, (psnr(tiled, whole), reconstruction)
    # one tile that covers everything is the whole decode
    assert torch.equal(decode_tiled(demo_vae, latents, tile=48), whole.float())


@torch.inference_mode()
def test_tiled_encode_gives_latents_that_decode_like_the_whole_ones(demo_vae, scene_image):
    whole = demo_vae.decode(demo_vae.encode(scene_image))
    latents = encode_tiled(demo_vae, scene_image, tile=128, overlap=32)
    assert latents.shape == (1, 4, 48, 48)
    assert psnr(demo_vae.decode(latents), whole) > psnr(whole, scene_image)
    # sampled with a generator: the same seed gives the same latents
    first = encode_tiled(demo_vae, scene_image, torch.Generator().manual_seed(5), tile=128)
    again = encode_tiled(demo_vae, scene_image, torch.Generator().manual_seed(5), tile=128)
    assert torch.equal(first, again)
