"""Architecture detection: which Stable Diffusion family a state dict holds and every size of its
networks, read from key names and tensor shapes only (never from file names), so a tiny test
checkpoint and a full-size one go through the same code."""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from modules.engine.configs import ModelConfig, TextEncoderConfig, UNetConfig, VAEConfig

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model."
SDXL_EMBEDDER_PREFIX = "conditioner.embedders."
CLIP_L_BODY = "transformer.text_model."
OPEN_CLIP_BODY = "model."
XLMR_BODY = "roberta."
XLMR_HEAD_WIDTH = 64
XLMR_PAD_TOKEN = 1
ALT_M18_PROJECTION = 1024      # A1111: a 1024-wide projection is AltDiffusion-m18 (SD2 UNet)

SD_SCALING_FACTOR = 0.18215
SDXL_SCALING_FACTOR = 0.13025
CLIP_HEAD_WIDTH = 64
CLIP_EOS_TOKEN = 49407
OPEN_CLIP_PAD_TOKEN = 0
VARIANT_BY_UNET_IN_CHANNELS = {4: "normal", 9: "inpaint", 8: "edit"}
# keys of standalone VAE files that are not VAE weights (A1111 drops them as well)
VAE_IGNORED_KEY_PREFIXES = ("loss.", "model_ema.")

StateDict = Mapping[str, torch.Tensor]


class DetectionError(ValueError):
    """The state dict is not a checkpoint of a known architecture."""


