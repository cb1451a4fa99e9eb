"""MiDaS v3 DPT-Hybrid depth (`dpt_hybrid-midas-501f0c75.pt`, sd-webui-controlnet's
`depth_midas`) on transformers' own `DPTForDepthEstimation` with its BiT backbone. The release
file uses MiDaS' names (a timm ViT-hybrid under `pretrained.model.`, the readout and resize
layers as `pretrained.act_postprocess*`, the head under `scratch.`); they are renamed here and the
sizes read from the shapes.

transformers' hybrid embeddings take exactly the trained size, so the image is brought to that
square and the prediction back to the image's size.
"""
from __future__ import annotations

import math
import re

import cv2
import numpy as np
import torch

from modules.engine.depth_anything import DepthModelError, fusion_key, load_converted, \
    split_qkv

PATCH_SIZE = 16
HEAD_WIDTH = 64
GROUP_NORM_GROUPS = 32          # timm's GroupNormAct in the BiT (ResNetV2) stages
VIT_LAYER_NORM_EPS = 1e-6       # timm's ViT
_BACKBONE = "pretrained.model.patch_embed.backbone."
_IGNORED = ("pretrained.model.head.weight", "pretrained.model.head.bias")   # ImageNet classifier
_VIT_PARTS = {"norm1": "layernorm_before", "norm2": "layernorm_after",
              "attn.proj": "attention.output.dense", "mlp.fc1": "intermediate.dense",
              "mlp.fc2": "output.dense"}
_PLAIN = {"pretrained.model.cls_token": "dpt.embeddings.cls_token",
          "pretrained.model.pos_embed": "dpt.embeddings.position_embeddings",
          "pretrained.model.patch_embed.proj.weight": "dpt.embeddings.projection.weight",
          "pretrained.model.patch_embed.proj.bias": "dpt.embeddings.projection.bias",
          "pretrained.model.norm.weight": "dpt.layernorm.weight",
          "pretrained.model.norm.bias": "dpt.layernorm.bias",
          _BACKBONE + "stem.conv.weight": "dpt.embeddings.backbone.bit.embedder.convolution.weight",
          _BACKBONE + "stem.norm.weight": "dpt.embeddings.backbone.bit.embedder.norm.weight",
          _BACKBONE + "stem.norm.bias": "dpt.embeddings.backbone.bit.embedder.norm.bias"}


def _rename(key: str) -> str:
    if key in _PLAIN:
        return _PLAIN[key]
    if match := re.match(re.escape(_BACKBONE) + r"stages\.(\d+)\.blocks\.(\d+)\.(.+)$", key):
        return f"dpt.embeddings.backbone.bit.encoder.stages.{match[1]}.layers.{match[2]}." \
            f"{match[3]}"
    if match := re.match(r"^pretrained\.model\.blocks\.(\d+)\.(.+)\.(weight|bias)$", key):
        if match[2] in _VIT_PARTS:
            return f"dpt.encoder.layer.{match[1]}.{_VIT_PARTS[match[2]]}.{match[3]}"
    if match := re.match(r"^pretrained\.act_postprocess(\d)\.(0\.project\.0|3|4)\."
                         r"(weight|bias)$", key):
        stage, part = int(match[1]) - 1, match[2]
        if part == "0.project.0":
            return f"neck.reassemble_stage.readout_projects.{stage}.0.{match[3]}"
        kind = "projection" if part == "3" else "resize"
        return f"neck.reassemble_stage.layers.{stage}.{kind}.{match[3]}"
    if match := re.match(r"^scratch\.layer(\d)_rn\.weight$", key):
        return f"neck.convs.{int(match[1]) - 1}.weight"
    if match := re.match(r"^scratch\.refinenet(\d)\.(.+)$", key):
        return fusion_key(int(match[1]), match[2])
    if match := re.match(r"^scratch\.output_conv\.(0|2|4)\.(weight|bias)$", key):
        return f"head.head.{match[1]}.{match[2]}"
    raise DepthModelError(f"unexpected tensor {key!r} (not a MiDaS DPT-Hybrid checkpoint?)")


