"""LDSR: CompVis' latent-diffusion 4x super-resolution, as A1111's LDSR upscaler runs it.

The release is a LatentDiffusion training checkpoint (`model.ckpt`, or a `model.safetensors`
conversion) plus its `project.yaml`. The networks keep the file's own names:

* `model.diffusion_model.*`: an LDM UNet without text context. Its input is the noisy latent and
  the low-resolution image (in [-1, 1]) concatenated on the channel axis (`concat_mode`), and its
  attention blocks are LDM's older self-attention `AttentionBlock`s;
* `first_stage_model.*`: a VQ autoencoder (VQ-f4: encoder, decoder, `quant_conv`,
  `post_quant_conv`, `quantize.embedding`). Only the decoder runs: the latent has the
  low-resolution image's size, and decoding quantizes it to the codebook first, as LDM's
  `decode_first_stage` does.

Sampling is DDIM with eta 1 over the "uniform" timestep spacing (A1111's `ldsr_steps`); the
latent is denoised in overlapping 128-cell tiles (LDM's split-input mode), so large images fit.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn

from modules.engine.checkpoint_io import CheckpointLoadError, read_state_dict
from modules.engine.configs import UNetConfig, VAEConfig
from modules.engine.sd_model import DiffusionWrapper, linear_alphas_cumprod, load_weights_strict
from modules.engine.unet import UNetModel
from modules.engine.vae import Decoder, Encoder
from modules.engine.vae_tiling import blend_tiles

UPSCALE = 4                  # the VQ-f4 first stage decodes 4 pixels per latent cell
PAD_MULTIPLE = 64            # A1111 pads the input to multiples of 64 (edge values)
TILE = 128                   # latent cells per tile (LDM's split-input "ks")
TILE_OVERLAP = 64            # LDM's stride 64: tiles overlap by half
ETA = 1.0                    # A1111 runs LDSR's DDIM with eta 1

StepCallback = Callable[[int, int], None]


class LDSRError(ValueError):
    """The LDSR files are missing, unreadable or do not fit each other; the message says which."""


@dataclass(frozen=True)
class LDSRConfig:
    """What project.yaml says: the UNet, the VQ first stage and the diffusion schedule."""
    unet: UNetConfig
    first_stage: VAEConfig
    codebook_size: int
    timesteps: int = 1000
    linear_start: float = 0.0015
    linear_end: float = 0.0155
    scale_factor: float = 1.0


def _section(mapping: Any, *keys: str) -> dict:
    for key in keys:
        if not isinstance(mapping, Mapping) or not isinstance(mapping.get(key), Mapping):
            raise LDSRError(f"project.yaml has no {'.'.join(keys)} section")
        mapping = mapping[key]
    return dict(mapping)


def parse_ldsr_config(text: str) -> LDSRConfig:
    """The LDSR architecture from project.yaml's text (LDM's LatentDiffusion config)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise LDSRError(f"project.yaml is not valid YAML: {error}") from error
    params = _section(document, "model", "params")
    unet = _section(params, "unet_config", "params")
    first = _section(params, "first_stage_config", "params")
    dd = _section(first, "ddconfig")
    if not params.get("concat_mode", False) and params.get("conditioning_key") != "concat":
        raise LDSRError("project.yaml describes a model without concat conditioning, not LDSR")
    try:
        channel_mult = tuple(int(m) for m in unet["channel_mult"])
        attention_at = {int(r) for r in unet.get("attention_resolutions", [])}
        unet_config = UNetConfig(
            in_channels=int(unet["in_channels"]), out_channels=int(unet["out_channels"]),
            model_channels=int(unet["model_channels"]), channel_mult=channel_mult,
            num_res_blocks=int(unet["num_res_blocks"]),
            # LDM puts attention where the downsampling factor is listed: level i is 2**i
            transformer_depth=tuple(1 if 2 ** level in attention_at else 0
                                    for level in range(len(channel_mult))),
            transformer_depth_middle=1,
            num_heads=int(unet.get("num_heads", -1)),
            num_head_channels=int(unet.get("num_head_channels", -1)),
            attention_block="self")
        first_config = VAEConfig(
            in_channels=int(dd["in_channels"]), out_channels=int(dd["out_ch"]),
            z_channels=int(dd["z_channels"]), embed_dim=int(first["embed_dim"]),
            ch=int(dd["ch"]), ch_mult=tuple(int(m) for m in dd["ch_mult"]),
            num_res_blocks=int(dd["num_res_blocks"]), double_z=bool(dd.get("double_z", False)),
            scaling_factor=1.0)
        return LDSRConfig(
            unet=unet_config, first_stage=first_config, codebook_size=int(first["n_embed"]),
            timesteps=int(params.get("timesteps", 1000)),
            linear_start=float(params.get("linear_start", 0.0015)),
            linear_end=float(params.get("linear_end", 0.0155)),
            scale_factor=float(params.get("scale_factor", 1.0)))
    except (KeyError, TypeError, ValueError) as error:
        raise LDSRError(f"project.yaml lacks or mistypes an LDSR setting: {error}") from error


