"""ControlNet files in diffusers' naming (how most SDXL ControlNets ship: `conv_in`,
`down_blocks.i.resnets.j`, `controlnet_cond_embedding`, `controlnet_down_blocks.k` …) renamed to
the original LDM names the engine's `ControlNetModel` uses. Only names change; tensors are kept.
The tests check this against diffusers' own LDM → diffusers converter."""
from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

DIFFUSERS_MARKER = "controlnet_cond_embedding.conv_in.weight"
#: diffusers' ResNet parameter names → LDM's ResBlock ones
_RESNET_NAMES = (("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."),
                 ("time_emb_proj.", "emb_layers.1."), ("norm2.", "out_layers.0."),
                 ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection."))
_FIXED = (("conv_in.", "input_blocks.0.0."), ("time_embedding.linear_1.", "time_embed.0."),
          ("time_embedding.linear_2.", "time_embed.2."),
          ("add_embedding.linear_1.", "label_emb.0.0."),
          ("add_embedding.linear_2.", "label_emb.0.2."),
          ("controlnet_cond_embedding.conv_in.", "input_hint_block.0."),
          ("controlnet_mid_block.", "middle_block_out.0."))
_HINT_OUT = "controlnet_cond_embedding.conv_out."
_HINT_BLOCK = re.compile(r"^controlnet_cond_embedding\.blocks\.(\d+)\.(.*)$")
_DOWN = re.compile(r"^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)$")
_DOWNSAMPLE = re.compile(r"^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$")
_MID = re.compile(r"^mid_block\.(resnets|attentions)\.(\d+)\.(.*)$")
_ZERO = re.compile(r"^controlnet_down_blocks\.(\d+)\.(.*)$")


def is_diffusers_controlnet(state_dict: Mapping[str, Tensor]) -> bool:
    return DIFFUSERS_MARKER in state_dict


def _resnet(rest: str) -> str:
    for old, new in _RESNET_NAMES:
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def _ldm_name(key: str, layers_per_block: int) -> str:
    for old, new in _FIXED:
        if key.startswith(old):
            return new + key[len(old):]
    if key.startswith(_HINT_OUT):
        return "input_hint_block.14." + key[len(_HINT_OUT):]
    if match := _HINT_BLOCK.match(key):
        return f"input_hint_block.{2 * (int(match.group(1)) + 1)}.{match.group(2)}"
    if match := _DOWN.match(key):
        level, kind, index, rest = int(match.group(1)), match.group(2), int(match.group(3)), \
            match.group(4)
        block = 1 + level * (layers_per_block + 1) + index
        return (f"input_blocks.{block}.0.{_resnet(rest)}" if kind == "resnets"
                else f"input_blocks.{block}.1.{rest}")
    if match := _DOWNSAMPLE.match(key):
        return f"input_blocks.{(int(match.group(1)) + 1) * (layers_per_block + 1)}.0.op." \
               f"{match.group(2)}"
    if match := _MID.match(key):
        kind, index, rest = match.group(1), int(match.group(2)), match.group(3)
        if kind == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{0 if index == 0 else 2}.{_resnet(rest)}"
    if match := _ZERO.match(key):
        return f"zero_convs.{match.group(1)}.0.{match.group(2)}"
    return key      # unknown names stay, so strict loading reports them


def diffusers_to_ldm(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    resnets = {int(match.group(3)) for key in state_dict
               if (match := _DOWN.match(key)) and match.group(1) == "0"
               and match.group(2) == "resnets"}
    layers_per_block = max(resnets) + 1 if resnets else 2
    return {_ldm_name(key, layers_per_block): value for key, value in state_dict.items()}
