"""UNetModel: exact LDM key layout of real checkpoints and numerical parity with diffusers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from modules.engine.attention import attention, attention_reference
from modules.engine.configs import UNetConfig
from modules.engine.unet import UNetModel, timestep_embedding

REF_DIR = Path("/work/shared/ref")
UNET_PREFIX = "model.diffusion_model."

FULL_SIZE_CONFIGS = {
    "sd15": UNetConfig(),
    "sd15_inpaint": UNetConfig(in_channels=9),
    "sd21_v": UNetConfig(context_dim=1024, num_head_channels=64, use_linear_in_transformer=True),
    "sdxl_base": UNetConfig(
        channel_mult=(1, 2, 4),
        transformer_depth=(0, 2, 10),
        transformer_depth_middle=10,
        transformer_depth_output=(10, 10, 10, 2, 2, 2, 0, 0, 0),
        context_dim=2048,
        num_head_channels=64,
        use_linear_in_transformer=True,
        adm_in_channels=2816,
    ),
}


@pytest.mark.parametrize("ref_name", sorted(FULL_SIZE_CONFIGS))
def test_full_size_state_dict_matches_real_checkpoint(ref_name: str) -> None:
    ref = json.loads((REF_DIR / f"{ref_name}.json").read_text())
    expected = {
        key[len(UNET_PREFIX):]: tuple(shape)
        for key, shape in ref["tensors"].items()
        if key.startswith(UNET_PREFIX)
    }
    with torch.device("meta"):
        model = UNetModel(FULL_SIZE_CONFIGS[ref_name])
    got = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}

    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong_shape = sorted(
        f"{key}: ours {got[key]} vs file {expected[key]}"
        for key in set(expected) & set(got)
        if got[key] != expected[key]
    )
    assert not (missing or unexpected or wrong_shape), (
        f"missing {missing[:20]}\nunexpected {unexpected[:20]}\nwrong shape {wrong_shape[:20]}"
    )
    # and a real file's tensors load strictly (meta tensors stand in for the file)
    fake_file = {key: torch.empty(shape, device="meta") for key, shape in expected.items()}
    model.load_state_dict(fake_file, strict=True, assign=True)


def test_sdxl_output_depth_derived_from_levels_matches_explicit() -> None:
    explicit = FULL_SIZE_CONFIGS["sdxl_base"]
    derived = UNetConfig(**{**explicit.__dict__, "transformer_depth_output": None})
    with torch.device("meta"):
        shapes_explicit = {k: v.shape for k, v in UNetModel(explicit).state_dict().items()}
        shapes_derived = {k: v.shape for k, v in UNetModel(derived).state_dict().items()}
    assert shapes_explicit == shapes_derived


def test_sdxl_refiner_layout() -> None:
    config = UNetConfig(
        model_channels=384,
        channel_mult=(1, 2, 4, 4),
        transformer_depth=(0, 4, 4, 0),
        transformer_depth_middle=4,
        context_dim=1280,
        num_head_channels=64,
        use_linear_in_transformer=True,
        adm_in_channels=2560,
    )
    with torch.device("meta"):
        state = UNetModel(config).state_dict()
    assert state["label_emb.0.0.weight"].shape == (1536, 2560)
    assert state["input_blocks.4.1.transformer_blocks.3.attn2.to_k.weight"].shape == (768, 1280)
    assert state["middle_block.1.transformer_blocks.3.ff.net.0.proj.weight"].shape == (12288, 1536)
    assert "input_blocks.1.1.norm.weight" not in state  # level 0 has no attention
    assert "output_blocks.0.1.norm.weight" not in state  # nor the deepest level
    assert state["output_blocks.5.2.conv.weight"].shape == (1536, 1536, 3, 3)
    assert state["out.2.weight"].shape == (4, 384, 3, 3)


def test_timestep_embedding_is_cos_then_sin() -> None:
    emb = timestep_embedding(torch.tensor([0.0, 2.5]), 8)
    assert emb.shape == (2, 8) and emb.dtype == torch.float32
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(4) / 4)
    torch.testing.assert_close(emb[1, :4], torch.cos(2.5 * freqs))
    torch.testing.assert_close(emb[1, 4:], torch.sin(2.5 * freqs))
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))


def test_attention_matches_reference_softmax() -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 10, 24, generator=gen)
    kv = torch.randn(2, 7, 24, generator=gen)
    out = attention(q, kv, kv * 0.5, heads=3)
    assert out.shape == (2, 10, 24)
    torch.testing.assert_close(out, attention_reference(q, kv, kv * 0.5, heads=3), atol=1e-5, rtol=1e-5)


# --- numerical parity with diffusers at tiny size -------------------------------------------------

TINY_SD1 = UNetConfig(
    model_channels=32, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(1, 1),
    context_dim=24, num_heads=4,
)
TINY_SD2 = UNetConfig(
    model_channels=32, channel_mult=(1, 2), num_res_blocks=2, transformer_depth=(1, 0),
    context_dim=40, num_head_channels=16, use_linear_in_transformer=True,
)
TIME_ID_DIM = 8
TEXT_EMBED_DIM = 16
TINY_SDXL = UNetConfig(
    model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, transformer_depth=(0, 1, 2),
    transformer_depth_middle=2, context_dim=24, num_head_channels=16,
    use_linear_in_transformer=True, adm_in_channels=TEXT_EMBED_DIM + 6 * TIME_ID_DIM,
)


def random_unet(config: UNetConfig, seed: int) -> UNetModel:
    torch.manual_seed(seed)
    model = UNetModel(config).eval()
    # default init zeroes nothing, but make every tensor (norm affine too) non-trivial
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.copy_(torch.randn_like(tensor) * 0.2)
    return model


def diffusers_twin(model: UNetModel):
    """The same network as diffusers' UNet2DConditionModel, weights converted by diffusers."""
    diffusers = pytest.importorskip("diffusers")
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    cfg = model.config
    down = tuple("CrossAttnDownBlock2D" if d else "DownBlock2D" for d in cfg.transformer_depth)
    up = tuple("CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(cfg.transformer_depth))
    channels = tuple(cfg.model_channels * m for m in cfg.channel_mult)
    if cfg.num_head_channels == -1:
        heads = cfg.num_heads
    else:
        heads = tuple(c // cfg.num_head_channels for c in channels)
    kwargs = dict(
        sample_size=16, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
        down_block_types=down, up_block_types=up, block_out_channels=channels,
        layers_per_block=cfg.num_res_blocks, cross_attention_dim=cfg.context_dim,
        attention_head_dim=heads, use_linear_projection=cfg.use_linear_in_transformer,
        transformer_layers_per_block=tuple(max(d, 1) for d in cfg.transformer_depth),
        norm_num_groups=32,
    )
    if cfg.adm_in_channels is not None:
        kwargs.update(
            addition_embed_type="text_time", addition_time_embed_dim=TIME_ID_DIM,
            projection_class_embeddings_input_dim=cfg.adm_in_channels,
        )
    twin = diffusers.UNet2DConditionModel(**kwargs).eval()
    assert twin.mid_block.attentions[0].transformer_blocks.__len__() == max(
        cfg.transformer_depth_middle, 1
    )
    ldm_state = {UNET_PREFIX + k: v for k, v in model.state_dict().items()}
    converted = convert_ldm_unet_checkpoint(ldm_state, twin.config)
    twin.load_state_dict(converted, strict=True)
    return twin


@pytest.mark.parametrize(
    ("config", "latent_hw"),
    [(TINY_SD1, (16, 16)), (TINY_SD1, (7, 9)), (TINY_SD2, (8, 12))],
    ids=["sd1", "sd1-odd-size", "sd2-linear-head-channels"],
)
def test_matches_diffusers(config: UNetConfig, latent_hw: tuple[int, int]) -> None:
    model = random_unet(config, seed=1)
    twin = diffusers_twin(model)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, *latent_hw, generator=gen)
    timesteps = torch.tensor([999.0, 10.5])
    context = torch.randn(2, 5, config.context_dim, generator=gen)
    with torch.inference_mode():
        ours = model(x, timesteps, context)
        theirs = twin(x, timesteps, encoder_hidden_states=context).sample
    assert ours.shape == (2, 4, *latent_hw)
    assert ours.abs().mean() > 0.1  # a real signal, not a degenerate all-zero output
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-4)