class VectorQuantizer(nn.Module):
    """LDM's `quantize`: each latent vector is replaced by its nearest codebook entry."""

    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, channels)
        codebook = self.embedding.weight
        distances = (flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1)[None]
                     - 2 * flat @ codebook.t())
        nearest = codebook[distances.argmin(dim=1)]
        return nearest.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


class VQModel(nn.Module):
    """LDM's `VQModelInterface` with its key names."""

    def __init__(self, config: VAEConfig, codebook_size: int) -> None:
        super().__init__()
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        self.quantize = VectorQuantizer(codebook_size, config.embed_dim)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(self.quantize(latents)))


class LDSRModel(nn.Module):
    """The checkpoint as one module: `model.diffusion_model` and `first_stage_model`."""

    def __init__(self, config: LDSRConfig) -> None:
        super().__init__()
        self.config = config
        self.model = DiffusionWrapper(UNetModel(config.unet))
        self.first_stage_model = VQModel(config.first_stage, config.codebook_size)
        # float64 on the CPU, not a weight
        self.alphas_cumprod = linear_alphas_cumprod(config.linear_start, config.linear_end,
                                                    config.timesteps)

    @property
    def dtype(self) -> torch.dtype:
        return self.first_stage_model.post_quant_conv.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.first_stage_model.post_quant_conv.weight.device

    def predict_noise(self, latents: torch.Tensor, low_res: torch.Tensor,
                      timestep: int) -> torch.Tensor:
        """eps of `latents` at `timestep` (float32), the model run over overlapping tiles."""
        unet = self.model.diffusion_model
        joined = torch.cat([latents, low_res], dim=1)
        timesteps = torch.full((joined.shape[0],), timestep, device=joined.device)
        return blend_tiles(joined, TILE, TILE_OVERLAP, 1, self.config.unet.out_channels,
                           lambda tile: unet(tile, timesteps, None))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels in about [-1, 1] (float32), 4x the latent's size; a large latent is decoded in
        overlapping tiles (as LDM's split-input mode does), so memory follows the tile size."""
        return blend_tiles(latents / self.config.scale_factor, TILE, TILE_OVERLAP, UPSCALE,
                           self.config.first_stage.out_channels, self.first_stage_model.decode)


def read_ldsr_config(yaml_path: Path) -> LDSRConfig:
    if not yaml_path.is_file():
        raise LDSRError(f"LDSR needs its project.yaml beside the weights: {yaml_path} is missing")
    return parse_ldsr_config(yaml_path.read_text(encoding="utf-8"))


def load_ldsr(weights_path: Path, yaml_path: Path, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32, allow_unsafe_pickle: bool = False) -> LDSRModel:
    """Build the networks from project.yaml and load the weights strictly (the schedule
    buffers and EMA copies of the training checkpoint are ignored, as for SD checkpoints)."""
    config = read_ldsr_config(yaml_path)
    try:
        state_dict = read_state_dict(weights_path, allow_unsafe_pickle=allow_unsafe_pickle)
    except CheckpointLoadError as error:
        raise LDSRError(str(error)) from error
    with torch.device("meta"):
        model = LDSRModel(config)
    try:
        load_weights_strict(model, state_dict, weights_path, device=device, dtype=dtype)
    except CheckpointLoadError as error:
        raise LDSRError(f"{weights_path.name} does not fit project.yaml: {error.reason}") \
            from error
    return model.eval()


def ddim_timesteps(steps: int, timesteps: int) -> list[int]:
    """LDM's "uniform" DDIM spacing: every (T // steps)-th timestep, shifted by one. Exactly
    `steps` of them (LDM's own list runs past the last timestep when T % steps leaves room)."""
    if not 1 <= steps <= timesteps // 2:
        raise LDSRError(f"LDSR steps must be between 1 and {timesteps // 2}, got {steps}")
    stride = timesteps // steps
    return [t + 1 for t in range(0, stride * steps, stride)]


@torch.inference_mode()
def sample_latents(model: LDSRModel, low_res: torch.Tensor, steps: int, *,
                   generator: torch.Generator, eta: float = ETA,
                   on_step: StepCallback | None = None) -> torch.Tensor:
    """DDIM from noise to the latent of `low_res` [B, 3, h, w] in [-1, 1] (float32 result)."""
    config = model.config
    alphas = model.alphas_cumprod
    schedule = ddim_timesteps(steps, config.timesteps)
    shape = (low_res.shape[0], config.unet.out_channels, *low_res.shape[-2:])
    x = torch.randn(shape, generator=generator, dtype=torch.float32).to(model.device)
    low_res = low_res.to(device=model.device, dtype=model.dtype)
    for index in reversed(range(len(schedule))):
        alpha = float(alphas[schedule[index]])
        alpha_prev = float(alphas[schedule[index - 1]] if index > 0 else alphas[0])
        sigma = eta * math.sqrt((1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev))
        eps = model.predict_noise(x.to(model.dtype), low_res, schedule[index])
        predicted_x0 = (x - math.sqrt(1 - alpha) * eps) / math.sqrt(alpha)
        x = (math.sqrt(alpha_prev) * predicted_x0
             + math.sqrt(max(1 - alpha_prev - sigma ** 2, 0.0)) * eps)
        if sigma > 0:
            noise = torch.randn(shape, generator=generator, dtype=torch.float32)
            x = x + sigma * noise.to(x.device)
        if on_step is not None:
            on_step(len(schedule) - index, len(schedule))
    return x


def upscale_4x(model: LDSRModel, image: Image.Image, steps: int, *, seed: int = 0,
               on_step: StepCallback | None = None) -> Image.Image:
    """`image` at exactly 4 times its size: padded with its edge pixels to multiples of 64 (at
    least 128), sampled, decoded, and the padding cut off again."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    padded_h = max(2, math.ceil(height / PAD_MULTIPLE)) * PAD_MULTIPLE
    padded_w = max(2, math.ceil(width / PAD_MULTIPLE)) * PAD_MULTIPLE
    padded = np.pad(rgb, ((0, padded_h - height), (0, padded_w - width), (0, 0)), mode="edge")
    low_res = torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    generator = torch.Generator().manual_seed(seed)
    latents = sample_latents(model, low_res, steps, generator=generator, on_step=on_step)
    with torch.inference_mode():
        decoded = model.decode(latents.to(model.dtype)).clamp(-1, 1)
    pixels = ((decoded[0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(pixels[: height * UPSCALE, : width * UPSCALE])


def super_resolution(model: LDSRModel, image: Image.Image, scale: float, steps: int, *,
                     seed: int = 0, on_step: StepCallback | None = None) -> Image.Image:
    """A1111's `super_resolution`: for a scale below 4 the image is first shrunk (Lanczos) to
    scale / 4 of its size, so the 4x model lands on the requested scale."""
    pre_scale = scale / UPSCALE
    if pre_scale < 1:
        size = (max(1, math.ceil(image.width * pre_scale)),
                max(1, math.ceil(image.height * pre_scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return upscale_4x(model, image, steps, seed=seed, on_step=on_step)
