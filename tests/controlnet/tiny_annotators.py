"""Tiny random-weight depth annotators in the released files' own key layout (the names the
Depth-Anything / Depth-Anything-V2 repositories save: a DINOv2 under `pretrained.`, the DPT head
under `depth_head.`), written out here name by name rather than derived from the loader."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def refinement_head(rand, prefix: str, neck: tuple[int, ...],
                    features: int) -> dict[str, torch.Tensor]:
    """DPT's `scratch`: layer{k}_rn convolutions and the four refinenet fusion blocks."""
    tensors = {}
    for k, channels in enumerate(neck, start=1):
        tensors[f"{prefix}.layer{k}_rn.weight"] = rand(features, channels, 3, 3)
        refine = f"{prefix}.refinenet{k}"
        tensors[f"{refine}.out_conv.weight"] = rand(features, features, 1, 1)
        tensors[f"{refine}.out_conv.bias"] = rand(features)
        for unit in ("resConfUnit1", "resConfUnit2"):
            for conv in ("conv1", "conv2"):
                tensors[f"{refine}.{unit}.{conv}.weight"] = rand(features, features, 3, 3)
                tensors[f"{refine}.{unit}.{conv}.bias"] = rand(features)
    return tensors


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
    tensors.update(refinement_head(rand, f"{head}.scratch", neck, features))
    tensors[f"{head}.resize_layers.0.weight"] = rand(neck[0], neck[0], 4, 4)
    tensors[f"{head}.resize_layers.0.bias"] = rand(neck[0])
    tensors[f"{head}.resize_layers.1.weight"] = rand(neck[1], neck[1], 2, 2)
    tensors[f"{head}.resize_layers.1.bias"] = rand(neck[1])
    tensors[f"{head}.resize_layers.3.weight"] = rand(neck[3], neck[3], 3, 3)
    tensors[f"{head}.resize_layers.3.bias"] = rand(neck[3])
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


def dpt_hybrid_midas_state_dict(*, width: int = 64, blocks: int = 12, grid: int = 4,
                                stem: int = 32, stage_widths: tuple[int, ...] = (128, 256, 512),
                                stage_depths: tuple[int, ...] = (1, 2, 1), features: int = 32,
                                seed: int = 0) -> dict[str, torch.Tensor]:
    """MiDaS v3 DPT-Hybrid's names: a timm ViT-hybrid (BiT ResNet stages feeding a 1x1 patch
    projection) under `pretrained.model.`, readout / resize layers `pretrained.act_postprocess3`
    and `4` (1 and 2 are parameter-free), the refinement head under `scratch.`."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.2

    model, backbone = "pretrained.model", "pretrained.model.patch_embed.backbone"
    tensors = {
        f"{model}.cls_token": rand(1, 1, width),
        f"{model}.pos_embed": rand(1, 1 + grid * grid, width),
        f"{backbone}.stem.conv.weight": rand(stem, 3, 7, 7),
        f"{backbone}.stem.norm.weight": 1 + rand(stem), f"{backbone}.stem.norm.bias": rand(stem),
        f"{model}.patch_embed.proj.weight": rand(width, stage_widths[-1], 1, 1),
        f"{model}.patch_embed.proj.bias": rand(width),
        f"{model}.norm.weight": 1 + rand(width), f"{model}.norm.bias": rand(width),
        f"{model}.head.weight": rand(1000, width), f"{model}.head.bias": rand(1000),
    }
    channels = stem
    for s, (out, depth) in enumerate(zip(stage_widths, stage_depths)):
        mid = out // 4
        for b in range(depth):
            block = f"{backbone}.stages.{s}.blocks.{b}"
            incoming = channels if b == 0 else out
            if b == 0:
                tensors[f"{block}.downsample.conv.weight"] = rand(out, incoming, 1, 1)
                tensors[f"{block}.downsample.norm.weight"] = 1 + rand(out)
                tensors[f"{block}.downsample.norm.bias"] = rand(out)
            for name, shape in (("conv1", (mid, incoming, 1, 1)), ("conv2", (mid, mid, 3, 3)),
                                ("conv3", (out, mid, 1, 1))):
                tensors[f"{block}.{name}.weight"] = rand(*shape)
            for name, size in (("norm1", mid), ("norm2", mid), ("norm3", out)):
                tensors[f"{block}.{name}.weight"] = 1 + rand(size)
                tensors[f"{block}.{name}.bias"] = rand(size)
        channels = out
    for i in range(blocks):
        block = f"{model}.blocks.{i}"
        for name, shape in (("norm1", (width,)), ("norm2", (width,))):
            tensors[f"{block}.{name}.weight"] = 1 + rand(*shape)
            tensors[f"{block}.{name}.bias"] = rand(*shape)
        for name, (rows, cols) in (("attn.qkv", (3 * width, width)), ("attn.proj", (width, width)),
                                   ("mlp.fc1", (4 * width, width)),
                                   ("mlp.fc2", (width, 4 * width))):
            tensors[f"{block}.{name}.weight"] = rand(rows, cols)
            tensors[f"{block}.{name}.bias"] = rand(rows)
    neck = (stage_widths[0], stage_widths[1], width, width)
    for k in (3, 4):
        post = f"pretrained.act_postprocess{k}"
        tensors[f"{post}.0.project.0.weight"] = rand(width, 2 * width)
        tensors[f"{post}.0.project.0.bias"] = rand(width)
        tensors[f"{post}.3.weight"] = rand(width, width, 1, 1)
        tensors[f"{post}.3.bias"] = rand(width)
    tensors["pretrained.act_postprocess4.4.weight"] = rand(width, width, 3, 3)
    tensors["pretrained.act_postprocess4.4.bias"] = rand(width)
    tensors.update(refinement_head(rand, "scratch", neck, features))
    for index, (out, inp, kernel) in {0: (features // 2, features, 3), 2: (32, features // 2, 3),
                                      4: (1, 32, 1)}.items():
        tensors[f"scratch.output_conv.{index}.weight"] = rand(out, inp, kernel, kernel)
        tensors[f"scratch.output_conv.{index}.bias"] = rand(out)
    tensors["scratch.output_conv.4.bias"] += 1          # keep the ReLU'd output alive
    return tensors


def write_dpt_hybrid_midas(path: Path, *, seed: int = 0, **shape) -> Path:
    """A tiny MiDaS DPT-Hybrid `.pt` (a pickled state dict, as released)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dpt_hybrid_midas_state_dict(seed=seed, **shape), path)
    return path


