"""Multi-head attention kernels shared by the UNet's transformer blocks, the ControlNet's and
the VAE's mid-block attention.

The default is torch's fused `scaled_dot_product_attention` (SDPA), which picks the best kernel
for the device (flash / memory-efficient on CUDA, a blocked flash kernel on the CPU). A1111's
other `cross_attention_optimization` choices are here too: SDPA without the memory-efficient
kernel, xformers (when installed, CUDA only), sliced attention (Doggettx / V1 / InvokeAI),
sub-quadratic chunked attention and the plain unoptimised layer. Each layer holds its kernel in a
plain `attention_kernel` attribute that `use_attention` sets for a whole model.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


def spatial_self_attention(q: Tensor, k: Tensor, v: Tensor,
                           kernel: Callable[..., Tensor] | None = None) -> Tensor:
    """Single-head attention between the pixels of [B, C, H, W] maps (VAE mid-block), with SDPA
    or the given kernel (see ATTENTION_KERNELS).

    Returns [B, C, H, W]. The channel axis is the feature axis, each pixel is one token.
    """
    batch, channels, height, width = q.shape
    if kernel is None or kernel is attention:
        def to_heads(x: Tensor) -> Tensor:      # [B, 1, HW, C] as a strided view
            return x.reshape(batch, 1, channels, height * width).transpose(2, 3)

        out = F.scaled_dot_product_attention(to_heads(q), to_heads(k), to_heads(v))
        return out.transpose(2, 3).reshape(batch, channels, height, width)

    def to_tokens(x: Tensor) -> Tensor:         # [B, HW, C], contiguous for the head split
        return x.reshape(batch, channels, height * width).transpose(1, 2).contiguous()

    out = kernel(to_tokens(q), to_tokens(k), to_tokens(v), 1)
    return out.transpose(1, 2).reshape(batch, channels, height, width)


def attention_reference(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """Plain softmax(q k^T / sqrt(d)) v in float32, for tests and debugging (O(T^2) memory)."""
    qh, kh, vh = (split_heads(t.float(), heads) for t in (q, k, v))
    weights = torch.softmax(qh @ kh.transpose(-1, -2) * qh.shape[-1] ** -0.5, dim=-1)
    return merge_heads(weights @ vh).to(q.dtype)


# -- the other cross-attention choices (A1111's `cross_attention_optimization`) ----------------
#: (q, k, v, heads, mask) -> out, all [B, T, heads*dim] as for attention()
AttentionKernel = Callable[..., Tensor]

#: on the CPU, score blocks of the sliced kernels stay within this many bytes (cache-sized
#: blocks are faster there; a GPU slices by its free memory instead)
CPU_SCORE_BLOCK_BYTES = 64 << 20


def sdp_no_mem_attention(q: Tensor, k: Tensor, v: Tensor, heads: int,
                         mask: Tensor | None = None) -> Tensor:
    """SDPA without its memory-efficient CUDA kernel (flash or math only: deterministic)."""
    if not q.is_cuda:
        return attention(q, k, v, heads, mask)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]):
        return attention(q, k, v, heads, mask)


def _additive_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, -torch.inf)


def _score_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(free // 3, 1 << 20)     # room for the scores, their softmax and copies
    return CPU_SCORE_BLOCK_BYTES


def sliced_attention(q: Tensor, k: Tensor, v: Tensor, heads: int, mask: Tensor | None = None,
                     *, max_block_bytes: int | None = None) -> Tensor:
    """softmax(q kᵀ / √d) v computed for slices of the queries, each slice's float32 score block
    within `max_block_bytes` (default: a third of the GPU's free memory, or a cache-sized block on
    the CPU). A1111's Doggettx / V1 / InvokeAI choices: the same arithmetic, sliced differently."""
    qh, kh, vh = split_heads(q, heads), split_heads(k, heads), split_heads(v, heads)
    batch, _, queries, dim = qh.shape
    keys = kh.shape[2]
    mask = _additive_mask(mask, torch.float32)
    budget = _score_budget(q.device) if max_block_bytes is None else max_block_bytes
    rows = max(1, budget // (batch * heads * keys * 4))
    out = torch.empty_like(qh)
    key_t = kh.transpose(-1, -2)
    for start in range(0, queries, rows):
        stop = min(start + rows, queries)
        scores = (qh[:, :, start:stop] @ key_t).float() * dim ** -0.5
        if mask is not None:
            scores = scores + mask.expand(batch, heads, queries, keys)[:, :, start:stop]
        out[:, :, start:stop] = torch.softmax(scores, dim=-1).to(vh.dtype) @ vh
    return merge_heads(out)


def plain_attention(q: Tensor, k: Tensor, v: Tensor, heads: int,
                    mask: Tensor | None = None) -> Tensor:
    """The unoptimised layer (A1111's "None"): the whole score matrix at once."""
    return sliced_attention(q, k, v, heads, mask, max_block_bytes=1 << 62)


def sub_quadratic_attention(q: Tensor, k: Tensor, v: Tensor, heads: int,
                            mask: Tensor | None = None, *, query_chunk: int = 1024,
                            key_chunk: int = 4096) -> Tensor:
    """Attention in query × key chunks, merged with a running max and sum (online softmax), so
    memory grows with the chunk sizes, not with queries × keys (A1111's "sub-quadratic")."""
    qh, kh, vh = split_heads(q, heads), split_heads(k, heads), split_heads(v, heads)
    batch, _, queries, dim = qh.shape
    keys = kh.shape[2]
    mask = _additive_mask(mask, torch.float32)
    if mask is not None:
        mask = mask.expand(batch, heads, queries, keys)
    out = torch.empty_like(qh)
    for q_start in range(0, queries, query_chunk):
        q_stop = min(q_start + query_chunk, queries)
        query = qh[:, :, q_start:q_stop].float() * dim ** -0.5
        total = torch.zeros(*query.shape[:-1], vh.shape[-1], dtype=torch.float32,
                            device=q.device)
        running_max = torch.full((*query.shape[:-1], 1), -torch.inf, device=q.device)
        running_sum = torch.zeros_like(running_max)
        for k_start in range(0, keys, key_chunk):
            k_stop = min(k_start + key_chunk, keys)
            scores = query @ kh[:, :, k_start:k_stop].float().transpose(-1, -2)
            if mask is not None:
                scores = scores + mask[:, :, q_start:q_stop, k_start:k_stop]
            new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))
            rescale = torch.exp(running_max - new_max)
            weights = torch.exp(scores - new_max)
            running_sum = running_sum * rescale + weights.sum(dim=-1, keepdim=True)
            total = total * rescale + weights @ vh[:, :, k_start:k_stop].float()
            running_max = new_max
        out[:, :, q_start:q_stop] = (total / running_sum).to(out.dtype)
    return merge_heads(out)