def test_sdxl_like_matches_diffusers_text_time() -> None:
    model = random_unet(TINY_SDXL, seed=3)
    twin = diffusers_twin(model)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 16, 16, generator=gen)
    timesteps = torch.tensor([500.0, 3.0])
    context = torch.randn(2, 6, TINY_SDXL.context_dim, generator=gen)
    text_embeds = torch.randn(2, TEXT_EMBED_DIM, generator=gen)
    time_ids = torch.tensor(
        [[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0], [768.0, 512.0, 8.0, 0.0, 768.0, 512.0]]
    )
    # LDM's vector: pooled text, then each size / crop number embedded like a timestep
    y = torch.cat([text_embeds, timestep_embedding(time_ids.flatten(), TIME_ID_DIM).reshape(2, -1)], 1)
    with torch.inference_mode():
        ours = model(x, timesteps, context, y=y)
        theirs = twin(
            x, timesteps, encoder_hidden_states=context,
            added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids},
        ).sample
        ours_other_size = model(x, timesteps, context, y=y.flip(0))
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-4)
    assert (ours - ours_other_size).abs().max() > 1e-3  # the vector really conditions the output


def test_sdxl_requires_vector() -> None:
    model = random_unet(TINY_SDXL, seed=3)
    with pytest.raises(ValueError, match="vector"):
        model(torch.zeros(1, 4, 8, 8), torch.tensor([1.0]), torch.zeros(1, 2, TINY_SDXL.context_dim))


