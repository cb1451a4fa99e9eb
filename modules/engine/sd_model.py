"""A whole Stable Diffusion checkpoint as one module whose `state_dict()` keys are the file's keys,
and its strict loader.

Layout (LDM / sgm names): `model.diffusion_model` (UNet), `first_stage_model` (VAE), and either
`cond_stage_model` (SD1.x CLIP-L, SD2.x OpenCLIP ViT-H) or `conditioner.embedders.N` (SDXL base:
CLIP-L + OpenCLIP bigG; refiner: bigG only).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from collections.abc import Callable, Mapping

from typing import Any

import torch
from torch import nn

from modules.engine.checkpoint_io import (CheckpointLoadError, read_checkpoint_header,
                                          read_state_dict)
from modules.engine.configs import ModelConfig, TextEncoderConfig
from modules.engine.safetensors_stream import SafetensorsReader
from modules.engine.detection import (
    CLIP_L_BODY, SD1_CLIP_PREFIX, SDXL_EMBEDDER_PREFIX, VAE_PREFIX, DetectionError,
    detect_model_config,
    detect_vae_config, extract_vae_state_dict,
)
from modules.engine.text_encoders import CLIPTextEncoder, OpenCLIPTextEncoder
from modules.engine.xlm_roberta import TokenizerFilesError, XLMRobertaTextEncoder, \
    XLMRobertaTokenizer
from modules.engine.unet import UNetModel
from modules.engine.vae import AutoencoderKL

# The LDM training schedule ("scaled linear"): betas = linspace(sqrt(b0), sqrt(b1), 1000) ** 2
LINEAR_START, LINEAR_END, NUM_TRAIN_TIMESTEPS = 0.00085, 0.012, 1000

# Non-weight entries real files carry: LDM's DDPM schedule buffers, sgm's denoiser sigmas and
# EMA training copies. They are ignored on load (the schedule is recomputed).
SCHEDULE_BUFFER_KEYS = frozenset({
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "denoiser.sigmas",
})
IGNORED_KEY_PREFIXES = ("model_ema.",)
OPTIONAL_WEIGHT_SUFFIXES = ("model.logit_scale",)   # files converted from diffusers lack it
MAX_LISTED_KEYS = 10

StrPath = str | os.PathLike[str]


def linear_alphas_cumprod(start: float, end: float,
                          timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """alphas_cumprod of LDM's "linear" schedule (a linspace of the square roots of the betas,
    squared), float64 on the CPU (also when called while building on the meta device)."""
    betas = torch.linspace(start ** 0.5, end ** 0.5, timesteps, dtype=torch.float64,
                           device="cpu") ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def ldm_alphas_cumprod() -> torch.Tensor:
    """alphas_cumprod of the SD training schedule, float32 [1000] on the CPU."""
    return linear_alphas_cumprod(LINEAR_START, LINEAR_END).to(torch.float32)


def build_text_encoder(config: TextEncoderConfig) -> nn.Module:
    if config.kind == "clip_l":
        return CLIPTextEncoder(config)
    if config.kind == "open_clip":
        return OpenCLIPTextEncoder(config)
    if config.kind == "xlm_roberta":
        return XLMRobertaTextEncoder(config)
    raise ValueError(f"unknown text encoder kind {config.kind!r}")


class DiffusionWrapper(nn.Module):
    """LDM's `model` attribute: holds the UNet as `diffusion_model`."""

    def __init__(self, unet: UNetModel):
        super().__init__()
        self.diffusion_model = unet


class _Conditioner(nn.Module):
    """sgm's `GeneralConditioner`: the SDXL text encoders as `embedders.N` (the size embedders
    2-4 have no weights and are computed by the conditioning code)."""

    def __init__(self, embedders: list[nn.Module]):
        super().__init__()
        self.embedders = nn.ModuleList(embedders)


class StableDiffusionModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.prediction = config.prediction
        self.model = DiffusionWrapper(UNetModel(config.unet))
        self.first_stage_model = AutoencoderKL(config.vae)
        encoders = [build_text_encoder(encoder_config) for _, encoder_config in config.text_encoders]
        prefixes = [prefix for prefix, _ in config.text_encoders]
        if config.is_sdxl:
            expected = [f"{SDXL_EMBEDDER_PREFIX}{index}." for index in range(len(encoders))]
            if prefixes != expected:
                raise ValueError(f"SDXL text encoder prefixes must be {expected}, got {prefixes}")
            self.conditioner = _Conditioner(encoders)
        else:
            if prefixes != [SD1_CLIP_PREFIX]:
                raise ValueError(f"expected one text encoder at {SD1_CLIP_PREFIX!r}, got {prefixes}")
            self.cond_stage_model = encoders[0]
        # not a buffer: it is not stored in the model's state dict, and stays float32 on the CPU
        self.alphas_cumprod = ldm_alphas_cumprod()
        #: the model's own prompt tokenizer when it is not CLIP's (Alt-Diffusion's XLM-R)
        self.tokenizer: XLMRobertaTokenizer | None = None

    @property
    def text_encoders(self) -> list[tuple[nn.Module, TextEncoderConfig]]:
        """The text encoders in conditioning (SDXL concatenation) order, with their configs."""
        modules = list(self.conditioner.embedders) if self.config.is_sdxl else [self.cond_stage_model]
        return [(module, encoder_config)
                for module, (_, encoder_config) in zip(modules, self.config.text_encoders)]

    @property
    def unet(self) -> UNetModel:
        return self.model.diffusion_model

    @property
    def device(self) -> torch.device:
        return self.model.diffusion_model.out[2].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.diffusion_model.out[2].weight.dtype

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, crossattn: torch.Tensor,
                    vector: torch.Tensor | None = None,
                    concat: torch.Tensor | None = None, control: Any = None) -> torch.Tensor:
        """UNet output for latents x at timesteps t. `concat` (inpainting mask + masked latent, or
        the instruct-pix2pix image latent) is joined to x on the channel axis first. `control`
        (a job's ControlNetPatch) adds its residuals to the UNet's skips."""
        residuals = None
        if control is not None:
            residuals = control(self.config.unet, x, t, crossattn, vector)
        if concat is not None:
            x = torch.cat([x, concat.to(x)], dim=1)
        return self.model.diffusion_model(x, t, crossattn, y=vector, control=residuals)

    def encode_first_stage(self, images: torch.Tensor,
                           generator: torch.Generator | None = None) -> torch.Tensor:
        return self.first_stage_model.encode(images, generator=generator)

    def decode_first_stage(self, latents: torch.Tensor) -> torch.Tensor:
        return self.first_stage_model.decode(latents)

    def reset_non_persistent_buffers(self) -> None:
        """Recompute the text encoders' buffers that files do not store (after a meta build)."""
        for encoder, _ in self.text_encoders:
            encoder.reset_non_persistent_buffers()


# ------------------------------------------------------------------------------------ loading

