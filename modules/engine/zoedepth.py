"""ZoeDepth (`ZoeD_M12_N.pt`, sd-webui-controlnet's `depth_zoe`) on transformers' own
`ZoeDepthForDepthEstimation`. The release file holds the original module names: a MiDaS 3.1
BEiT-L core under `core.core.` (timm's BEiT with relative position biases, `act_postprocess*`
readouts, the `scratch.` refinement head) and the metric-bins head (`conv2`, `seed_bin_regressor`,
`seed_projector`, `projectors`, `attractors`, `conditional_log_binomial`) at the top level. They
are renamed here; the sizes come from the shapes. ZoeD_N (one NYU head) is what is supported.
"""
from __future__ import annotations

import math
import re

import cv2
import numpy as np
import torch

from modules.engine.depth_anything import DepthModelError, fusion_key, load_converted

PATCH_SIZE = 16
HEAD_WIDTH = 64
INPUT_HEIGHT, INPUT_WIDTH = 384, 512          # ZoeDepth's processing size (aspect kept)
NYU_RANGE = (1e-3, 10.0)                       # ZoeD_N's metric depth range in metres
_CORE = "core.core."
#: buffers the original saves that transformers computes itself, and the unused classifier
_IGNORED = re.compile(r"(relative_position_index|k_idx|K_minus_1|\.fc_norm\.|"
                      r"pretrained\.model\.head\.)")
