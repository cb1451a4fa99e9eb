"""ControlNet (lllyasviel's `cldm.ControlNet`): a copy of the UNet's encoder that reads a control
image (edges, pose, depth …) and returns one residual per UNet skip plus one for the middle
block, which the UNet adds to its own (`UNetModel.forward(control=…)`).

Module names are the original ones, so files load strictly: ControlNet 1.0 / 1.1 `.pth` files
carry them under `control_model.`, extracted `.safetensors` without it (both are accepted). The
architecture (SD1.x / SD2.x / SDXL widths, depths, hint channels) is read from the shapes.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from modules.engine.checkpoint_io import CheckpointLoadError, StrPath, read_state_dict
from modules.engine.configs import UNetConfig
from modules.engine.controlnet_diffusers import diffusers_to_ldm, is_diffusers_controlnet
from modules.engine.detection import DetectionError, detect_unet_config
from modules.engine.memory_format import use_channels_last
from modules.engine.unet import TimestepEmbedSequential, UNetEncoder

CONTROL_MODEL_PREFIX = "control_model."
HINT_KEY = "input_hint_block.0.weight"
#: input_hint_block: 8 convs (3 → 16 → 16 → 32 → 32 → 96 → 96 → 256 → model_channels), SiLU
#: between them, 3 of them stride 2: the image-space hint reaches the latent's size (1/8)
HINT_WIDTHS = (16, 16, 32, 32, 96, 96, 256)
HINT_STRIDES = (1, 1, 2, 1, 2, 1, 2, 1)


@dataclass(frozen=True)
class ControlNetConfig:
    unet: UNetConfig            # the encoder's sizes (those of the UNet it was trained on)
    hint_channels: int = 3
    family: str = "sd1"         # "sd1", "sd2" or "sdxl": which base models it fits
    #: residuals averaged over the image and given to the conditional rows only (the shuffle
    #: ControlNet's `global_average_pooling`, which only its .yaml says)
    global_average_pooling: bool = False


#: the fields of a `.yaml` sidecar's `control_stage_config.params` that shapes cannot tell
YAML_UNET_FIELDS = ("num_heads", "num_head_channels", "use_linear_in_transformer")


def apply_yaml_params(config: ControlNetConfig, params: Mapping[str, object]) -> ControlNetConfig:
    """The detected architecture with what a sidecar's `control_stage_config.params` states:
    attention heads, linear projections, global average pooling."""
    unet_fields = {name: type(getattr(config.unet, name))(params[name])
                   for name in YAML_UNET_FIELDS if name in params}
    pooling = bool(params.get("global_average_pooling", config.global_average_pooling))
    return replace(config, unet=replace(config.unet, **unet_fields),
                   global_average_pooling=pooling)


class ControlNetModel(UNetEncoder):
    """`forward(x, hint, timesteps, context, y=None)` → the residuals, one per input block of the
    UNet then the middle block's (the order `UNetModel.forward(control=…)` consumes)."""

    def __init__(self, config: ControlNetConfig) -> None:
        super().__init__(config.unet)
        self.control_config = config
        widths = (config.hint_channels, *HINT_WIDTHS, config.unet.model_channels)
        layers: list[nn.Module] = []
        for index, stride in enumerate(HINT_STRIDES):
            if index:
                layers.append(nn.SiLU())
            layers.append(nn.Conv2d(widths[index], widths[index + 1], 3, stride=stride,
                                    padding=1))
        self.input_hint_block = TimestepEmbedSequential(*layers)
        self.zero_convs = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(channels, channels, 1))
             for channels in self.skip_channels])
        self.middle_block_out = TimestepEmbedSequential(
            nn.Conv2d(self.middle_channels, self.middle_channels, 1))
        use_channels_last(self)

    @property
    def dtype(self) -> torch.dtype:
        return self.input_hint_block[0].weight.dtype

    def forward(self, x: Tensor, hint: Tensor, timesteps: Tensor, context: Tensor,
                y: Tensor | None = None) -> list[Tensor]:
        """x: [B, 4, h, w] the UNet's (scaled) latent input; hint: [B, C, 8h, 8w] in [0, 1]."""
        dtype = self.dtype
        silu_emb = self.embed(timesteps, y, dtype)
        context = context.to(dtype)
        guided_hint = self.input_hint_block(hint.to(dtype=dtype,
                                                    memory_format=torch.channels_last),
                                            silu_emb, context)
        h = x.to(dtype=dtype, memory_format=torch.channels_last)
        outputs: list[Tensor] = []
        for index, (block, zero_conv) in enumerate(zip(self.input_blocks, self.zero_convs)):
            h = block(h, silu_emb, context)
            if index == 0:
                h = h + guided_hint
            outputs.append(zero_conv(h, silu_emb, context))
        h = self.middle_block(h, silu_emb, context)
        outputs.append(self.middle_block_out(h, silu_emb, context))
        return outputs