def _normalize_legacy_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Very early SD1.x files store CLIP keys without `text_model.`; A1111 renames them too."""
    legacy = re.compile(r"^cond_stage_model\.transformer\.(?!text_model\.)")
    if not any(legacy.match(key) for key in state_dict):
        return state_dict
    return {legacy.sub(f"{SD1_CLIP_PREFIX}{CLIP_L_BODY}", key): value
            for key, value in state_dict.items()}


def _is_ignorable(key: str, non_persistent: set[str]) -> bool:
    return key in SCHEDULE_BUFFER_KEYS or key.startswith(IGNORED_KEY_PREFIXES) or key in non_persistent


def _format_keys(title: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    more = f" (+{len(keys) - MAX_LISTED_KEYS} more)" if len(keys) > MAX_LISTED_KEYS else ""
    return f"{len(keys)} {title}: {shown}{more}"


def _cast_like(value: torch.Tensor, built: torch.Tensor, device: torch.device | str,
               dtype: torch.dtype) -> torch.Tensor:
    """`value` on device in dtype (floats only), keeping the memory format the module chose for
    that tensor (assign=True would otherwise replace e.g. the UNet's channels-last conv weights)."""
    target_dtype = dtype if value.is_floating_point() else value.dtype
    if built.ndim == 4 and not built.is_contiguous() and \
            built.is_contiguous(memory_format=torch.channels_last):
        return value.to(device=device, dtype=target_dtype, memory_format=torch.channels_last)
    return value.to(device=device, dtype=target_dtype)


def _check_weights_fit(module: nn.Module, state_dict: Mapping[str, torch.Tensor], path: StrPath,
                       *, optional_suffixes: tuple[str, ...] = ()) -> None:
    """Raise CheckpointLoadError unless every key of the meta-built `module` is in `state_dict`
    (tensors or the file's meta header) with its shape and a floating dtype, and nothing else is,
    except the known non-weight entries and the optional weights ending in `optional_suffixes`."""
    expected = module.state_dict()
    weights = _weights_only(module, state_dict)
    missing = [key for key in expected if key not in weights]
    optional_missing = [key for key in missing if key.endswith(optional_suffixes)]
    missing = [key for key in missing if key not in optional_missing]
    unexpected = [key for key in weights if key not in expected]
    mis_shaped = [f"{key} {tuple(weights[key].shape)} != {tuple(expected[key].shape)}"
                  for key in expected if key in weights and weights[key].shape != expected[key].shape]
    mis_typed = [f"{key} {weights[key].dtype}" for key in expected
                 if key in weights and expected[key].is_floating_point()
                 and not weights[key].is_floating_point()]
    if missing or unexpected or mis_shaped or mis_typed:
        problems = [_format_keys(title, keys) for title, keys in (
            ("missing keys", missing), ("unexpected keys", unexpected),
            ("mis-shaped keys (file != model)", mis_shaped),
            ("weights that are not floating point", mis_typed)) if keys]
        raise CheckpointLoadError(path, "the weights do not fit the detected architecture: "
                                        + "; ".join(problems))


def _weights_only(module: nn.Module,
                  state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    non_persistent = {name for name, _ in module.named_buffers()} - set(module.state_dict())
    return {key: value for key, value in state_dict.items()
            if not _is_ignorable(key, non_persistent)}


def _assign_weights(module: nn.Module, state_dict: dict[str, torch.Tensor], *,
                    device: torch.device | str, dtype: torch.dtype,
                    dtype_overrides: Mapping[str, torch.dtype] | None = None) -> None:
    """Assign the (already checked) file tensors into the meta-built module, cast to dtype on
    device (keys under a prefix of `dtype_overrides` to that prefix's dtype). Each file tensor is
    dropped from `state_dict` as soon as it is cast, so a converted copy never coexists with the
    whole file's tensors."""
    expected = module.state_dict()
    overrides = tuple((dtype_overrides or {}).items())
    cast = {}
    for key in list(_weights_only(module, state_dict)):
        key_dtype = next((value for prefix, value in overrides if key.startswith(prefix)), dtype)
        cast[key] = _cast_like(state_dict.pop(key), expected[key], device, key_dtype)
    module.load_state_dict(cast, strict=False, assign=True)


def _stream_weights(module: nn.Module, path: StrPath, *, device: torch.device | str,
                   dtype: torch.dtype,
                   dtype_overrides: Mapping[str, torch.dtype] | None = None) -> None:
    """Read a safetensors file tensor by tensor (plain reads, no memory map) straight into the
    meta-built module: each tensor is cast and kept before the next is read, so the peak is the
    model's own size plus one tensor (a memory-mapped read holds the whole file besides)."""
    expected = module.state_dict()
    overrides = tuple((dtype_overrides or {}).items())
    cast = {}
    with SafetensorsReader(path) as reader:
        names = _weights_only(module, _normalize_legacy_keys({key: key for key in reader.keys()}))
        for key, name in names.items():
            key_dtype = next((value for prefix, value in overrides if key.startswith(prefix)),
                             dtype)
            cast[key] = _cast_like(reader.read(name), expected[key], device, key_dtype)
    module.load_state_dict(cast, strict=False, assign=True)


def load_weights_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], path: StrPath,
                         *, device: torch.device | str, dtype: torch.dtype) -> None:
    """Check the file's tensors against a meta-built module, then assign them (cast to dtype,
    on device)."""
    _check_weights_fit(module, state_dict, path)
    _assign_weights(module, state_dict, device=device, dtype=dtype)


def _initialise_missing_optional_weights(model: StableDiffusionModel) -> None:
    """Files converted from diffusers lack OpenCLIP's unused logit_scale: use open_clip's init."""
    for encoder, _ in model.text_encoders:
        if isinstance(encoder, OpenCLIPTextEncoder) and encoder.model.logit_scale.is_meta:
            encoder.reset_logit_scale()


