"""Tiled VAE decode and encode: bounded memory for images of any size.

The VAE's activations grow with the image (about 4 KB per output pixel for an SD VAE in fp32, so
a 2048x2048 decode needs ~16 GB). Here the image is processed in overlapping tiles whose results
are blended with linear ramps across the overlaps, so peak memory depends on the tile size only,
plus the output itself. Each tile normalises its own activations (GroupNorm), so the result is
close to, not equal to, a full decode; the overlap hides the seams.
"""
from __future__ import annotations

import torch

from modules.engine.vae import AutoencoderKL

LATENT_FACTOR = 8
DEFAULT_DECODE_TILE = 64        # latent cells (512 px)
DEFAULT_DECODE_OVERLAP = 16     # latent cells (128 px)
DEFAULT_ENCODE_TILE = 512       # pixels
DEFAULT_ENCODE_OVERLAP = 128    # pixels


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` covering [0, length) with at least `overlap` shared
    (an overlap of more than half a tile is taken as half a tile)."""
    if length <= tile:
        return [0]
    stride = tile - min(overlap, tile // 2)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(length: int, ramp: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1-D blend weights: rising over `ramp` samples at a start that meets another tile, falling
    at such an end, 1 elsewhere (never 0, so every pixel has weight)."""
    weights = torch.ones(length)
    steps = min(ramp, length)
    if steps > 0:
        edge = torch.arange(1, steps + 1, dtype=torch.float32) / (steps + 1)
        if ramp_start:
            weights[:steps] = torch.minimum(weights[:steps], edge)
        if ramp_end:
            weights[-steps:] = torch.minimum(weights[-steps:], edge.flip(0))
    return weights


def blend_tiles(source: torch.Tensor, tile: int, overlap: int, scale: float,
                out_channels: int, run_tile) -> torch.Tensor:
    """Run `run_tile` over overlapping tiles of `source` [B, C, H, W] and blend the results,
    which are `scale` times the tile's size, into one [B, out_channels, H*scale, W*scale]
    (float32). A source that fits in one tile is run whole."""
    batch, _, height, width = source.shape
    if height <= tile and width <= tile:
        return run_tile(source).float()
    out_h, out_w = round(height * scale), round(width * scale)
    output = None
    weight_sum = torch.zeros(1, 1, out_h, out_w, device=source.device)
    overlap = min(overlap, tile // 2)
    ramp = round(overlap * scale)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    for y in ys:
        for x in xs:
            result = run_tile(source[..., y:y + tile, x:x + tile]).float()
            if output is None:
                output = torch.zeros(batch, out_channels, out_h, out_w, device=source.device)
            top, left = round(y * scale), round(x * scale)
            tile_h, tile_w = result.shape[-2:]
            weight = (_ramp(tile_h, ramp, y > 0, y + tile < height)[:, None]
                      * _ramp(tile_w, ramp, x > 0, x + tile < width)[None, :]).to(source.device)
            output[..., top:top + tile_h, left:left + tile_w] += result * weight
            weight_sum[..., top:top + tile_h, left:left + tile_w] += weight
    assert output is not None
    return output / weight_sum


@torch.inference_mode()
def decode_tiled(vae: AutoencoderKL, latents: torch.Tensor, *, tile: int = DEFAULT_DECODE_TILE,
                 overlap: int = DEFAULT_DECODE_OVERLAP) -> torch.Tensor:
    """`vae.decode(latents)` in tiles of `tile` latent cells overlapping by `overlap`; float32."""
    return blend_tiles(latents, tile, overlap, LATENT_FACTOR, vae.config.out_channels,
                       vae.decode)


@torch.inference_mode()
def encode_tiled(vae: AutoencoderKL, images: torch.Tensor,
                 generator: torch.Generator | None = None, *, tile: int = DEFAULT_ENCODE_TILE,
                 overlap: int = DEFAULT_ENCODE_OVERLAP) -> torch.Tensor:
    """`vae.encode(images, generator)` in tiles of `tile` pixels overlapping by `overlap`: the
    latent distributions are blended, then sampled once for the whole image (float32)."""
    if images.shape[-2] <= tile and images.shape[-1] <= tile:
        return vae.encode(images, generator=generator).float()
    moments = blend_tiles(images, tile, overlap, 1 / LATENT_FACTOR, 2 * vae.config.embed_dim,
                          vae.encode_moments)
    return vae.sample_latents(moments, generator)
