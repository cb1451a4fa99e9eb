"""LDM AutoencoderKL: numerical parity with diffusers at tiny size, sampling, linear attention."""
from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL as DiffusersAutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

from modules.engine.configs import VAEConfig
from modules.engine.vae import AutoencoderKL

TINY_VAE = VAEConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, scaling_factor=0.13025)


def _random_vae(config: VAEConfig, seed: int) -> AutoencoderKL:
    torch.manual_seed(seed)
    vae = AutoencoderKL(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in vae.parameters():   # perturb so no layer stays at its trivial init
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return vae


def _diffusers_twin(vae: AutoencoderKL) -> DiffusersAutoencoderKL:
    config = vae.config
    levels = len(config.ch_mult)
    diffusers_config = dict(
        in_channels=config.in_channels, out_channels=config.out_channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(config.ch * mult for mult in config.ch_mult),
        layers_per_block=config.num_res_blocks, latent_channels=config.z_channels,
        norm_num_groups=32, scaling_factor=config.scaling_factor,
    )
    twin = DiffusersAutoencoderKL(**diffusers_config).eval()
    converted = convert_ldm_vae_checkpoint(vae.state_dict(), diffusers_config)
    twin.load_state_dict(converted, strict=True)
    return twin


@torch.no_grad()
def test_encode_and_decode_match_diffusers() -> None:
    vae = _random_vae(TINY_VAE, seed=0)
    twin = _diffusers_twin(vae)
    images = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1

    latents = vae.encode(images)
    expected_latents = twin.encode(images).latent_dist.mean * TINY_VAE.scaling_factor
    assert latents.shape == (2, 4, 12, 16)
    torch.testing.assert_close(latents, expected_latents, atol=1e-5, rtol=1e-4)

    decoded = vae.decode(latents)
    expected_images = twin.decode(latents / TINY_VAE.scaling_factor).sample
    assert decoded.shape == images.shape
    torch.testing.assert_close(decoded, expected_images, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_sampled_latent_uses_the_generator() -> None:
    vae = _random_vae(TINY_VAE, seed=2)
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    mean = vae.encode(images)
    sample_a = vae.encode(images, generator=torch.Generator().manual_seed(7))
    sample_b = vae.encode(images, generator=torch.Generator().manual_seed(7))
    sample_c = vae.encode(images, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(sample_a, sample_b, rtol=0, atol=0)
    assert not torch.allclose(sample_a, mean)
    assert not torch.allclose(sample_a, sample_c)

    twin = _diffusers_twin(vae)
    distribution = twin.encode(images).latent_dist
    expected = distribution.sample(generator=torch.Generator().manual_seed(7)) * TINY_VAE.scaling_factor
    torch.testing.assert_close(sample_a, expected, atol=1e-5, rtol=1e-4)


def test_decode_is_not_clamped() -> None:
    vae = _random_vae(TINY_VAE, seed=4)
    with torch.no_grad():
        vae.decoder.conv_out.bias.fill_(5.0)
        decoded = vae.decode(torch.zeros(1, 4, 4, 4))
    assert decoded.max() > 1.0


@torch.no_grad()
def test_linear_attention_layout_computes_the_same() -> None:
    conv_vae = _random_vae(TINY_VAE, seed=5)
    linear_vae = AutoencoderKL(VAEConfig(**{**TINY_VAE.__dict__, "attn_linear": True})).eval()
    converted = {key: value[:, :, 0, 0] if ".attn_1." in key and value.ndim == 4 else value
                 for key, value in conv_vae.state_dict().items()}
    linear_vae.load_state_dict(converted, strict=True)
    assert linear_vae.state_dict()["encoder.mid.attn_1.q.weight"].ndim == 2
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(linear_vae.encode(images), conv_vae.encode(images))
    latents = torch.randn(1, 4, 4, 4)
    torch.testing.assert_close(linear_vae.decode(latents), conv_vae.decode(latents))


@pytest.mark.parametrize("ch_mult,factor", [((1, 1, 1, 1), 8), ((1, 2), 2)])
def test_latent_reduction_follows_the_level_count(ch_mult: tuple[int, ...], factor: int) -> None:
    vae = AutoencoderKL(VAEConfig(ch=32, ch_mult=ch_mult, num_res_blocks=1)).eval()
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 64, 48))
        assert latents.shape == (1, 4, 64 // factor, 48 // factor)
        assert vae.decode(latents).shape == (1, 3, 64, 48)
