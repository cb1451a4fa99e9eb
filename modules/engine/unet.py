"""The LDM / SGM `openaimodel.UNetModel` (SD1.x, SD2.x, SDXL base and refiner).

Module and parameter names reproduce the original CompVis / Stability code exactly, so the
`model.diffusion_model.*` tensors of a real checkpoint load with `load_state_dict(strict=True)`
once that prefix is stripped. The forward pass is written for speed rather than as a copy of the
original: SiLU of the time embedding is computed once per call, ResBlock residuals are added in
place (autograd-safe), 1x1 projections run as plain matrix products on token-major views, and the
whole network runs in channels-last memory format so the NCHW <-> token reshapes around every
transformer are free views instead of copies.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modules.engine.attention import attention
from modules.engine.memory_format import use_channels_last
from modules.engine.configs import UNetConfig

GROUP_NORM_GROUPS = 32


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """LDM sinusoidal embedding of [B] (possibly fractional) timesteps -> [B, dim] float32.

    Cosine half first, then sine; frequencies exp(-ln(max_period) * i / half). SDXL's size/crop
    vector uses the same function with dim 256.
    """
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(exponent * (-math.log(max_period) / half))
    args = timesteps.to(torch.float32)[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


def group_norm(channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    return nn.GroupNorm(GROUP_NORM_GROUPS, channels, eps=eps)


class ResBlock(nn.Module):
    """`in_layers` (norm, SiLU, conv) + time embedding + `out_layers` (norm, SiLU, dropout, conv)."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            group_norm(out_channels),
            nn.SiLU(),
            nn.Dropout(0.0),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor, silu_emb: Tensor) -> Tensor:
        """x: [B, C, H, W]; silu_emb: SiLU(time embedding) [B, E], shared by all blocks."""
        norm_in, _, conv_in = self.in_layers
        norm_out, _, _, conv_out = self.out_layers
        h = conv_in(F.silu(norm_in(x), inplace=True))
        h += self.emb_layers[1](silu_emb)[:, :, None, None]
        h = conv_out(F.silu(norm_out(h), inplace=True))
        h += self.skip_connection(x)
        return h


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, output_size: tuple[int, int] | None = None) -> Tensor:
        """Nearest x2 (or to the skip's size when odd latent sizes were halved with rounding)."""
        if output_size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=output_size, mode="nearest")
        return self.conv(x)