def zoedepth_state_dict(*, width: int = 64, blocks: int = 4, window: int = 4,
                        neck: tuple[int, ...] = (16, 32, 64, 64), features: int = 16,
                        bins: int = 8, embedding: int = 16,
                        attractors: tuple[int, ...] = (8, 4, 2, 1),
                        seed: int = 0) -> dict[str, torch.Tensor]:
    """ZoeD_N's names: timm's BEiT (relative position biases, q / v biases, layer scales) and
    MiDaS' readouts and refinement head under `core.core.`, the metric-bins head on top."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.2

    def conv(name: str, out: int, inp: int, kernel: int = 1) -> None:
        tensors[f"{name}.weight"] = rand(out, inp, kernel, kernel)
        tensors[f"{name}.bias"] = rand(out)

    core, model = "core.core", "core.core.pretrained.model"
    tokens = window * window + 1
    tensors = {
        f"{model}.cls_token": rand(1, 1, width),
        f"{model}.patch_embed.proj.weight": rand(width, 3, 16, 16),
        f"{model}.patch_embed.proj.bias": rand(width),
        f"{model}.fc_norm.weight": 1 + rand(width), f"{model}.fc_norm.bias": rand(width),
        f"{model}.head.weight": rand(1000, width), f"{model}.head.bias": rand(1000),
    }
    for i in range(blocks):
        block = f"{model}.blocks.{i}"
        tensors.update({
            f"{block}.gamma_1": rand(width), f"{block}.gamma_2": rand(width),
            f"{block}.norm1.weight": 1 + rand(width), f"{block}.norm1.bias": rand(width),
            f"{block}.attn.q_bias": rand(width), f"{block}.attn.v_bias": rand(width),
            f"{block}.attn.relative_position_bias_table":
                rand((2 * window - 1) ** 2 + 3, width // 64),
            f"{block}.attn.relative_position_index":
                torch.randint(0, 10, (tokens, tokens), generator=generator),
            f"{block}.attn.qkv.weight": rand(3 * width, width),
            f"{block}.attn.proj.weight": rand(width, width), f"{block}.attn.proj.bias": rand(width),
            f"{block}.norm2.weight": 1 + rand(width), f"{block}.norm2.bias": rand(width),
            f"{block}.mlp.fc1.weight": rand(4 * width, width),
            f"{block}.mlp.fc1.bias": rand(4 * width),
            f"{block}.mlp.fc2.weight": rand(width, 4 * width), f"{block}.mlp.fc2.bias": rand(width),
        })
    for k, channels in enumerate(neck, start=1):
        post = f"{core}.pretrained.act_postprocess{k}"
        tensors[f"{post}.0.project.0.weight"] = rand(width, 2 * width)
        tensors[f"{post}.0.project.0.bias"] = rand(width)
        conv(f"{post}.3", channels, width)
    tensors.update(refinement_head(rand, f"{core}.scratch", neck, features))
    post = f"{core}.pretrained.act_postprocess"
    tensors[f"{post}1.4.weight"] = rand(neck[0], neck[0], 4, 4)     # transposed convolutions
    tensors[f"{post}1.4.bias"] = rand(neck[0])
    tensors[f"{post}2.4.weight"] = rand(neck[1], neck[1], 2, 2)
    tensors[f"{post}2.4.bias"] = rand(neck[1])
    conv(f"{post}4.4", neck[3], neck[3], 3)
    conv(f"{core}.scratch.output_conv.0", features // 2, features, 3)
    conv(f"{core}.scratch.output_conv.2", 32, features // 2, 3)
    conv(f"{core}.scratch.output_conv.4", 1, 32)
    conv("conv2", features, features)
    conv("seed_bin_regressor._net.0", 256, features)
    conv("seed_bin_regressor._net.2", bins, 256)
    conv("seed_projector._net.0", 128, features)
    conv("seed_projector._net.2", embedding, 128)
    for i, count in enumerate(attractors):
        conv(f"projectors.{i}._net.0", 128, features)
        conv(f"projectors.{i}._net.2", embedding, 128)
        conv(f"attractors.{i}._net.0", embedding, embedding)
        conv(f"attractors.{i}._net.2", count, embedding)
    mixed = 32 + 1 + embedding
    conv("conditional_log_binomial.mlp.0", mixed // 2, mixed)
    conv("conditional_log_binomial.mlp.2", 4, mixed // 2)
    tensors["conditional_log_binomial.log_binomial_transform.k_idx"] = \
        torch.arange(bins).view(1, -1, 1, 1).float()
    tensors["conditional_log_binomial.log_binomial_transform.K_minus_1"] = torch.tensor([bins - 1.])
    return tensors


def write_zoedepth(path: Path, *, seed: int = 0, **shape) -> Path:
    """A tiny ZoeD_M12_N-style `.pt`: the state dict under "model", as ZoeDepth saves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": zoedepth_state_dict(seed=seed, **shape)}, path)
    return path