@functools.lru_cache(maxsize=1)
def xformers_available() -> bool:
    """Whether xformers imports (checked once: a failed import is not cached by Python)."""
    try:
        import xformers.ops  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return False
    return True


def xformers_attention(q: Tensor, k: Tensor, v: Tensor, heads: int,
                       mask: Tensor | None = None) -> Tensor:
    """xformers' memory-efficient kernel on CUDA; SDPA where it cannot run (CPU, masks)."""
    if not q.is_cuda or mask is not None:
        return attention(q, k, v, heads, mask)
    import xformers.ops
    batch = q.shape[0]

    def to_bmhk(x: Tensor) -> Tensor:
        return x.view(batch, x.shape[1], heads, x.shape[2] // heads)
    out = xformers.ops.memory_efficient_attention(to_bmhk(q), to_bmhk(k), to_bmhk(v))
    return out.reshape(batch, q.shape[1], -1)


#: A1111's option titles → kernels ("Automatic" is resolved by the caller)
ATTENTION_KERNELS: dict[str, AttentionKernel] = {
    "sdp": attention, "sdp-no-mem": sdp_no_mem_attention, "xformers": xformers_attention,
    "Doggettx": sliced_attention, "V1": sliced_attention, "InvokeAI": sliced_attention,
    "sub-quadratic": sub_quadratic_attention, "None": plain_attention,
}


def upcast(kernel: AttentionKernel) -> AttentionKernel:
    """`kernel` computed in float32 and returned in the inputs' dtype (A1111's "Upcast cross
    attention layer to float32": half-precision attention can overflow, e.g. SD2.x in fp16)."""
    def upcast_kernel(q: Tensor, k: Tensor, v: Tensor, heads: int,
                      mask: Tensor | None = None) -> Tensor:
        if q.dtype == torch.float32:
            return kernel(q, k, v, heads, mask)
        return kernel(q.float(), k.float(), v.float(), heads, mask).to(q.dtype)

    upcast_kernel.upcasts = kernel
    return upcast_kernel


def use_attention(model: nn.Module, name: str, *, upcast_to_float32: bool = False) -> None:
    """Point every attention layer of `model` (UNet, VAE, ControlNet) at kernel `name`
    (computed in float32 with `upcast_to_float32`)."""
    kernel = ATTENTION_KERNELS[name]
    if upcast_to_float32:
        kernel = upcast(kernel)
    for module in model.modules():
        if hasattr(module, "attention_kernel"):
            module.attention_kernel = kernel
