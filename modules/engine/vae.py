"""The LDM KL autoencoder (`first_stage_model.*`) with the original key names, so VAE weights from
full checkpoints and standalone VAE files load strictly without a conversion table."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from modules.engine.attention import attention, spatial_self_attention
from modules.engine.configs import VAEConfig
from modules.engine.memory_format import use_channels_last

GROUP_NORM_GROUPS = 32
GROUP_NORM_EPS = 1e-6


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUP_NORM_GROUPS, channels, eps=GROUP_NORM_EPS, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = (nn.Conv2d(in_channels, out_channels, 1)
                             if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = self.nin_shortcut(x) if self.nin_shortcut is not None else x
        return shortcut + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention. LDM stores q/k/v/proj_out as 1x1 convs; some converted
    files store them as linears (`linear=True`)."""

    def __init__(self, channels: int, linear: bool):
        super().__init__()
        self.linear = linear
        self.norm = _group_norm(channels)
        make = (lambda: nn.Linear(channels, channels)) if linear else (
            lambda: nn.Conv2d(channels, channels, 1))
        self.q, self.k, self.v, self.proj_out = make(), make(), make(), make()
        #: the attention kernel (plain attribute, set by attention.use_attention)
        self.attention_kernel = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.norm(x)
        if self.linear:
            tokens = h.flatten(2).transpose(1, 2)                     # [B, HW, C]
            q, k, v = self.q(tokens), self.k(tokens), self.v(tokens)
            out = self.proj_out(self.attention_kernel(q, k, v, 1))
            out = out.transpose(1, 2).reshape(batch, channels, height, width)
        else:
            out = self.proj_out(spatial_self_attention(self.q(h), self.k(h), self.v(h),
                                                       self.attention_kernel))
        return x + out


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # LDM pads right/bottom only, so the stride-2 conv keeps the original pixel alignment
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    def __init__(self, channels: int, attn_linear: bool):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels, attn_linear)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution level: `block.{j}` res blocks and an optional `downsample`/`upsample`."""

    def __init__(self, blocks: list[ResnetBlock], resample: nn.Module | None, resample_name: str):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.resample_name = resample_name
        if resample is not None:
            self.add_module(resample_name, resample)
        else:
            setattr(self, resample_name, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        resample = getattr(self, self.resample_name)
        return resample(x) if resample is not None else x


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        ch, mult = config.ch, config.ch_mult
        self.conv_in = nn.Conv2d(config.in_channels, ch, 3, padding=1)
        levels = []
        block_in = ch
        for level_index, level_mult in enumerate(mult):
            block_out = ch * level_mult
            blocks = []
            for _ in range(config.num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out))
                block_in = block_out
            is_last = level_index == len(mult) - 1
            levels.append(Level(blocks, None if is_last else Downsample(block_in), "downsample"))
        self.down = nn.ModuleList(levels)
        self.mid = MidBlock(block_in, config.attn_linear)
        self.norm_out = _group_norm(block_in)
        # "double_z": mean and log-variance of the latent distribution (KL), else the latent (VQ)
        z_outputs = 2 * config.z_channels if config.double_z else config.z_channels
        self.conv_out = nn.Conv2d(block_in, z_outputs, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        ch, mult = config.ch, config.ch_mult
        block_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(config.z_channels, block_in, 3, padding=1)
        self.mid = MidBlock(block_in, config.attn_linear)
        levels: list[Level] = []
        for level_index in reversed(range(len(mult))):
            block_out = ch * mult[level_index]
            blocks = []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out))
                block_in = block_out
            upsample = Upsample(block_in) if level_index != 0 else None
            levels.insert(0, Level(blocks, upsample, "upsample"))   # up.{i} is level i
        self.up = nn.ModuleList(levels)
        self.norm_out = _group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, config.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    """`encode`: images in [-1, 1] -> scaled latents; `decode`: scaled latents -> images
    (about [-1, 1], not clamped)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(2 * config.z_channels, 2 * config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        use_channels_last(self)

    @property
    def scaling_factor(self) -> float:
        return self.config.scaling_factor

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latent of `images`: the distribution mean, or a sample drawn with `generator`."""
        return self.sample_latents(self.encode_moments(images), generator)

    def encode_moments(self, images: torch.Tensor) -> torch.Tensor:
        """The latent distribution of `images`: mean and log-variance stacked on the channel axis."""
        return self.quant_conv(self.encoder(images.contiguous(memory_format=torch.channels_last)))

    def sample_latents(self, moments: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Scaled latents from `encode_moments`: the mean, or a sample drawn with `generator`."""
        mean, log_variance = moments.chunk(2, dim=1)
        if generator is None:
            latents = mean
        else:
            std = torch.exp(0.5 * log_variance.clamp(-30.0, 20.0))
            noise = torch.randn(mean.shape, generator=generator, device=generator.device,
                                dtype=mean.dtype).to(mean.device)
            latents = mean + std * noise
        return latents * self.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = self.post_quant_conv((latents / self.config.scaling_factor)
                                 .contiguous(memory_format=torch.channels_last))
        return self.decoder(z).contiguous()