def controlnet_weights(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ControlNet tensors of a file under their LDM names: without `control_model.` (a
    ControlNet 1.0 file also holds a whole SD checkpoint beside them, which is left out), and
    renamed from diffusers' names when the file uses them."""
    if any(key.startswith(CONTROL_MODEL_PREFIX) for key in state_dict):
        return {key[len(CONTROL_MODEL_PREFIX):]: value for key, value in state_dict.items()
                if key.startswith(CONTROL_MODEL_PREFIX)}
    if is_diffusers_controlnet(state_dict):
        return diffusers_to_ldm(state_dict)
    return dict(state_dict)


def detect_controlnet_config(state_dict: Mapping[str, Tensor]) -> ControlNetConfig:
    """The architecture of ControlNet weights (already without `control_model.`)."""
    if HINT_KEY not in state_dict:
        raise DetectionError(f"not a ControlNet: no {HINT_KEY} key")
    hint_channels = state_dict[HINT_KEY].shape[1]
    proj_in = [key for key in state_dict if key.endswith("proj_in.weight")]
    linear_projection = bool(proj_in) and state_dict[proj_in[0]].ndim == 2
    family = ("sdxl" if "label_emb.0.0.weight" in state_dict
              else "sd2" if linear_projection else "sd1")
    unet = detect_unet_config(state_dict, family, prefix="")
    return ControlNetConfig(unet=unet, hint_channels=hint_channels, family=family)


def fits_unet(control: ControlNetConfig, unet: UNetConfig) -> bool:
    """Whether a ControlNet's residuals fit a UNet: same widths, levels and context."""
    mine = control.unet
    return (mine.model_channels, mine.channel_mult, mine.num_res_blocks, mine.context_dim,
            mine.adm_in_channels) == (unet.model_channels, unet.channel_mult,
                                      unet.num_res_blocks, unet.context_dim, unet.adm_in_channels)


def load_controlnet(path: StrPath, *, allow_unsafe_pickle: bool = False,
                    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                    yaml_params: Mapping[str, object] | None = None) -> ControlNetModel:
    """Read a ControlNet file (either convention), detect its architecture, load strictly.
    `yaml_params`: a sidecar's `control_stage_config.params`, which win over the detection."""
    weights = controlnet_weights(read_state_dict(path, allow_unsafe_pickle=allow_unsafe_pickle))
    try:
        config = detect_controlnet_config(weights)
        if yaml_params:
            config = apply_yaml_params(config, yaml_params)
    except DetectionError as error:
        raise CheckpointLoadError(path, str(error)) from error
    except (TypeError, ValueError) as error:
        raise CheckpointLoadError(path, f"its .yaml has a bad value: {error}") from error
    with torch.device("meta"):
        model = ControlNetModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointLoadError(path, f"does not match the detected {config.family} ControlNet "
                                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, tensor in expected.items():
        if tuple(weights[key].shape) != tuple(tensor.shape):
            raise CheckpointLoadError(path, f"{key} is {list(weights[key].shape)}, expected "
                                            f"{list(tensor.shape)}")
    model.load_state_dict({key: weights[key].to(device=device, dtype=dtype)
                           for key in expected}, strict=True, assign=True)
    return model.eval().requires_grad_(False)


# ------------------------------------------------------------------------------ per-job patch

CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
#: "My prompt is more important": residual i of n is scaled by SOFT_INJECTION ** (n - 1 - i)
#: (sd-webui-controlnet's soft injection: the deepest residuals keep their weight)
SOFT_INJECTION = 0.825


@dataclass
class ControlUnitPatch:
    """One enabled unit: a ControlNet, its control map and how strongly / when it steers."""
    model: ControlNetModel
    hint: Tensor                    # [1, C, H, W] in [0, 1], image space
    weight: float = 1.0
    guidance_start: float = 0.0     # fractions of the sampling steps
    guidance_end: float = 1.0
    control_mode: str = CONTROL_MODES[0]
    #: [1, 1, H, W] in [0, 1]: where the unit steers (the residuals are scaled by it at each
    #: resolution); None = everywhere
    region: Tensor | None = None

    def active_at(self, fraction: float) -> bool:
        return self.weight != 0 and self.guidance_start <= fraction <= self.guidance_end

    def hint_for(self, x: Tensor) -> Tensor:
        """The map at the size of x's image (8x the latent), for every row of x."""
        size = (x.shape[-2] * 8, x.shape[-1] * 8)
        hint = self.hint
        if tuple(hint.shape[-2:]) != size:
            hint = torch.nn.functional.interpolate(hint.float(), size=size, mode="bilinear",
                                                   align_corners=False)
        return hint.to(x.device).expand(x.shape[0], -1, -1, -1)


def _region_at(region: Tensor, residual: Tensor) -> Tensor:
    return torch.nn.functional.interpolate(region.float(), size=residual.shape[-2:],
                                           mode="area").to(residual.device, residual.dtype)


class ControlNetPatch:
    """What the UNet gets added for one job: the sum of the active units' residuals. The CFG
    denoiser calls `begin_call` before each UNet call (sampling progress, which rows are
    unconditional); `StableDiffusionModel.apply_model` calls the patch for the residuals."""

    def __init__(self, units: list[ControlUnitPatch]) -> None:
        self.units = units
        self.fraction = 0.0
        self.uncond_rows: Tensor | None = None

    def begin_call(self, fraction: float, uncond_rows: Tensor | None) -> None:
        self.fraction = fraction
        self.uncond_rows = uncond_rows

    def __call__(self, unet: UNetConfig, x: Tensor, timesteps: Tensor, context: Tensor,
                 y: Tensor | None) -> list[Tensor] | None:
        total: list[Tensor] | None = None
        for unit in self.units:
            if not unit.active_at(self.fraction) or not fits_unet(unit.model.control_config,
                                                                   unet):
                continue
            residuals = unit.model(x[:, :4], unit.hint_for(x), timesteps, context, y)
            pooled = unit.model.control_config.global_average_pooling
            if pooled:
                residuals = [residual.mean(dim=(2, 3), keepdim=True).expand_as(residual)
                             for residual in residuals]
            scaled = [(residual * scale).to(x.dtype)
                      for residual, scale in zip(residuals, self._scales(unit, len(residuals)))]
            if unit.region is not None:
                scaled = [residual * _region_at(unit.region, residual) for residual in scaled]
            cond_only = unit.control_mode == CONTROL_MODES[2] or pooled
            if cond_only and self.uncond_rows is not None:
                keep = (~self.uncond_rows).to(x.device, scaled[0].dtype)[:, None, None, None]
                scaled = [residual * keep for residual in scaled]
            total = scaled if total is None else [a + b for a, b in zip(total, scaled)]
        return total

    @staticmethod
    def _scales(unit: ControlUnitPatch, count: int) -> list[float]:
        if unit.control_mode == CONTROL_MODES[1]:
            return [unit.weight * SOFT_INJECTION ** (count - 1 - i) for i in range(count)]
        return [unit.weight] * count