def _own_tokenizer(config: ModelConfig, path: StrPath,
                   tokenizer_dir: StrPath | None) -> XLMRobertaTokenizer | None:
    """Alt-Diffusion's XLM-R tokenizer from `tokenizer_dir` (checked before any weight is read,
    so a missing file leaves a previous model loaded); None for CLIP models."""
    encoder_config = config.text_encoders[0][1]
    if encoder_config.kind != "xlm_roberta":
        return None
    if tokenizer_dir is None:
        raise CheckpointLoadError(path, "an Alt-Diffusion checkpoint needs the xlm-roberta-large "
                                        "tokenizer folder, and none was given")
    try:
        tokenizer = XLMRobertaTokenizer.from_folder(Path(tokenizer_dir))
    except TokenizerFilesError as error:
        raise CheckpointLoadError(path, str(error)) from error
    if tokenizer.vocab_size != encoder_config.vocab_size:
        raise CheckpointLoadError(path, f"the tokenizer in {tokenizer_dir} has "
                                        f"{tokenizer.vocab_size} ids but the text encoder "
                                        f"{encoder_config.vocab_size}: not this model's tokenizer")
    return tokenizer


def load_model(path: StrPath, *, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32, v_prediction: bool | None = None,
               allow_unsafe_pickle: bool = False,
               vae_path: StrPath | None = None, vae_dtype: torch.dtype | None = None,
               on_validated: Callable[[], None] | None = None,
               tokenizer_dir: StrPath | None = None) -> StableDiffusionModel:
    """Read, detect and strictly load a checkpoint; optionally replace its VAE from `vae_path`.

    The file's header (names, shapes, dtypes) is checked first: any missing, unexpected,
    mis-shaped or non-float weight raises CheckpointLoadError naming the file and the keys.
    `on_validated` runs then, before a single weight is read: a caller switching models frees the
    previous one there, so two models never sit in memory together. The model is built on the
    meta device and the file's tensors are assigned into it, so the weights exist once in memory.
    """
    header = _normalize_legacy_keys(read_checkpoint_header(path,
                                                           allow_unsafe_pickle=allow_unsafe_pickle))
    try:
        config = detect_model_config(header, v_prediction=v_prediction)
    except DetectionError as error:
        raise CheckpointLoadError(path, str(error)) from error
    with torch.device("meta"):
        model = StableDiffusionModel(config)
    _check_weights_fit(model, header, path, optional_suffixes=OPTIONAL_WEIGHT_SUFFIXES)
    del header
    model.tokenizer = _own_tokenizer(config, path, tokenizer_dir)
    if on_validated is not None:
        on_validated()
    # the VAE is read straight into its own dtype (not rounded through the UNet's first)
    overrides = {VAE_PREFIX: vae_dtype} if vae_dtype else None
    if str(path).lower().endswith(".safetensors"):
        # the header was checked above; the reader checks each tensor's place in the file
        _stream_weights(model, path, device=device, dtype=dtype, dtype_overrides=overrides)
    else:
        state_dict = _normalize_legacy_keys(
            read_state_dict(path, allow_unsafe_pickle=allow_unsafe_pickle, device=device))
        _check_weights_fit(model, state_dict, path, optional_suffixes=OPTIONAL_WEIGHT_SUFFIXES)
        _assign_weights(model, state_dict, device=device, dtype=dtype,
                        dtype_overrides=overrides)
        del state_dict
    _initialise_missing_optional_weights(model)
    model.reset_non_persistent_buffers()
    left_on_meta = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()]
                    if tensor.is_meta]
    if left_on_meta:   # a programming error: some tensor was neither loaded nor initialised
        raise RuntimeError(f"tensors left uninitialised after loading {path}: {left_on_meta[:10]}")
    model.eval().requires_grad_(False)
    if vae_path is not None:
        load_vae_weights(model, vae_path, allow_unsafe_pickle=allow_unsafe_pickle)
    return model


def load_vae_weights(model: StableDiffusionModel, path: StrPath, *,
                     allow_unsafe_pickle: bool = False) -> None:
    """Replace the model's VAE weights with a standalone VAE file (strict; keeps dtype/device).
    The model's scaling factor is kept: it belongs to the model family, not to the VAE file."""
    vae_weights = extract_vae_state_dict(read_state_dict(path, allow_unsafe_pickle=allow_unsafe_pickle))
    try:
        detect_vae_config(vae_weights)   # a clear error for files that are not LDM VAEs at all
    except DetectionError as error:
        raise CheckpointLoadError(path, str(error)) from error
    vae = model.first_stage_model
    parameter = vae.post_quant_conv.weight
    load_weights_strict(vae, vae_weights, path, device=parameter.device, dtype=parameter.dtype)
    vae.requires_grad_(False)