class CrossAttention(nn.Module):
    """`to_q`, `to_k`, `to_v` (no bias) and `to_out.0`; self-attention when context is None."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))
        #: per-job transforms of what keys and values are read from (hypernetworks):
        #: (k_source, v_source) → (k_source, v_source); a plain list, not state-dict content
        self.context_hooks: list = []
        #: the attention kernel (plain attribute, set by attention.use_attention)
        self.attention_kernel = attention

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        source = x if context is None else context
        source_k = source_v = source
        for hook in self.context_hooks:
            source_k, source_v = hook(source_k, source_v)
        out = self.attention_kernel(self.to_q(x), self.to_k(source_k), self.to_v(source_v),
                                    self.heads)
        return self.to_out[0](out)


class GEGLU(nn.Module):
    """`proj` to 2*inner features; first half gated by GELU of the second half."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """`net.0` GEGLU, `net.1` dropout, `net.2` output linear (LDM key layout)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention and GEGLU feed-forward with residuals."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int) -> None:
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """x: [B, T, C] tokens; context: [B, S, context_dim]."""
        # out-of-place residuals: LayerNorm keeps its input for the backward pass (training tabs)
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """GroupNorm, `proj_in` (1x1 conv in SD1, Linear in SD2/SDXL), transformer blocks, `proj_out`,
    residual. Both projection kinds run as a matrix product over the channel axis of each token."""

    def __init__(
        self, channels: int, heads: int, dim_head: int, depth: int, context_dim: int, use_linear: bool
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(GROUP_NORM_GROUPS, channels, eps=1e-6)
        if use_linear:
            self.proj_in: nn.Module = nn.Linear(channels, inner)
            self.proj_out: nn.Module = nn.Linear(inner, channels)
        else:
            self.proj_in = nn.Conv2d(channels, inner, 1)
            self.proj_out = nn.Conv2d(inner, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)
        )

    @staticmethod
    def _project(layer: nn.Module, tokens: Tensor) -> Tensor:
        # a 1x1 conv over NCHW equals a linear layer over the channel axis of [B, HW, C] tokens
        weight = layer.weight
        return F.linear(tokens, weight.view(weight.shape[0], weight.shape[1]), layer.bias)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        # a free view when x is channels-last (how UNetModel runs), a copy otherwise
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        tokens = self._project(self.proj_in, tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        tokens = self._project(self.proj_out, tokens)
        return tokens.view(batch, height, width, channels).permute(0, 3, 1, 2) + x


class AttentionBlock(nn.Module):
    """LDM's self-attention block of UNets without text context (LDSR): `norm`, `qkv` and
    `proj_out` as 1-d convolutions, residual. The qkv channels are laid out per head (q, k, v of
    head 0, then head 1, ...), the "legacy" order of `QKVAttentionLegacy`."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        flat = x.reshape(batch, channels, height * width)
        # the 1-d convs run as linears over tokens, so each head's q / k / v is a view whose
        # last axis is contiguous (what SDPA's fused CPU kernel needs)
        tokens = self.norm(flat).transpose(1, 2)
        qkv = F.linear(tokens, self.qkv.weight.squeeze(-1), self.qkv.bias)
        head_width = channels // self.heads
        q, k, v = qkv.view(batch, -1, self.heads, 3 * head_width).transpose(1, 2) \
            .split(head_width, dim=-1)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2) \
            .reshape(batch, -1, channels)
        projected = F.linear(attended, self.proj_out.weight.squeeze(-1), self.proj_out.bias)
        return (flat + projected.transpose(1, 2)).reshape(batch, channels, height, width)


class TimestepEmbedSequential(nn.Sequential):
    """One `input_blocks.N` / `middle_block` / `output_blocks.N` entry: layers fed the embedding
    (ResBlock) or the text context (SpatialTransformer) as each needs."""

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        silu_emb: Tensor,
        context: Tensor,
        output_size: tuple[int, int] | None = None,
    ) -> Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, silu_emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            elif isinstance(layer, Upsample):
                x = layer(x, output_size)
            else:
                x = layer(x)
        return x


def heads_for(channels: int, config: UNetConfig) -> tuple[int, int]:
    """(heads, dim_head): fixed head count (SD1) or fixed head width (SD2/SDXL)."""
    if config.num_head_channels == -1:
        return config.num_heads, channels // config.num_heads
    return channels // config.num_head_channels, config.num_head_channels


def output_depths(config: UNetConfig) -> tuple[int, ...]:
    """Transformer depth of each `output_blocks.N`, index N = file order (deepest level first)."""
    if config.transformer_depth_output is not None:
        return tuple(config.transformer_depth_output)
    per_level = reversed(config.transformer_depth)
    return tuple(depth for depth in per_level for _ in range(config.num_res_blocks + 1))


class UNetEncoder(nn.Module):
    """The half of the UNet a ControlNet copies: `time_embed`, `label_emb` (SDXL),
    `input_blocks` and `middle_block`, with the original names. `skip_channels` are the widths of
    the input blocks' outputs (the skips, and a ControlNet's residuals)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        mc = config.model_channels
        time_embed_dim = mc * 4
        levels = len(config.channel_mult)
        if len(config.transformer_depth) != levels:
            raise ValueError("transformer_depth needs one entry per channel_mult level")

        self.time_embed = nn.Sequential(
            nn.Linear(mc, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        if config.adm_in_channels is not None:
            self.label_emb = nn.Sequential(
                nn.Sequential(
                    nn.Linear(config.adm_in_channels, time_embed_dim),
                    nn.SiLU(),
                    nn.Linear(time_embed_dim, time_embed_dim),
                )
            )

        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(config.in_channels, mc, 3, padding=1))]
        )
        self.skip_channels = [mc]
        ch = mc
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, time_embed_dim, mult * mc)]
                ch = mult * mc
                if config.transformer_depth[level] > 0:
                    layers.append(self.transformer(ch, config.transformer_depth[level]))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                self.skip_channels.append(ch)
            if level != levels - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                self.skip_channels.append(ch)

        middle: list[nn.Module] = [ResBlock(ch, time_embed_dim, ch)]
        if config.transformer_depth_middle > 0:
            middle.append(self.transformer(ch, config.transformer_depth_middle))
        middle.append(ResBlock(ch, time_embed_dim, ch))
        self.middle_block = TimestepEmbedSequential(*middle)
        self.middle_channels = ch

    def transformer(self, channels: int, depth: int) -> nn.Module:
        heads, dim_head = heads_for(channels, self.config)
        if self.config.attention_block == "self":
            return AttentionBlock(channels, heads)
        return SpatialTransformer(channels, heads, dim_head, depth, self.config.context_dim,
                                  self.config.use_linear_in_transformer)

    def embed(self, timesteps: Tensor, y: Tensor | None, dtype: torch.dtype) -> Tensor:
        """SiLU of the time (+ SDXL label) embedding, which every ResBlock takes."""
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(dtype))
        if self.config.adm_in_channels is not None:
            if y is None:
                raise ValueError("this UNet needs the SDXL vector y (adm_in_channels is set)")
            emb = emb + self.label_emb(y.to(dtype))
        return F.silu(emb)


