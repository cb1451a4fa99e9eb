"""LDSR's networks (issue 19): project.yaml → the architecture, the release's key layout loads
strictly, LDM's legacy self-attention, the VQ decode, and DDIM super-resolution to exactly 4x."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from modules.engine.ldsr import (LDSRError, ddim_timesteps, load_ldsr, parse_ldsr_config,
                                 super_resolution, upscale_4x)
from modules.engine.unet import AttentionBlock
from tests.ldsr_files import TINY_PROJECT_YAML, write_tiny_ldsr


@pytest.fixture(scope="module")
def ldsr(tmp_path_factory):
    weights = write_tiny_ldsr(tmp_path_factory.mktemp("LDSR"))
    return load_ldsr(weights, weights.with_name("project.yaml"))


def photo(size: tuple[int, int]) -> Image.Image:
    from skimage import data
    return Image.fromarray(data.astronaut()).resize(size, Image.Resampling.BICUBIC)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_the_release_yaml_gives_the_release_architecture():
    release = TINY_PROJECT_YAML.replace("model_channels: 32", "model_channels: 160") \
        .replace("- 2\n        num_res_blocks: 1", "- 16\n        - 8\n        num_res_blocks: 2") \
        .replace("        - 1\n        - 2\n        num_head_channels: 16",
                 "        - 1\n        - 2\n        - 2\n        - 4\n"
                 "        num_head_channels: 32")
    config = parse_ldsr_config(release)
    assert config.unet.model_channels == 160 and config.unet.channel_mult == (1, 2, 2, 4)
    assert config.unet.transformer_depth == (0, 0, 0, 1)     # attention where ds = 8 only
    assert config.unet.in_channels == 6 and config.unet.attention_block == "self"
    assert config.first_stage.double_z is False and config.codebook_size == 64
    assert (config.linear_start, config.linear_end) == (0.0015, 0.0155)


def test_the_checkpoint_loads_strictly_with_the_release_key_names(ldsr):
    names = set(ldsr.state_dict())
    assert "model.diffusion_model.input_blocks.3.1.qkv.weight" in names      # AttentionBlock
    assert "model.diffusion_model.middle_block.1.proj_out.weight" in names
    assert "first_stage_model.quantize.embedding.weight" in names
    assert "first_stage_model.quant_conv.weight" in names
    assert not any(name.startswith("cond_stage_model") for name in names)


def test_the_attention_block_is_ldms_legacy_head_order():
    torch.manual_seed(0)
    block = AttentionBlock(64, heads=4)
    for parameter in block.parameters():
        torch.nn.init.normal_(parameter, 0, 0.2)
    x = torch.randn(2, 64, 6, 5)
    flat = x.reshape(2, 64, -1)
    # QKVAttentionLegacy: [B, 3C, T] read as [B * heads, 3 * ch, T], split into q, k, v per head
    q, k, v = block.qkv(block.norm(flat)).reshape(2 * 4, 3 * 16, -1).split(16, dim=1)
    scale = 1 / math.sqrt(math.sqrt(16))
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
    attended = torch.einsum("bts,bcs->bct", weight, v).reshape(2, 64, -1)
    expected = (flat + block.proj_out(attended)).reshape(x.shape)
    assert torch.allclose(block(x), expected, atol=1e-5)


def test_decoding_snaps_the_latent_to_the_codebook(ldsr):
    vq = ldsr.first_stage_model
    codebook = vq.quantize.embedding.weight
    chosen = codebook[torch.tensor([[3, 7], [11, 60]])].permute(2, 0, 1)[None]
    nudged = chosen + 1e-3 * torch.randn_like(chosen)
    with torch.no_grad():
        assert torch.equal(vq.quantize(nudged), chosen)


def test_the_output_is_exactly_four_times_any_size(ldsr):
    for size in ((37, 29), (70, 131)):
        assert upscale_4x(ldsr, photo(size), 2).size == (size[0] * 4, size[1] * 4)


def test_the_same_input_repeats_and_the_step_count_changes_the_output(ldsr):
    source = photo((40, 32))
    first, again = upscale_4x(ldsr, source, 3), upscale_4x(ldsr, source, 3)
    assert np.array_equal(pixels(first), pixels(again))
    more_steps = upscale_4x(ldsr, source, 6)
    assert np.abs(pixels(first) - pixels(more_steps)).mean() > 1.0
    other_image = upscale_4x(ldsr, photo((40, 32)).rotate(90), 3)
    assert not np.array_equal(pixels(first), pixels(other_image))


def test_a_smaller_scale_shrinks_the_input_first(ldsr):
    assert super_resolution(ldsr, photo((40, 32)), 2.0, 2).size == (80, 64)


def test_ddim_timesteps_are_ldms_uniform_spacing():
    assert ddim_timesteps(100, 1000)[:3] == [1, 11, 21] and len(ddim_timesteps(100, 1000)) == 100
    assert ddim_timesteps(3, 1000) == [1, 334, 667]
    with pytest.raises(LDSRError, match="steps must be between 1 and 500"):
        ddim_timesteps(0, 1000)


def test_missing_or_wrong_files_are_clear_errors(tmp_path):
    weights = write_tiny_ldsr(tmp_path / "no-yaml", with_yaml=False)
    with pytest.raises(LDSRError, match="project.yaml.*missing"):
        load_ldsr(weights, weights.with_name("project.yaml"))
    (tmp_path / "wide").mkdir()
    wide = tmp_path / "wide" / "project.yaml"
    wide.write_text(TINY_PROJECT_YAML.replace("model_channels: 32", "model_channels: 64"))
    with pytest.raises(LDSRError, match="does not fit project.yaml"):
        load_ldsr(weights, wide)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  params: {}\n")
    with pytest.raises(LDSRError, match="project.yaml"):
        load_ldsr(weights, bad)


def test_a_large_latent_is_decoded_in_tiles_close_to_whole(ldsr):
    latents = torch.randn(1, 3, 136, 136, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = ldsr.first_stage_model.decode(latents).float()
        tiled = ldsr.decode(latents)
    assert tiled.shape == whole.shape == (1, 3, 544, 544)
    difference = (tiled - whole).abs()
    assert difference.mean() < 0.01 and difference.max() < 0.2