_BLOCK_PARTS = {"norm1": "layernorm_before", "norm2": "layernorm_after",
                "attn.proj": "attention.o_proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_HEAD_NETS = {"seed_bin_regressor", "seed_projector"}


def _rename(key: str) -> str:
    core = key[len(_CORE):] if key.startswith(_CORE) else None
    if core is not None:
        if core == "pretrained.model.cls_token":
            return "backbone.beit.embeddings.cls_token"
        if match := re.match(r"^pretrained\.model\.patch_embed\.proj\.(weight|bias)$", core):
            return f"backbone.beit.embeddings.patch_embeddings.projection.{match[1]}"
        if match := re.match(r"^pretrained\.model\.blocks\.(\d+)\.(.+)$", core):
            layer, rest = f"backbone.beit.layers.{match[1]}", match[2]
            if rest in ("gamma_1", "gamma_2"):
                return f"{layer}.lambda_{rest[-1]}"
            if rest == "attn.relative_position_bias_table":
                return f"{layer}.relative_position_bias.relative_position_bias_table"
            part, _, kind = rest.rpartition(".")
            if part in _BLOCK_PARTS:
                return f"{layer}.{_BLOCK_PARTS[part]}.{kind}"
        if match := re.match(r"^pretrained\.act_postprocess(\d)\.(0\.project\.0|3|4)\."
                             r"(weight|bias)$", core):
            stage, part = int(match[1]) - 1, match[2]
            if part == "0.project.0":
                return f"neck.reassemble_stage.readout_projects.{stage}.0.{match[3]}"
            kind = "projection" if part == "3" else "resize"
            return f"neck.reassemble_stage.layers.{stage}.{kind}.{match[3]}"
        if match := re.match(r"^scratch\.layer(\d)_rn\.weight$", core):
            return f"neck.convs.{int(match[1]) - 1}.weight"
        if match := re.match(r"^scratch\.refinenet(\d)\.(.+)$", core):
            return fusion_key(int(match[1]), match[2])
        if match := re.match(r"^scratch\.output_conv\.(0|2|4)\.(weight|bias)$", core):
            return f"relative_head.conv{int(match[1]) // 2 + 1}.{match[2]}"
    elif match := re.match(r"^conv2\.(weight|bias)$", key):
        return f"metric_head.conv2.{match[1]}"
    elif match := re.match(r"^(seed_bin_regressor|seed_projector|projectors\.\d+|"
                           r"attractors\.\d+)\._net\.(0|2)\.(weight|bias)$", key):
        return f"metric_head.{match[1]}.conv{int(match[2]) // 2 + 1}.{match[3]}"
    elif match := re.match(r"^conditional_log_binomial\.mlp\.(0|2)\.(weight|bias)$", key):
        return f"metric_head.conditional_log_binomial.mlp.{match[1]}.{match[2]}"
    raise DepthModelError(f"unexpected tensor {key!r} (not a ZoeD_N checkpoint?)")


def release_state_dict(loaded: dict) -> dict[str, torch.Tensor]:
    """The tensors of a release file: ZoeDepth saves them under "model"."""
    inner = loaded.get("model") if isinstance(loaded, dict) else None
    return inner if isinstance(inner, dict) else loaded


def convert_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original names → transformers' names; BEiT's fused qkv (with separate q and v biases;
    keys have none) split into q, k, v."""
    if any("patch_transformer" in key for key in original):
        raise DepthModelError("ZoeD_NK (two metric heads) is not supported; use ZoeD_M12_N")
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in original.items():
        if _IGNORED.search(key):
            continue
        if match := re.match(rf"^{re.escape(_CORE)}pretrained\.model\.blocks\.(\d+)\.attn\."
                             r"(qkv\.weight|q_bias|v_bias)$", key):
            attention = f"backbone.beit.layers.{match[1]}.attention"
            if match[2] == "qkv.weight":
                for name, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                    converted[f"{attention}.{name}.weight"] = part
            else:
                converted[f"{attention}.{match[2][0]}_proj.bias"] = tensor
        else:
            converted[_rename(key)] = tensor
    return converted


def config_from_state_dict(original: dict[str, torch.Tensor]):
    """transformers' ZoeDepthConfig (BEiT backbone, one NYU metric head) from the shapes."""
    from transformers import BeitConfig, ZoeDepthConfig

    def shape(key: str) -> tuple[int, ...]:
        if key not in original:
            raise DepthModelError(f"missing tensor {key!r} (not a ZoeD_N checkpoint?)")
        return tuple(original[key].shape)

    width = shape(_CORE + "pretrained.model.cls_token")[-1]
    layers = 1 + max((int(m[1]) for key in original
                      if (m := re.match(rf"^{re.escape(_CORE)}pretrained\.model\.blocks\.(\d+)\.",
                                        key))), default=-1)
    if layers < 4 or layers % 4:
        raise DepthModelError(f"{layers} BEiT blocks: the head reads four evenly spaced ones")
    table = shape(_CORE + "pretrained.model.blocks.0.attn.relative_position_bias_table")[0]
    window = (math.isqrt(table - 3) + 1) // 2       # (2W - 1)^2 + 3 rows
    if (2 * window - 1) ** 2 + 3 != table:
        raise DepthModelError(f"a relative position table of {table} rows fits no window")
    backbone = BeitConfig(
        image_size=window * PATCH_SIZE, patch_size=PATCH_SIZE, hidden_size=width,
        num_hidden_layers=layers, num_attention_heads=max(1, width // HEAD_WIDTH),
        intermediate_size=shape(_CORE + "pretrained.model.blocks.0.mlp.fc1.weight")[0],
        use_relative_position_bias=True, reshape_hidden_states=False,
        out_features=[f"stage{layers * k // 4}" for k in range(1, 5)])
    attractors = [shape(f"attractors.{i}._net.2.weight")[0]
                  for i in range(sum(1 for key in original
                                     if re.match(r"^attractors\.\d+\._net\.2\.weight$", key)))]
    n_bins = shape("seed_bin_regressor._net.2.weight")[0]
    return ZoeDepthConfig(
        backbone_config=backbone,
        neck_hidden_sizes=[shape(f"{_CORE}scratch.layer{k}_rn.weight")[1] for k in range(1, 5)],
        fusion_hidden_size=shape(_CORE + "scratch.layer1_rn.weight")[0],
        num_relative_features=shape(_CORE + "scratch.output_conv.2.weight")[0],
        bottleneck_features=shape("conv2.weight")[0],
        bin_embedding_dim=shape("seed_projector._net.2.weight")[0],
        num_attractors=attractors, bin_centers_type="softplus",
        bin_configurations=[{"name": "nyu", "n_bins": n_bins, "min_depth": NYU_RANGE[0],
                             "max_depth": NYU_RANGE[1]}])


def load_zoedepth(original: dict, *, dtype: torch.dtype = torch.float32):
    """The network with the release file's weights, loaded strictly."""
    from transformers import ZoeDepthForDepthEstimation

    original = release_state_dict(original)
    return load_converted(ZoeDepthForDepthEstimation, config_from_state_dict(original),
                          convert_state_dict(original), dtype)


@torch.no_grad()
def estimate_depth(model, image: np.ndarray) -> np.ndarray:
    """Metric depth in metres (far = large), H x W float32 at the image's size. The image is
    scaled to cover 384 x 512 in proportion (sides multiples of 32), pixels in [0, 1]."""
    height, width = image.shape[:2]
    scale = max(INPUT_HEIGHT / height, INPUT_WIDTH / width)
    size = [max(32, round(side * scale / 32) * 32) for side in (width, height)]
    resized = cv2.resize(image, tuple(size), interpolation=cv2.INTER_CUBIC)
    pixels = torch.from_numpy(resized.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    parameter = next(model.parameters())
    depth = model(pixel_values=pixels.to(parameter.device, parameter.dtype)).predicted_depth
    depth = torch.nn.functional.interpolate(depth[:, None].float(), (height, width),
                                            mode="bilinear", align_corners=False)
    return depth[0, 0].cpu().numpy()