def test_bfloat16_close_to_float32() -> None:
    model = random_unet(TINY_SD1, seed=5)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 4, 8, 8, generator=gen)
    context = torch.randn(1, 3, TINY_SD1.context_dim, generator=gen)
    t = torch.tensor([321.0])
    with torch.inference_mode():
        reference = model(x, t, context)
        low = model.to(torch.bfloat16)(x, t, context)
    assert low.dtype == torch.bfloat16
    relative = (low.float() - reference).norm() / reference.norm()
    assert relative < 0.05


def test_control_residuals_are_added_to_skips_and_middle() -> None:
    model = random_unet(TINY_SD1, seed=7)
    x = torch.randn(1, 4, 8, 8)
    t = torch.tensor([100.0])
    context = torch.randn(1, 3, TINY_SD1.context_dim)
    with torch.inference_mode():
        features = []
        h = x.contiguous(memory_format=torch.channels_last)
        silu_emb = torch.nn.functional.silu(model.time_embed(timestep_embedding(t, 32)))
        for block in model.input_blocks:
            h = block(h, silu_emb, context)
            features.append(h)
        features.append(model.middle_block(h, silu_emb, context))
        zeros = [torch.zeros_like(f) for f in features]
        plain = model(x, t, context)
        with_zero_control = model(x, t, context, control=zeros)
        middle_only = zeros[:-1] + [torch.ones_like(features[-1])]
        with_middle_control = model(x, t, context, control=middle_only)
    torch.testing.assert_close(with_zero_control, plain)
    assert (with_middle_control - plain).abs().max() > 1e-3


def test_weights_loaded_with_assign_give_the_same_output() -> None:
    # loaders may hand over plain (NCHW-contiguous, e.g. memory-mapped) tensors with assign=True
    model = random_unet(TINY_SD1, seed=8)
    plain_state = {k: v.clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}
    with torch.device("meta"):
        reloaded = UNetModel(TINY_SD1).eval()
    reloaded.load_state_dict(plain_state, strict=True, assign=True)
    # the fast NHWC conv layout is restored after an assign-load
    assert reloaded.input_blocks[1][0].in_layers[2].weight.is_contiguous(memory_format=torch.channels_last)
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([50.0, 700.0]), torch.randn(2, 3, 24)
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(x, t, context), model(x, t, context), atol=1e-5, rtol=1e-5)


def test_backward_pass_reaches_input_and_weights() -> None:
    # textual inversion / hypernetwork training back-propagates through the UNet
    model = random_unet(TINY_SD1, seed=9).train()
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    context = torch.randn(1, 3, TINY_SD1.context_dim, requires_grad=True)
    model(x, torch.tensor([5.0]), context).square().mean().backward()
    attn2_k = model.input_blocks[1][1].transformer_blocks[0].attn2.to_k.weight
    for grad in (x.grad, context.grad, attn2_k.grad, model.out[2].weight.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
