"""Multi-head attention over torch's fused `scaled_dot_product_attention` (SDPA).

Shared by the UNet's transformer blocks and the VAE's mid-block attention. SDPA picks the best
kernel for the device (flash / memory-efficient on CUDA, a blocked flash kernel on CPU), so the
A1111 flags `--xformers`, `--opt-sdp-attention` and `--opt-sdp-no-mem-attention` all land here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def split_heads(x: Tensor, heads: int) -> Tensor:
    """[B, T, heads*dim] -> [B, heads, T, dim] as a strided view (no copy; SDPA accepts strides)."""
    batch, tokens, inner = x.shape
    return x.view(batch, tokens, heads, inner // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """[B, heads, T, dim] -> [B, T, heads*dim] (one copy, needed by the following linear layer)."""
    batch, heads, tokens, dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * dim)


def attention(q: Tensor, k: Tensor, v: Tensor, heads: int, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention with `heads` heads.

    q: [B, Tq, heads*dim]; k, v: [B, Tk, heads*dim]; mask: optional additive float or boolean mask
    broadcastable to [B, heads, Tq, Tk]. Returns [B, Tq, heads*dim] in q's dtype. The softmax scale
    is 1/sqrt(dim), as in the original LDM CrossAttention.
    """
    out = F.scaled_dot_product_attention(
        split_heads(q, heads), split_heads(k, heads), split_heads(v, heads), attn_mask=mask
    )
    return merge_heads(out)


def spatial_self_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Single-head attention between the pixels of [B, C, H, W] maps (VAE mid-block).

    Returns [B, C, H, W]. The channel axis is the feature axis, each pixel is one token.
    """
    batch, channels, height, width = q.shape

    def to_tokens(x: Tensor) -> Tensor:
        return x.reshape(batch, 1, channels, height * width).transpose(2, 3)

    out = F.scaled_dot_product_attention(to_tokens(q), to_tokens(k), to_tokens(v))
    return out.transpose(2, 3).reshape(batch, channels, height, width)


def attention_reference(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """Plain softmax(q k^T / sqrt(d)) v in float32, for tests and debugging (slow, O(T^2) memory)."""
    qh, kh, vh = (split_heads(t.float(), heads) for t in (q, k, v))
    weights = torch.softmax(qh @ kh.transpose(-1, -2) * qh.shape[-1] ** -0.5, dim=-1)
    return merge_heads(weights @ vh).to(q.dtype)
