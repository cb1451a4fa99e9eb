"""Depth Anything (V1 and V2) monocular depth on transformers' `DepthAnythingForDepthEstimation`,
loading the files the projects release (`depth_anything_v2_vitl.pth` / `.safetensors`,
`depth_anything_vitl14.pth`). Those use the original names (a DINOv2 under `pretrained.*`, the DPT
head under `depth_head.*`); they are renamed to transformers' names here and the size (ViT-S / B /
L) is read from the shapes. V1 and V2 share the layout and differ only in which encoder blocks the
head reads, so the version is the caller's (from the file name).
"""
from __future__ import annotations

import math
import re

import cv2
import numpy as np
import torch

PATCH_SIZE = 14
INPUT_SIZE = 518                          # the short side the models were trained at
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the encoder blocks (0-based) V2's head reads, by encoder depth (ViT-S / B: 12, L: 24, g: 40);
#: V1 reads the last four
V2_BLOCKS = {12: (2, 5, 8, 11), 24: (4, 11, 17, 23), 40: (9, 19, 29, 39)}
HEAD_WIDTH = 64                           # DINOv2's attention head width

_BLOCK = re.compile(r"^pretrained\.blocks\.(\d+)\.(.+)$")
_REFINENET = re.compile(r"^depth_head\.scratch\.refinenet(\d)\.(.+)$")
_BLOCK_PARTS = {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.o_proj",
                "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
                "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
FUSION_PARTS = {"out_conv": "projection", "resConfUnit1.conv1": "residual_layer1.convolution1",
                 "resConfUnit1.conv2": "residual_layer1.convolution2",
                 "resConfUnit2.conv1": "residual_layer2.convolution1",
                 "resConfUnit2.conv2": "residual_layer2.convolution2"}
_PLAIN = {"pretrained.cls_token": "backbone.embeddings.cls_token",
          "pretrained.mask_token": "backbone.embeddings.mask_token",
          "pretrained.pos_embed": "backbone.embeddings.position_embeddings",
          "pretrained.patch_embed.proj.weight":
              "backbone.embeddings.patch_embeddings.projection.weight",
          "pretrained.patch_embed.proj.bias":
              "backbone.embeddings.patch_embeddings.projection.bias",
          "pretrained.norm.weight": "backbone.layernorm.weight",
          "pretrained.norm.bias": "backbone.layernorm.bias",
          "depth_head.scratch.output_conv1.weight": "head.conv1.weight",
          "depth_head.scratch.output_conv1.bias": "head.conv1.bias",
          "depth_head.scratch.output_conv2.0.weight": "head.conv2.weight",
          "depth_head.scratch.output_conv2.0.bias": "head.conv2.bias",
          "depth_head.scratch.output_conv2.2.weight": "head.conv3.weight",
          "depth_head.scratch.output_conv2.2.bias": "head.conv3.bias"}


class DepthModelError(ValueError):
    """The file is not a Depth Anything checkpoint this build can load (the message says why)."""


def _rename(key: str) -> str:
    if key in _PLAIN:
        return _PLAIN[key]
    if match := _BLOCK.match(key):
        index, rest = match.groups()
        part, _, kind = rest.rpartition(".")
        if part in ("ls1", "ls2"):          # ls1.gamma: the parameter itself is the name's tail
            part, kind = rest, ""
        if part in _BLOCK_PARTS:
            return f"backbone.encoder.layer.{index}.{_BLOCK_PARTS[part]}" + \
                (f".{kind}" if kind else "")
    if match := _REFINENET.match(key):
        return fusion_key(int(match[1]), match[2])
    if match := re.match(r"^depth_head\.projects\.(\d)\.(weight|bias)$", key):
        return f"neck.reassemble_stage.layers.{match[1]}.projection.{match[2]}"
    if match := re.match(r"^depth_head\.resize_layers\.(\d)\.(weight|bias)$", key):
        return f"neck.reassemble_stage.layers.{match[1]}.resize.{match[2]}"
    if match := re.match(r"^depth_head\.scratch\.layer(\d)_rn\.weight$", key):
        return f"neck.convs.{int(match[1]) - 1}.weight"
    raise DepthModelError(f"unexpected tensor {key!r} (not a Depth Anything checkpoint?)")


def fusion_key(number: int, rest: str) -> str:
    """`refinenet{number}.{rest}` of the DPT head → transformers' fusion stage name. The
    original counts fusion blocks from the deepest (refinenet4 runs first)."""
    part, _, kind = rest.rpartition(".")
    if part not in FUSION_PARTS:
        raise DepthModelError(f"unexpected fusion tensor refinenet{number}.{rest}")
    return f"neck.fusion_stage.layers.{4 - number}.{FUSION_PARTS[part]}.{kind}"


def split_qkv(tensor: torch.Tensor, prefix: str, names: tuple[str, str, str],
              kind: str) -> dict[str, torch.Tensor]:
    """A fused qkv projection's rows as three tensors named `{prefix}.{name}.{kind}`."""
    return {f"{prefix}.{name}.{kind}": part for name, part in zip(names, tensor.chunk(3, dim=0))}


def convert_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original names → transformers' names; the fused qkv projection split into q, k, v."""
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in original.items():
        if match := re.match(r"^pretrained\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", key):
            converted.update(split_qkv(tensor, f"backbone.encoder.layer.{match[1]}.attention",
                                       ("q_proj", "k_proj", "v_proj"), match[2]))
        else:
            converted[_rename(key)] = tensor
    return converted


def _shape(state_dict: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise DepthModelError(f"missing tensor {key!r} (not a Depth Anything checkpoint?)")
    return tuple(state_dict[key].shape)


def config_from_state_dict(original: dict[str, torch.Tensor], *, version: int):
    """transformers' DepthAnythingConfig for a file in the original layout, from its shapes."""
    from transformers import DepthAnythingConfig, Dinov2Config

    width = _shape(original, "pretrained.cls_token")[-1]
    depth = 1 + max((int(m[1]) for key in original
                     if (m := re.match(r"^pretrained\.blocks\.(\d+)\.", key))), default=-1)
    if depth < 4:
        raise DepthModelError(f"the encoder has {depth} blocks; the head needs at least 4")
    if any(".w12." in key for key in original):
        raise DepthModelError("ViT-g (SwiGLU) Depth Anything files are not supported")
    positions = _shape(original, "pretrained.pos_embed")[1] - 1
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise DepthModelError(f"{positions} position embeddings are not a square grid")
    last_four = tuple(range(depth - 4, depth))
    blocks = V2_BLOCKS.get(depth, last_four) if version == 2 else last_four
    hidden = _shape(original, "pretrained.blocks.0.mlp.fc1.weight")[0]
    backbone = Dinov2Config(
        hidden_size=width, num_hidden_layers=depth,
        num_attention_heads=max(1, width // HEAD_WIDTH), mlp_ratio=hidden // width,
        image_size=grid * PATCH_SIZE, patch_size=PATCH_SIZE,
        out_indices=[block + 1 for block in blocks],   # stage 0 is the embeddings
        apply_layernorm=True, reshape_hidden_states=False)
    neck = [_shape(original, f"depth_head.projects.{i}.weight")[0] for i in range(4)]
    fusion = _shape(original, "depth_head.scratch.layer1_rn.weight")[0]
    head = _shape(original, "depth_head.scratch.output_conv2.0.weight")[0]
    return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=width,
                               patch_size=PATCH_SIZE, neck_hidden_sizes=neck,
                               fusion_hidden_size=fusion, head_hidden_size=head,
                               depth_estimation_type="relative")


def load_depth_anything(original: dict[str, torch.Tensor], *, version: int,
                        dtype: torch.dtype = torch.float32):
    """The network with the file's weights, loaded strictly (a wrong file says which keys)."""
    from transformers import DepthAnythingForDepthEstimation

    config = config_from_state_dict(original, version=version)
    return load_converted(DepthAnythingForDepthEstimation, config, convert_state_dict(original),
                          dtype)


def load_converted(model_class, config, converted: dict[str, torch.Tensor],
                   dtype: torch.dtype):
    """`model_class(config)` given `converted` strictly. It is built on the meta device (no
    memory, no random init); a model with buffers computed at construction and not saved
    (ZoeDepth's binomial indices) is built for real, without the random init."""
    with torch.device("meta"):
        model = model_class(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(converted)), sorted(set(converted) - expected)
    if missing or unexpected:
        raise DepthModelError(f"the weights do not fit: missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]}")
    if any(buffer.is_meta for buffer in model.buffers()):
        from transformers.initialization import no_init_weights

        with no_init_weights():
            model = model_class(config)
        model.load_state_dict(converted, strict=True)
    else:
        model.load_state_dict(converted, strict=True, assign=True)
    return model.to(dtype).eval()


def model_input(image: np.ndarray, input_size: int = INPUT_SIZE) -> torch.Tensor:
    """RGB uint8 → the normalised [1, 3, H, W] input: both sides at least `input_size`, kept in
    proportion, rounded up to the patch size (cubic), as the original transform does."""
    height, width = image.shape[:2]
    scale = max(input_size / height, input_size / width)
    size = [max(PATCH_SIZE, math.ceil(side * scale / PATCH_SIZE) * PATCH_SIZE)
            for side in (width, height)]
    resized = cv2.resize(image, tuple(size), interpolation=cv2.INTER_CUBIC)
    pixels = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None].contiguous()


@torch.no_grad()
def estimate_depth(model, image: np.ndarray, input_size: int = INPUT_SIZE) -> np.ndarray:
    """Relative inverse depth (near = large), H x W float32 at the image's size."""
    parameter = next(model.parameters())
    pixels = model_input(image, input_size).to(parameter.device, parameter.dtype)
    depth = model(pixel_values=pixels).predicted_depth[:, None].float()
    depth = torch.nn.functional.interpolate(depth, image.shape[:2], mode="bilinear",
                                            align_corners=True)
    return depth[0, 0].cpu().numpy()
