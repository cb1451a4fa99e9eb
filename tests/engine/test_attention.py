"""Every cross-attention choice (A1111's `cross_attention_optimization`) computes the same
attention: against a plain float32 softmax reference, with masks, across slice and chunk borders,
in bf16, and inside a whole UNet and VAE."""
from __future__ import annotations

import pytest
import torch

from modules.engine.attention import (ATTENTION_KERNELS, attention, attention_reference,
                                      sliced_attention, spatial_self_attention,
                                      sub_quadratic_attention, use_attention)
from modules.engine.sd_model import load_model

KERNELS = sorted(ATTENTION_KERNELS)


def qkv(batch=2, queries=96, keys=77, heads=4, dim=16, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    make = lambda tokens: torch.randn(batch, tokens, heads * dim, generator=generator)  # noqa: E731
    return make(queries).to(dtype), make(keys).to(dtype), make(keys).to(dtype)


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("queries, keys", [(96, 77), (64, 64)])   # cross- and self-attention
def test_each_kernel_matches_the_plain_softmax(name, queries, keys):
    q, k, v = qkv(queries=queries, keys=keys)
    out = ATTENTION_KERNELS[name](q, k, v, 4)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out, attention_reference(q, k, v, 4), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", KERNELS)
def test_each_kernel_honours_additive_and_boolean_masks(name):
    q, k, v = qkv(batch=1, queries=40, keys=30, heads=2)
    keep = torch.rand(1, 1, 40, 30, generator=torch.Generator().manual_seed(1)) > 0.3
    keep[..., 0] = True                                  # no query row is fully masked
    additive = torch.zeros(keep.shape).masked_fill(~keep, -torch.inf)
    expected = attention(q, k, v, 2, additive)
    for mask in (keep, additive):
        torch.testing.assert_close(ATTENTION_KERNELS[name](q, k, v, 2, mask), expected,
                                   atol=2e-5, rtol=1e-4)


def test_slices_and_chunks_that_do_not_divide_the_tokens_add_up():
    q, k, v = qkv(queries=101, keys=53)
    expected = attention_reference(q, k, v, 4)
    one_row = 2 * 4 * 53 * 4                              # bytes of one query row's scores
    torch.testing.assert_close(sliced_attention(q, k, v, 4, max_block_bytes=7 * one_row),
                               expected, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(sub_quadratic_attention(q, k, v, 4, query_chunk=7, key_chunk=5),
                               expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", KERNELS)
def test_bf16_inputs_give_bf16_outputs_near_the_reference(name):
    q, k, v = qkv(dtype=torch.bfloat16)
    out = ATTENTION_KERNELS[name](q, k, v, 4)
    assert out.dtype == torch.bfloat16
    reference = attention_reference(q.float(), k.float(), v.float(), 4)
    assert (out.float() - reference).abs().max() < 0.05


@pytest.mark.parametrize("name", KERNELS)
def test_the_vae_pixel_attention_takes_each_kernel(name):
    generator = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 8, 5, 7, generator=generator) for _ in range(3))
    torch.testing.assert_close(spatial_self_attention(q, k, v, ATTENTION_KERNELS[name]),
                               spatial_self_attention(q, k, v), atol=2e-5, rtol=1e-4)


def test_a_model_set_to_a_kernel_uses_it_in_every_layer_and_agrees(tiny_checkpoint):
    model = load_model(tiny_checkpoint("sd1"))
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 8, 8, generator=generator)
    context = torch.randn(1, 77, model.config.unet.context_dim, generator=generator)
    t = torch.tensor([500.0])
    with torch.no_grad():
        default_eps = model.apply_model(x, t, context)
        default_image = model.decode_first_stage(x)
        for name in ("sub-quadratic", "Doggettx", "None"):
            use_attention(model, name)
            layers = [m for m in model.modules() if hasattr(m, "attention_kernel")]
            assert layers and all(m.attention_kernel is ATTENTION_KERNELS[name] for m in layers)
            torch.testing.assert_close(model.apply_model(x, t, context), default_eps,
                                       atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(model.decode_first_stage(x), default_image,
                                       atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["sdp", "sub-quadratic"])
def test_upcast_runs_half_precision_attention_in_float32(name):
    from modules.engine.attention import upcast
    kernel = ATTENTION_KERNELS[name]
    q, k, v = qkv(dtype=torch.bfloat16)
    upcast_out = upcast(kernel)(q, k, v, 4)
    assert upcast_out.dtype == torch.bfloat16
    assert torch.equal(upcast_out, kernel(q.float(), k.float(), v.float(), 4).bfloat16())
    exact = attention_reference(q.float(), k.float(), v.float(), 4)
    assert (upcast_out.float() - exact).abs().max() <= (kernel(q, k, v, 4).float()
                                                       - exact).abs().max()
    q32, k32, v32 = qkv()
    assert torch.equal(upcast(kernel)(q32, k32, v32, 4), kernel(q32, k32, v32, 4))
