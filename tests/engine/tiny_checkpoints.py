"""Tiny random-weight checkpoints in the real file formats (real key names, tiny shapes).

The engine infers every size from the shapes, so these files run exactly the code a full-size
checkpoint does. Text encoders keep CLIP's 49408-token vocabulary and 77 positions so the real
tokenizer's ids index them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors.torch import save_file

from modules.engine.configs import ModelConfig, TextEncoderConfig, UNetConfig, VAEConfig
from modules.engine.sd_model import StableDiffusionModel, ldm_alphas_cumprod
from modules.engine.vae import AutoencoderKL

KINDS = ("sd1", "sd1_inpaint", "sd2_v", "sdxl", "sdxl_refiner")
# "alt" (Alt-Diffusion: SD1 UNet, XLM-R text tower) needs the tokenizer of tests/alt_diffusion_files
TINY_XLMR_VOCAB = 122                  # the tiny sentencepiece model's 120 pieces + <s>/<mask>
SDXL_SIZE_EMBEDDING_WIDTH = 256        # each SDXL size/crop/aesthetic value: 256-dim Fourier
WEIGHT_NOISE = 0.02                    # added to every weight so zero-initialised layers are live


def _output_depths(transformer_depth: tuple[int, ...], num_res_blocks: int) -> tuple[int, ...]:
    return tuple(depth for depth in reversed(transformer_depth) for _ in range(num_res_blocks + 1))


def _unet(*, in_channels: int = 4, model_channels: int, channel_mult: tuple[int, ...],
          num_res_blocks: int, transformer_depth: tuple[int, ...], transformer_depth_middle: int,
          context_dim: int, sd1_heads: bool, adm_in_channels: int | None = None) -> UNetConfig:
    return UNetConfig(
        in_channels=in_channels, out_channels=4, model_channels=model_channels,
        channel_mult=channel_mult, num_res_blocks=num_res_blocks,
        transformer_depth=transformer_depth, transformer_depth_middle=transformer_depth_middle,
        transformer_depth_output=_output_depths(transformer_depth, num_res_blocks),
        context_dim=context_dim,
        num_heads=8 if sd1_heads else -1, num_head_channels=-1 if sd1_heads else 64,
        use_linear_in_transformer=not sd1_heads, adm_in_channels=adm_in_channels,
    )


def _vae(scaling_factor: float) -> VAEConfig:
    # four levels keep the real 8x latent reduction
    return VAEConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1, scaling_factor=scaling_factor)


def _clip_l(width: int, default_layer: int) -> TextEncoderConfig:
    return TextEncoderConfig(kind="clip_l", width=width, layers=2, heads=1, intermediate=2 * width,
                             projection_dim=None, act="quick_gelu", default_layer=default_layer,
                             pad_token=49407)


def _open_clip(width: int, projection_dim: int) -> TextEncoderConfig:
    return TextEncoderConfig(kind="open_clip", width=width, layers=2, heads=1,
                             intermediate=4 * width, projection_dim=projection_dim, act="gelu",
                             default_layer=-2, pad_token=0)


def tiny_model_config(kind: str) -> ModelConfig:
    """The architecture `write_tiny_checkpoint(path, kind)` writes: what detection finds (for
    "sd2_v" with `v_prediction=True`, as v-prediction is not visible in weights)."""
    if kind in ("sd1", "sd1_inpaint"):
        clip = _clip_l(32, -1)
        return ModelConfig(
            family="sd1", variant="inpaint" if kind == "sd1_inpaint" else "normal",
            unet=_unet(in_channels=9 if kind == "sd1_inpaint" else 4, model_channels=32,
                       channel_mult=(1, 1, 2), num_res_blocks=1, transformer_depth=(1, 1, 0),
                       transformer_depth_middle=1, context_dim=clip.width, sd1_heads=True),
            vae=_vae(0.18215), text_encoders=(("cond_stage_model.", clip),))
    if kind == "alt":
        # one head: the head count is not in the shapes, detection assumes XLM-R's 64 wide
        xlmr = TextEncoderConfig(kind="xlm_roberta", width=48, layers=2, heads=1,
                                 intermediate=96, vocab_size=TINY_XLMR_VOCAB, max_positions=514,
                                 projection_dim=32, act="gelu", pad_token=1, pooler=True)
        return ModelConfig(
            family="sd1",
            unet=_unet(model_channels=32, channel_mult=(1, 1, 2), num_res_blocks=1,
                       transformer_depth=(1, 1, 0), transformer_depth_middle=1,
                       context_dim=xlmr.projection_dim, sd1_heads=True),
            vae=_vae(0.18215), text_encoders=(("cond_stage_model.", xlmr),))
    if kind == "sd2_v":
        open_clip = _open_clip(32, 32)
        return ModelConfig(
            family="sd2", prediction="v",
            unet=_unet(model_channels=64, channel_mult=(1, 1), num_res_blocks=1,
                       transformer_depth=(1, 1), transformer_depth_middle=1,
                       context_dim=open_clip.width, sd1_heads=False),
            vae=_vae(0.18215), text_encoders=(("cond_stage_model.", open_clip),))
    if kind == "sdxl":
        clip, big_g = _clip_l(32, -2), _open_clip(48, 32)
        return ModelConfig(
            family="sdxl",
            # ADM vector: pooled bigG text + 6 size values (original, crop, target)
            unet=_unet(model_channels=64, channel_mult=(1, 1), num_res_blocks=2,
                       transformer_depth=(0, 1), transformer_depth_middle=1,
                       context_dim=clip.width + big_g.width, sd1_heads=False,
                       adm_in_channels=big_g.projection_dim + 6 * SDXL_SIZE_EMBEDDING_WIDTH),
            vae=_vae(0.13025),
            text_encoders=(("conditioner.embedders.0.", clip), ("conditioner.embedders.1.", big_g)))
    if kind == "sdxl_refiner":
        big_g = _open_clip(48, 32)
        return ModelConfig(
            family="sdxl_refiner",
            # ADM vector: pooled bigG text + 5 values (original size, crop, aesthetic score)
            unet=_unet(model_channels=64, channel_mult=(1, 1), num_res_blocks=1,
                       transformer_depth=(0, 1), transformer_depth_middle=1,
                       context_dim=big_g.width, sd1_heads=False,
                       adm_in_channels=big_g.projection_dim + 5 * SDXL_SIZE_EMBEDDING_WIDTH),
            vae=_vae(0.13025), text_encoders=(("conditioner.embedders.0.", big_g),))
    raise ValueError(f"unknown tiny checkpoint kind {kind!r}; expected one of {KINDS}")


def _randomised_state_dict(module: torch.nn.Module, seed: int,
                           dtype: torch.dtype) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, tensor in module.state_dict().items():
        if tensor.is_floating_point():
            tensor = tensor + WEIGHT_NOISE * torch.randn(tensor.shape, generator=generator)
            tensor = tensor.to(dtype)
        state[key] = tensor.contiguous()
    return state


def _build_seeded(factory, seed: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):   # keep the caller's global RNG untouched
        torch.manual_seed(seed)
        return factory()


def _extra_keys(kind: str) -> dict[str, torch.Tensor]:
    """Non-weight entries real files carry, which loaders must accept and ignore."""
    alphas_cumprod = ldm_alphas_cumprod()
    if kind.startswith("sdxl"):
        extras = {"denoiser.sigmas": ((1 - alphas_cumprod) / alphas_cumprod).sqrt()}
        if kind == "sdxl":
            extras["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] = \
                torch.arange(77)[None]
        return extras
    betas = 1 - alphas_cumprod / torch.cat([torch.ones(1), alphas_cumprod[:-1]])
    extras = {
        "betas": betas, "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": torch.cat([torch.ones(1), alphas_cumprod[:-1]]),
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
        "model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(0),
    }
    if kind.startswith("sd1"):
        extras["cond_stage_model.transformer.text_model.embeddings.position_ids"] = \
            torch.arange(77)[None]
    if kind == "alt":       # transformers < 4.31 stored RoBERTa's position ids too
        extras["cond_stage_model.roberta.embeddings.position_ids"] = torch.arange(514)[None]
    return extras


def write_tiny_checkpoint(path: str | Path, kind: str, *, seed: int = 0,
                          dtype: torch.dtype = torch.float32, extra_keys: bool = True,
                          metadata: dict[str, str] | None = None,
                          config: ModelConfig | None = None) -> Path:
    """Write a tiny random `.safetensors` checkpoint of `kind` (see KINDS) with real key names
    (and `metadata` added to the header).

    extra_keys adds the non-weight entries of real files (CLIP position_ids, DDPM schedule
    buffers, EMA scalars, SDXL denoiser sigmas). `config` replaces the kind's architecture (a
    variant of it: `kind` still names the extra entries).
    """
    config = config or tiny_model_config(kind)
    model = _build_seeded(lambda: StableDiffusionModel(config), seed)
    state = _randomised_state_dict(model, seed, dtype)
    if extra_keys:
        state.update(_extra_keys(kind))
    path = Path(path)
    save_file(state, str(path), metadata={"format": "pt", "tiny_kind": kind, **(metadata or {})})
    return path


def tiny_vae_config() -> VAEConfig:
    """The architecture of `write_tiny_vae` (that of the tiny SD1/SD2 checkpoints)."""
    return _vae(0.18215)


def write_tiny_vae(path: str | Path, seed: int = 0) -> Path:
    """A standalone VAE file (keys without `first_stage_model.`) fitting the tiny checkpoints,
    with the `model_ema.*` and `loss.*` entries some real VAE files carry."""
    vae = _build_seeded(lambda: AutoencoderKL(tiny_vae_config()), seed)
    state = _randomised_state_dict(vae, seed, torch.float32)
    state["model_ema.decay"] = torch.tensor(0.9999)
    state["loss.logvar"] = torch.zeros(())
    path = Path(path)
    save_file(state, str(path))
    return path


def tiny_controlnet_state(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of a ControlNet fitting the tiny checkpoint of `kind` (original key names,
    without `control_model.`). The zero convs get noise too, so the residuals are not zero."""
    from modules.engine.controlnet import ControlNetConfig, ControlNetModel

    config = tiny_model_config(kind)
    family = {"sd1": "sd1", "sd1_inpaint": "sd1", "sd2_v": "sd2", "sdxl": "sdxl"}[kind]
    unet = dataclasses.replace(config.unet, in_channels=4)
    model = _build_seeded(lambda: ControlNetModel(ControlNetConfig(unet=unet, family=family)),
                          seed)
    return _randomised_state_dict(model, seed, torch.float32)


def write_tiny_controlnet(path: str | Path, kind: str = "sd1", *, seed: int = 0,
                          prefixed: bool | None = None) -> Path:
    """A tiny ControlNet file: `.pth` with the `control_model.` prefix (ControlNet 1.1's
    convention; a pickle read with weights_only), `.safetensors` without it (the extracted
    files'), unless `prefixed` says otherwise."""
    path = Path(path)
    state = tiny_controlnet_state(kind, seed)
    if prefixed if prefixed is not None else path.suffix != ".safetensors":
        state = {f"control_model.{key}": value for key, value in state.items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