def convert_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MiDaS names → transformers' names; the fused qkv projection split into q, k, v."""
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in original.items():
        if key in _IGNORED:
            continue
        if match := re.match(r"^pretrained\.model\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$",
                             key):
            converted.update(split_qkv(
                tensor, f"dpt.encoder.layer.{match[1]}.attention.attention",
                ("query", "key", "value"), match[2]))
        else:
            converted[_rename(key)] = tensor
    return converted


def _count(original: dict[str, torch.Tensor], pattern: str) -> int:
    return 1 + max((int(m[1]) for key in original if (m := re.match(pattern, key))), default=-1)


def config_from_state_dict(original: dict[str, torch.Tensor]):
    """transformers' DPTConfig (hybrid) for a MiDaS DPT-Hybrid file, from its shapes."""
    from transformers import DPTConfig

    def shape(key: str) -> tuple[int, ...]:
        if key not in original:
            raise DepthModelError(f"missing tensor {key!r} (not a MiDaS DPT-Hybrid checkpoint?)")
        return tuple(original[key].shape)

    width = shape("pretrained.model.cls_token")[-1]
    layers = _count(original, r"^pretrained\.model\.blocks\.(\d+)\.")
    stages = _count(original, re.escape(_BACKBONE) + r"stages\.(\d+)\.")
    if layers < 4 or stages < 1:
        raise DepthModelError(f"{layers} transformer blocks and {stages} backbone stages: not "
                              "a DPT-Hybrid")
    positions = shape("pretrained.model.pos_embed")[1] - 1
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise DepthModelError(f"{positions} position embeddings are not a square grid")
    hidden_sizes = [shape(f"{_BACKBONE}stages.{s}.blocks.0.conv3.weight")[0]
                    for s in range(stages)]
    depths = [_count(original, re.escape(_BACKBONE) + rf"stages\.{s}\.blocks\.(\d+)\.")
              for s in range(stages)]
    backbone = dict(embedding_size=shape(_BACKBONE + "stem.conv.weight")[0],
                    hidden_sizes=hidden_sizes, depths=depths, num_groups=GROUP_NORM_GROUPS,
                    out_features=[f"stage{s + 1}" for s in range(stages)],
                    global_padding="same", layer_type="bottleneck",
                    embedding_dynamic_padding=True)
    fusion = shape("scratch.layer1_rn.weight")[0]
    return DPTConfig(
        is_hybrid=True, hidden_size=width, num_hidden_layers=layers,
        num_attention_heads=max(1, width // HEAD_WIDTH),
        intermediate_size=shape("pretrained.model.blocks.0.mlp.fc1.weight")[0],
        layer_norm_eps=VIT_LAYER_NORM_EPS, image_size=grid * PATCH_SIZE, patch_size=PATCH_SIZE,
        # MiDaS hooks the BiT's first two stages and ViT blocks 8 and 11 (of 12)
        backbone_out_indices=[0, 1, layers - 4, layers - 1], readout_type="project",
        reassemble_factors=[1, 1, 1, 0.5],
        neck_hidden_sizes=[shape(f"scratch.layer{k}_rn.weight")[1] for k in range(1, 5)],
        fusion_hidden_size=fusion, use_batch_norm_in_fusion_residual=False,
        use_auxiliary_head=False, backbone_featmap_shape=[1, hidden_sizes[-1], grid, grid],
        backbone_config=backbone)


def load_dpt_midas(original: dict[str, torch.Tensor], *, dtype: torch.dtype = torch.float32):
    """The network with the file's weights, loaded strictly."""
    from transformers import DPTForDepthEstimation

    return load_converted(DPTForDepthEstimation, config_from_state_dict(original),
                          convert_state_dict(original), dtype)


@torch.no_grad()
def estimate_depth(model, image: np.ndarray) -> np.ndarray:
    """Relative inverse depth (near = large), H x W float32 at the image's size. MiDaS takes
    the pixels scaled to [-1, 1]."""
    size = model.config.image_size
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
    pixels = torch.from_numpy(resized.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    parameter = next(model.parameters())
    depth = model(pixel_values=pixels.to(parameter.device, parameter.dtype)).predicted_depth
    depth = torch.nn.functional.interpolate(depth[:, None].float(), image.shape[:2],
                                            mode="bicubic", align_corners=False)
    return depth[0, 0].cpu().numpy()