def _shape(state_dict: StateDict, key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise DetectionError(f"unrecognised checkpoint layout: missing key {key!r}")
    return tuple(state_dict[key].shape)


def _indices(state_dict: StateDict, prefix: str) -> list[int]:
    """Sorted distinct integers N of keys `{prefix}N.*`."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(match.group(1)) for key in state_dict if (match := pattern.match(key))}
    return sorted(found)


def _has_prefix(state_dict: StateDict, prefix: str) -> bool:
    return any(key.startswith(prefix) for key in state_dict)


# ----------------------------------------------------------------------------------------- UNet

def _transformer_depth(state_dict: StateDict, block_prefix: str) -> int:
    return len(_indices(state_dict, f"{block_prefix}transformer_blocks."))


def detect_unet_config(state_dict: StateDict, family: str, *,
                       prefix: str = UNET_PREFIX) -> UNetConfig:
    """The UNet's sizes from the keys under `prefix` (a ControlNet's encoder copy, which has no
    output blocks, is read the same way with prefix "")."""
    p = prefix
    model_channels, in_channels = _shape(state_dict, f"{p}input_blocks.0.0.weight")[:2]
    out_key = f"{p}out.2.weight"
    out_channels = _shape(state_dict, out_key)[0] if out_key in state_dict else 4

    # input_blocks 1.. are, per level: num_res_blocks x [ResBlock, (SpatialTransformer)], then a
    # Downsample (`op`) block except after the last level
    channel_mult: list[int] = []
    transformer_depth: list[int] = []
    res_blocks_per_level: list[int] = []
    res_blocks_in_level = 0
    for index in _indices(state_dict, f"{p}input_blocks.")[1:]:
        block = f"{p}input_blocks.{index}."
        if f"{block}0.op.weight" in state_dict:
            res_blocks_per_level.append(res_blocks_in_level)
            res_blocks_in_level = 0
            continue
        if res_blocks_in_level == 0:
            channel_mult.append(_shape(state_dict, f"{block}0.out_layers.3.weight")[0] // model_channels)
            transformer_depth.append(_transformer_depth(state_dict, f"{block}1."))
        res_blocks_in_level += 1
    res_blocks_per_level.append(res_blocks_in_level)
    if not channel_mult or len(set(res_blocks_per_level)) != 1:
        raise DetectionError(f"unsupported UNet layout: res blocks per level {res_blocks_per_level}")

    output_depths = tuple(_transformer_depth(state_dict, f"{p}output_blocks.{index}.1.")
                          for index in _indices(state_dict, f"{p}output_blocks."))
    cross_attention_keys = [key for key in state_dict
                            if key.startswith(p) and key.endswith("attn2.to_k.weight")]
    proj_in_keys = [key for key in state_dict if key.startswith(p) and key.endswith("proj_in.weight")]
    adm_key = f"{p}label_emb.0.0.weight"
    uses_head_channels = family != "sd1"
    return UNetConfig(
        in_channels=in_channels,
        out_channels=out_channels,
        model_channels=model_channels,
        channel_mult=tuple(channel_mult),
        num_res_blocks=res_blocks_per_level[0],
        transformer_depth=tuple(transformer_depth),
        transformer_depth_middle=_transformer_depth(state_dict, f"{p}middle_block.1."),
        transformer_depth_output=output_depths,
        context_dim=state_dict[cross_attention_keys[0]].shape[1] if cross_attention_keys else 0,
        # SD1 fixes the head count, SD2 / SDXL the head width
        num_heads=-1 if uses_head_channels else 8,
        num_head_channels=64 if uses_head_channels else -1,
        use_linear_in_transformer=bool(proj_in_keys) and state_dict[proj_in_keys[0]].ndim == 2,
        adm_in_channels=_shape(state_dict, adm_key)[1] if adm_key in state_dict else None,
    )


# ------------------------------------------------------------------------------------------ VAE

def _detect_vae(state_dict: StateDict, prefix: str, scaling_factor: float) -> VAEConfig:
    ch, in_channels = _shape(state_dict, f"{prefix}encoder.conv_in.weight")[:2]
    levels = _indices(state_dict, f"{prefix}encoder.down.")
    if not levels:
        raise DetectionError("unrecognised VAE layout: no encoder.down.* keys")
    channel_mult = tuple(_shape(state_dict, f"{prefix}encoder.down.{level}.block.0.conv1.weight")[0] // ch
                         for level in levels)
    return VAEConfig(
        in_channels=in_channels,
        out_channels=_shape(state_dict, f"{prefix}decoder.conv_out.weight")[0],
        z_channels=_shape(state_dict, f"{prefix}decoder.conv_in.weight")[1],
        embed_dim=_shape(state_dict, f"{prefix}post_quant_conv.weight")[1],
        ch=ch,
        ch_mult=channel_mult,
        num_res_blocks=len(_indices(state_dict, f"{prefix}encoder.down.0.block.")),
        attn_linear=len(_shape(state_dict, f"{prefix}encoder.mid.attn_1.q.weight")) == 2,
        scaling_factor=scaling_factor,
    )


def extract_vae_state_dict(state_dict: StateDict) -> dict[str, torch.Tensor]:
    """The VAE weights of a standalone VAE file, keyed without `first_stage_model.` (stripped when a
    VAE was extracted with it) and without training-only `loss.*` / `model_ema.*` entries."""
    if _has_prefix(state_dict, f"{VAE_PREFIX}encoder."):
        return {key[len(VAE_PREFIX):]: value for key, value in state_dict.items()
                if key.startswith(VAE_PREFIX)}
    return {key: value for key, value in state_dict.items()
            if not key.startswith(VAE_IGNORED_KEY_PREFIXES)}


def detect_vae_config(state_dict: StateDict, *,
                      scaling_factor: float = SD_SCALING_FACTOR) -> VAEConfig:
    """Config of a standalone VAE file. The scaling factor cannot be read from shapes (the SDXL
    VAE has the SD one's shapes); it comes from the model the VAE is used with."""
    vae_weights = extract_vae_state_dict(state_dict)
    if "encoder.conv_in.weight" not in vae_weights:
        if _has_prefix(vae_weights, "encoder.down_blocks."):
            raise DetectionError("diffusers-format VAE files are not supported; "
                                 "use a VAE in the original (LDM) format")
        raise DetectionError("not a VAE: no encoder.conv_in.weight key")
    return _detect_vae(vae_weights, "", scaling_factor)


# -------------------------------------------------------------------------------- text encoders

def _detect_clip_l(state_dict: StateDict, prefix: str, default_layer: int) -> TextEncoderConfig:
    p = f"{prefix}{CLIP_L_BODY}"
    vocab_size, width = _shape(state_dict, f"{p}embeddings.token_embedding.weight")
    return TextEncoderConfig(
        kind="clip_l",
        width=width,
        layers=len(_indices(state_dict, f"{p}encoder.layers.")),
        heads=max(1, width // CLIP_HEAD_WIDTH),
        intermediate=_shape(state_dict, f"{p}encoder.layers.0.mlp.fc1.weight")[0],
        vocab_size=vocab_size,
        max_positions=_shape(state_dict, f"{p}embeddings.position_embedding.weight")[0],
        projection_dim=None,
        act="quick_gelu",
        default_layer=default_layer,
        pad_token=CLIP_EOS_TOKEN,
    )


def _detect_open_clip(state_dict: StateDict, prefix: str, default_layer: int) -> TextEncoderConfig:
    p = f"{prefix}{OPEN_CLIP_BODY}"
    vocab_size, width = _shape(state_dict, f"{p}token_embedding.weight")
    projection_key = f"{p}text_projection"
    return TextEncoderConfig(
        kind="open_clip",
        width=width,
        layers=len(_indices(state_dict, f"{p}transformer.resblocks.")),
        heads=max(1, width // CLIP_HEAD_WIDTH),
        intermediate=_shape(state_dict, f"{p}transformer.resblocks.0.mlp.c_fc.weight")[0],
        vocab_size=vocab_size,
        max_positions=_shape(state_dict, f"{p}positional_embedding")[0],
        projection_dim=_shape(state_dict, projection_key)[1] if projection_key in state_dict else None,
        act="gelu",
        default_layer=default_layer,
        pad_token=OPEN_CLIP_PAD_TOKEN,
    )


def _xlmr_projection_key(state_dict: StateDict, prefix: str) -> str:
    """The linear that conditions the UNet: m18's `transformation_pre`, else `transformation`."""
    pre = f"{prefix}transformation_pre.weight"
    return pre if pre in state_dict else f"{prefix}transformation.weight"


def _detect_xlm_roberta(state_dict: StateDict, prefix: str) -> TextEncoderConfig:
    p = f"{prefix}{XLMR_BODY}"
    vocab_size, width = _shape(state_dict, f"{p}embeddings.word_embeddings.weight")
    projection_key = _xlmr_projection_key(state_dict, prefix)
    return TextEncoderConfig(
        kind="xlm_roberta",
        width=width,
        layers=len(_indices(state_dict, f"{p}encoder.layer.")),
        heads=max(1, width // XLMR_HEAD_WIDTH),
        intermediate=_shape(state_dict, f"{p}encoder.layer.0.intermediate.dense.weight")[0],
        vocab_size=vocab_size,
        max_positions=_shape(state_dict, f"{p}embeddings.position_embeddings.weight")[0],
        projection_dim=_shape(state_dict, projection_key)[0],
        act="gelu",
        pad_token=XLMR_PAD_TOKEN,
        pooler=f"{p}pooler.dense.weight" in state_dict,
        pre_transformation=projection_key.endswith("transformation_pre.weight"),
    )


def _detect_family(state_dict: StateDict) -> str:
    first_embedder = f"{SDXL_EMBEDDER_PREFIX}0."
    if _has_prefix(state_dict, f"{first_embedder}{CLIP_L_BODY}"):
        if not _has_prefix(state_dict, f"{SDXL_EMBEDDER_PREFIX}1.{OPEN_CLIP_BODY}"):
            raise DetectionError("SDXL checkpoint without its second (OpenCLIP bigG) text encoder "
                                 "conditioner.embedders.1.model.*")
        return "sdxl"
    if _has_prefix(state_dict, f"{first_embedder}{OPEN_CLIP_BODY}"):
        return "sdxl_refiner"
    if _has_prefix(state_dict, f"{SD1_CLIP_PREFIX}{XLMR_BODY}"):
        # Alt-Diffusion: the UNet is SD1's, or SD2's for m18 (A1111 tells them by the width)
        projection = _shape(state_dict, _xlmr_projection_key(state_dict, SD1_CLIP_PREFIX))[0]
        return "sd2" if projection == ALT_M18_PROJECTION else "sd1"
    if _has_prefix(state_dict, f"{SD1_CLIP_PREFIX}{OPEN_CLIP_BODY}"):
        return "sd2"
    if _has_prefix(state_dict, f"{SD1_CLIP_PREFIX}{CLIP_L_BODY}"):
        return "sd1"
    raise DetectionError("not a Stable Diffusion checkpoint: no text encoder keys "
                         "(cond_stage_model.* or conditioner.embedders.*)")


def _detect_text_encoders(state_dict: StateDict,
                          family: str) -> tuple[tuple[str, TextEncoderConfig], ...]:
    if _has_prefix(state_dict, f"{SD1_CLIP_PREFIX}{XLMR_BODY}"):
        return ((SD1_CLIP_PREFIX, _detect_xlm_roberta(state_dict, SD1_CLIP_PREFIX)),)
    if family == "sd1":
        return ((SD1_CLIP_PREFIX, _detect_clip_l(state_dict, SD1_CLIP_PREFIX, -1)),)
    if family == "sd2":
        # SD2 conditions on the penultimate of 24 layers; files converted from diffusers dropped
        # the last layer (and text_projection with it), so there the last stored layer is the one
        has_projection = f"{SD1_CLIP_PREFIX}{OPEN_CLIP_BODY}text_projection" in state_dict
        default_layer = -2 if has_projection else -1
        return ((SD1_CLIP_PREFIX, _detect_open_clip(state_dict, SD1_CLIP_PREFIX, default_layer)),)
    first, second = f"{SDXL_EMBEDDER_PREFIX}0.", f"{SDXL_EMBEDDER_PREFIX}1."
    if family == "sdxl":
        return ((first, _detect_clip_l(state_dict, first, -2)),
                (second, _detect_open_clip(state_dict, second, -2)))
    return ((first, _detect_open_clip(state_dict, first, -2)),)


# -------------------------------------------------------------------------------------- model

def detect_model_config(state_dict: StateDict, *, v_prediction: bool | None = None) -> ModelConfig:
    """The full architecture of an SD1.x / SD2.x / SDXL (base or refiner) checkpoint.

    v-prediction cannot be seen in the weights; the caller decides it (sidecar yaml, option).
    """
    if not _has_prefix(state_dict, f"{UNET_PREFIX}input_blocks."):
        raise DetectionError("not a Stable Diffusion checkpoint: no UNet keys "
                             f"({UNET_PREFIX}input_blocks.*)")
    if not _has_prefix(state_dict, f"{VAE_PREFIX}encoder."):
        raise DetectionError(f"checkpoint has no VAE keys ({VAE_PREFIX}encoder.*)")
    family = _detect_family(state_dict)
    unet = detect_unet_config(state_dict, family)
    variant = VARIANT_BY_UNET_IN_CHANNELS.get(unet.in_channels)
    if variant is None:
        raise DetectionError(f"unsupported UNet input channel count {unet.in_channels}")
    is_sdxl = family in ("sdxl", "sdxl_refiner")
    if is_sdxl and unet.adm_in_channels is None:
        raise DetectionError("SDXL text encoders found but the UNet has no label_emb (ADM) input")
    scaling_factor = SDXL_SCALING_FACTOR if is_sdxl else SD_SCALING_FACTOR
    return ModelConfig(
        family=family,
        variant=variant,
        prediction="v" if v_prediction else "eps",
        unet=unet,
        vae=_detect_vae(state_dict, VAE_PREFIX, scaling_factor),
        text_encoders=_detect_text_encoders(state_dict, family),
    )