class UNetModel(UNetEncoder):
    """LDM UNet. `forward(x, timesteps, context, y=None)` predicts eps (or v) for latents x."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        mc = config.model_channels
        time_embed_dim = mc * 4
        depths_out = output_depths(config)
        if len(depths_out) != len(config.channel_mult) * (config.num_res_blocks + 1):
            raise ValueError("transformer_depth_output needs one entry per output block")
        skip_channels = list(self.skip_channels)
        ch = self.middle_channels

        self.output_blocks = nn.ModuleList()
        block_index = 0
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), time_embed_dim, mc * mult)]
                ch = mc * mult
                if depths_out[block_index] > 0:
                    layers.append(self.transformer(ch, depths_out[block_index]))
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(*layers))
                block_index += 1

        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(mc, config.out_channels, 3, padding=1))
        # Channels-last conv weights: the CPU (oneDNN) and CUDA conv kernels prefer NHWC, and the
        # transformers then see tokens as free views. load_state_dict(copy) and .to(dtype/device)
        # keep the layout; the hook restores it after load_state_dict(assign=True) of plain tensors.
        use_channels_last(self)

    def forward(
        self,
        x: Tensor,
        timesteps: Tensor,
        context: Tensor | None,
        y: Tensor | None = None,
        control: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """x: [B, in_channels, H, W] latents; timesteps: [B] float; context: [B, T, context_dim];
        y: [B, adm_in_channels] (SDXL pooled text + size embedding). control: optional ControlNet
        residuals as the LDM ControlNet returns them (one per input block, then the middle block),
        added to the middle output and to the skips. Returns [B, out_channels, H, W]."""
        dtype = self.input_blocks[0][0].weight.dtype
        silu_emb = self.embed(timesteps, y, dtype)
        context = context.to(dtype) if context is not None else None
        residuals = list(control) if control is not None else None

        h = x.to(dtype=dtype, memory_format=torch.channels_last)
        skips: list[Tensor] = []
        for block in self.input_blocks:
            h = block(h, silu_emb, context)
            skips.append(h)
        h = self.middle_block(h, silu_emb, context)
        if residuals:
            h = h + residuals.pop()
        for block in self.output_blocks:
            skip = skips.pop()
            if residuals:
                skip = skip + residuals.pop()
            # the size of the next skip: odd latent sizes make Upsample's exact x2 wrong
            next_size = tuple(skips[-1].shape[-2:]) if skips else None
            h = block(torch.cat([h, skip], dim=1), silu_emb, context, next_size)
        return self.out(h).contiguous()
