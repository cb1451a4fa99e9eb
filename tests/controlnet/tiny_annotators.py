"""Tiny random-weight depth annotators in the released files' own key layout (the names the
Depth-Anything / Depth-Anything-V2 repositories save: a DINOv2 under `pretrained.`, the DPT head
under `depth_head.`), written out here name by name rather than derived from the loader."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def depth_anything_state_dict(*, width: int = 64, blocks: int = 12, grid: int = 4,
                              neck: tuple[int, ...] = (16, 32, 64, 64), features: int = 16,
                              seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.2

    tensors = {
        "pretrained.cls_token": rand(1, 1, width),
        "pretrained.mask_token": rand(1, width),
        "pretrained.pos_embed": rand(1, 1 + grid * grid, width),
        "pretrained.patch_embed.proj.weight": rand(width, 3, 14, 14),
        "pretrained.patch_embed.proj.bias": rand(width),
        "pretrained.norm.weight": 1 + rand(width),
        "pretrained.norm.bias": rand(width),
    }
    for i in range(blocks):
        block = f"pretrained.blocks.{i}"
        tensors.update({
            f"{block}.norm1.weight": 1 + rand(width), f"{block}.norm1.bias": rand(width),
            f"{block}.attn.qkv.weight": rand(3 * width, width),
            f"{block}.attn.qkv.bias": rand(3 * width),
            f"{block}.attn.proj.weight": rand(width, width), f"{block}.attn.proj.bias": rand(width),
            f"{block}.ls1.gamma": rand(width),
            f"{block}.norm2.weight": 1 + rand(width), f"{block}.norm2.bias": rand(width),
            f"{block}.mlp.fc1.weight": rand(4 * width, width),
            f"{block}.mlp.fc1.bias": rand(4 * width),
            f"{block}.mlp.fc2.weight": rand(width, 4 * width),
            f"{block}.mlp.fc2.bias": rand(width),
            f"{block}.ls2.gamma": rand(width),
        })
    head = "depth_head"
    for i, channels in enumerate(neck):
        tensors[f"{head}.projects.{i}.weight"] = rand(channels, width, 1, 1)
        tensors[f"{head}.projects.{i}.bias"] = rand(channels)
        tensors[f"{head}.scratch.layer{i + 1}_rn.weight"] = rand(features, channels, 3, 3)
    tensors[f"{head}.resize_layers.0.weight"] = rand(neck[0], neck[0], 4, 4)
    tensors[f"{head}.resize_layers.0.bias"] = rand(neck[0])
    tensors[f"{head}.resize_layers.1.weight"] = rand(neck[1], neck[1], 2, 2)
    tensors[f"{head}.resize_layers.1.bias"] = rand(neck[1])
    tensors[f"{head}.resize_layers.3.weight"] = rand(neck[3], neck[3], 3, 3)
    tensors[f"{head}.resize_layers.3.bias"] = rand(neck[3])
    for n in range(1, 5):
        refine = f"{head}.scratch.refinenet{n}"
        tensors[f"{refine}.out_conv.weight"] = rand(features, features, 1, 1)
        tensors[f"{refine}.out_conv.bias"] = rand(features)
        for unit in ("resConfUnit1", "resConfUnit2"):
            for conv in ("conv1", "conv2"):
                tensors[f"{refine}.{unit}.{conv}.weight"] = rand(features, features, 3, 3)
                tensors[f"{refine}.{unit}.{conv}.bias"] = rand(features)
    tensors[f"{head}.scratch.output_conv1.weight"] = rand(features // 2, features, 3, 3)
    tensors[f"{head}.scratch.output_conv1.bias"] = rand(features // 2)
    tensors[f"{head}.scratch.output_conv2.0.weight"] = rand(32, features // 2, 3, 3)
    tensors[f"{head}.scratch.output_conv2.0.bias"] = rand(32)
    tensors[f"{head}.scratch.output_conv2.2.weight"] = rand(1, 32, 1, 1)
    tensors[f"{head}.scratch.output_conv2.2.bias"] = 1 + rand(1)   # keep the ReLU'd output alive
    return tensors


def write_depth_anything(path: Path, *, seed: int = 0, **shape) -> Path:
    """A tiny Depth Anything file at `path` (.safetensors, or a .pth pickle of the state dict)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = depth_anything_state_dict(seed=seed, **shape)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    else:
        torch.save(tensors, path)
    return path
