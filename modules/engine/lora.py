"""LoRA networks in kohya's naming (what A1111, Forge and ComfyUI load) applied to a loaded
`StableDiffusionModel` for the length of one job: each target weight gets
`W + multiplier * (alpha / rank) * up @ down` while the job runs and its own values back after,
bit for bit (a copy of every touched weight is kept meanwhile).

Names: `lora_unet_*` (SD1.x / SD2.x: diffusers' UNet paths; SDXL: the LDM paths), `lora_te_*`
(SD1.x transformers CLIP, SD2.x OpenCLIP), `lora_te1_*` / `lora_te2_*` (SDXL's two encoders).
diffusers paths are turned into the LDM ones as A1111 does (down_blocks_i_attentions_j →
input_blocks_{1+3i+j}_1 …); OpenCLIP's fused attention takes q / k / v as row slices of
`in_proj_weight`. Kinds: LoRA (`lora_down` / `lora_up` [/ `alpha`]), LoCon (the same on
convolutions, any kernel), LyCORIS LoHa (`hada_w*`), LoKr (`lokr_w*`, whole or factored) and full
diffs (`diff`); the rest (Tucker, DoRA, IA3, OFT, norms) is refused by name.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

_RESNET_PARTS = {"conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0",
                 "norm2": "out_layers_0", "time_emb_proj": "emb_layers_1",
                 "conv_shortcut": "skip_connection"}
_CLIP_TO_OPENCLIP = (("self_attn_out_proj", "attn_out_proj"), ("mlp_fc1", "mlp_c_fc"),
                     ("mlp_fc2", "mlp_c_proj"))
_QKV = {"q_proj": 0, "k_proj": 1, "v_proj": 2}


class LoraError(ValueError):
    """A file that is no LoRA this build reads, or one for another model (the message says)."""


def diffusers_unet_to_ldm(name: str, res_blocks: int = 2) -> str:
    """A kohya SD1.x / SD2.x UNet name (diffusers path, '_'-joined) → the LDM path, '_'-joined,
    under `diffusion_model_` (A1111's convert_diffusers_name_to_compvis, which assumes the two
    res blocks per level of every real SD model; `res_blocks` says otherwise)."""
    down, up = res_blocks + 1, res_blocks + 1        # LDM blocks per level, each way

    def resnet(rest: str) -> str:
        for part, ldm in _RESNET_PARTS.items():
            if rest == part or rest.startswith(part + "_"):
                return ldm + rest[len(part):]
        return rest

    rules = (
        (r"down_blocks_(\d+)_attentions_(\d+)_(.+)",
         lambda m: f"input_blocks_{1 + down * int(m[1]) + int(m[2])}_1_{m[3]}"),
        (r"down_blocks_(\d+)_resnets_(\d+)_(.+)",
         lambda m: f"input_blocks_{1 + down * int(m[1]) + int(m[2])}_0_{resnet(m[3])}"),
        (r"down_blocks_(\d+)_downsamplers_0_conv",
         lambda m: f"input_blocks_{down * (int(m[1]) + 1)}_0_op"),
        (r"mid_block_attentions_0_(.+)", lambda m: f"middle_block_1_{m[1]}"),
        (r"mid_block_resnets_(\d+)_(.+)",
         lambda m: f"middle_block_{2 * int(m[1])}_{resnet(m[2])}"),
        (r"up_blocks_(\d+)_attentions_(\d+)_(.+)",
         lambda m: f"output_blocks_{up * int(m[1]) + int(m[2])}_1_{m[3]}"),
        (r"up_blocks_(\d+)_resnets_(\d+)_(.+)",
         lambda m: f"output_blocks_{up * int(m[1]) + int(m[2])}_0_{resnet(m[3])}"),
        # the upsampler follows the last res block (and its attention, when the level has one)
        (r"up_blocks_(\d+)_upsamplers_0_conv",
         lambda m: f"output_blocks_{up * int(m[1]) + res_blocks}_"
                   f"{2 if int(m[1]) > 0 else 1}_conv"),
    )
    for pattern, make in rules:
        if match := re.fullmatch(pattern, name):
            return "diffusion_model_" + make(match)
    return "diffusion_model_" + name        # SDXL kohya files already use the LDM paths


@dataclass(frozen=True)
class Target:
    """Where a LoRA module lands: a parameter of the model, maybe a row slice of it."""
    parameter: str                  # e.g. "model.diffusion_model.input_blocks.1.1.proj_in.weight"
    rows: tuple[int, int] | None = None     # OpenCLIP q / k / v inside in_proj_weight


def target_index(shapes: Mapping[str, torch.Size]) -> dict[str, Target]:
    """Every name a kohya LoRA may use for a model (its state-dict names and shapes) → where
    it lands."""
    index: dict[str, Target] = {}
    for name in shapes:
        if not name.endswith(".weight") and not name.endswith("in_proj_weight"):
            continue
        path = name[:-len(".weight")] if name.endswith(".weight") else name
        flat = path.replace(".", "_")
        if flat.startswith("model_diffusion_model_"):
            index["unet:" + flat[len("model_"):]] = Target(name)
        for prefix, key in (("cond_stage_model_transformer_", "te:"),
                            ("conditioner_embedders_0_transformer_", "te1:")):
            if flat.startswith(prefix):       # transformers CLIP: the names kohya uses
                index[key + flat[len(prefix):]] = Target(name)
        for prefix, key in (("cond_stage_model_model_transformer_resblocks_", "te:"),
                            ("conditioner_embedders_1_model_transformer_resblocks_", "te2:")):
            if not flat.startswith(prefix):
                continue
            rest = flat[len(prefix):]                   # "N_attn_out_proj", "N_attn_in_proj_weight"
            layer, _, part = rest.partition("_")
            if part == "attn_in_proj_weight":
                width = shapes[name][0] // 3
                for proj, slot in _QKV.items():
                    index[f"{key}text_model_encoder_layers_{layer}_self_attn_{proj}"] = Target(
                        name, (slot * width, (slot + 1) * width))
                continue
            for clip, open_clip in _CLIP_TO_OPENCLIP:
                if part == open_clip:
                    index[f"{key}text_model_encoder_layers_{layer}_{clip}"] = Target(name)
    return index


def lookup_key(lora_name: str, res_blocks: int = 2) -> str | None:
    """A kohya module name → its `target_index` key (None: not a UNet / text encoder name)."""
    for prefix, key in (("lora_unet_", "unet:"), ("lora_te1_", "te1:"), ("lora_te2_", "te2:"),
                        ("lora_te_", "te:")):
        if lora_name.startswith(prefix):
            rest = lora_name[len(prefix):]
            return key + (diffusers_unet_to_ldm(rest, res_blocks) if key == "unet:" else rest)
    return None


#: the tensors of one module, by kind (kohya LoRA / LoCon, LyCORIS LoHa, LoKr, full "diff")
KIND_PARTS = {
    "lora": ("lora_down.weight", "lora_up.weight"),
    "loha": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"),
    "lokr": ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b"),
    "full": ("diff",),
}
UNSUPPORTED_PARTS = {"lora_mid.weight": "Tucker-decomposed LoCon", "hada_t1": "Tucker LoHa",
                     "hada_t2": "Tucker LoHa", "lokr_t2": "Tucker LoKr",
                     "dora_scale": "DoRA", "diff_b": "bias diffs", "w_norm": "norm modules",
                     "b_norm": "norm modules", "on_input": "IA3",
                     "oft_blocks": "OFT", "oft_diag": "OFT"}
KNOWN_PARTS = {part for parts in KIND_PARTS.values() for part in parts} | {"alpha"}


def _kind(parts: Mapping[str, Tensor]) -> str:
    for kind, names in KIND_PARTS.items():
        if any(name in parts for name in names):
            return kind
    raise LoraError(f"no known LoRA tensors among {sorted(parts)}")


def _matrix(parts: Mapping[str, Tensor], name: str) -> Tensor:
    """LoKr's factor `name`: stored whole, or as `name_a @ name_b`."""
    if name in parts:
        return parts[name].float()
    return parts[f"{name}_a"].float() @ parts[f"{name}_b"].float()


@dataclass
class LoraModule:
    target: Target
    kind: str                       # a key of KIND_PARTS
    parts: dict[str, Tensor]
    alpha: float | None

    def scale(self) -> float:
        """alpha / dim as A1111 computes it per kind (1 without alpha, or for full diffs)."""
        if self.alpha is None or self.kind == "full":
            return 1.0
        parts = self.parts
        if self.kind == "lora":
            dim = parts["lora_down.weight"].shape[0]
        elif self.kind == "loha":
            dim = parts["hada_w1_b"].shape[0]
        else:
            dim = parts["lokr_w1_b"].shape[0] if "lokr_w1_b" in parts else \
                parts["lokr_w2_b"].shape[0] if "lokr_w2_b" in parts else None
        return self.alpha / dim if dim else 1.0

    def out_in(self) -> tuple[int, int]:
        """(rows, inputs × kernel) the module's delta has, without building it."""
        parts = self.parts
        if self.kind == "lora":
            return parts["lora_up.weight"].shape[0], parts["lora_down.weight"][0].numel()
        if self.kind == "loha":
            return parts["hada_w1_a"].shape[0], parts["hada_w1_b"].shape[1]
        if self.kind == "full":
            return parts["diff"].shape[0], parts["diff"][0].numel()

        def size(name: str) -> tuple[int, int]:
            if name in parts:
                return parts[name].shape[0], parts[name][0].numel()
            return parts[f"{name}_a"].shape[0], parts[f"{name}_b"].shape[1]
        (o1, i1), (o2, i2) = size("lokr_w1"), size("lokr_w2")
        return o1 * o2, i1 * i2

    def delta(self, shape: torch.Size, dtype: torch.dtype) -> Tensor:
        """The weight change in the target's shape (convolutions: the kernel is flattened into
        the inner dimension, as A1111 rebuilds them)."""
        parts = self.parts
        if self.kind == "lora":
            product = parts["lora_up.weight"].flatten(1).float() @ \
                parts["lora_down.weight"].flatten(1).float()
        elif self.kind == "loha":
            product = (parts["hada_w1_a"].float() @ parts["hada_w1_b"].float()) * \
                (parts["hada_w2_a"].float() @ parts["hada_w2_b"].float())
        elif self.kind == "lokr":
            w1, w2 = _matrix(parts, "lokr_w1"), _matrix(parts, "lokr_w2")
            if w2.ndim == 4:
                w1 = w1[:, :, None, None]
            product = torch.kron(w1, w2)
        else:
            product = parts["diff"].float()
        return (product * self.scale()).reshape(shape).to(dtype)


@dataclass
class LoraNetwork:
    name: str
    modules: list[LoraModule]
    unmatched: list[str] = field(default_factory=list)   # module names this model lacks


def group_modules(state_dict: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """Flat keys ("<module>.<part>") → {module name: {part: tensor}}."""
    groups: dict[str, dict[str, Tensor]] = {}
    for key, tensor in state_dict.items():
        for part in sorted(KNOWN_PARTS | set(UNSUPPORTED_PARTS), key=len, reverse=True):
            if key.endswith("." + part):
                if part in UNSUPPORTED_PARTS:
                    raise LoraError(f"{key}: {UNSUPPORTED_PARTS[part]} are not supported yet")
                groups.setdefault(key[:-len(part) - 1], {})[part] = tensor
                break
        else:
            raise LoraError(f"unsupported LoRA tensor {key!r}")
    return groups


def build_network(name: str, state_dict: Mapping[str, Tensor],
                  index: Mapping[str, Target], shapes: Mapping[str, torch.Size], *,
                  res_blocks: int = 2) -> LoraNetwork:
    """The network's modules matched onto a model (`index` from target_index, `shapes` its
    parameter shapes); a module whose size does not fit is a LoraError naming it (a LoRA for
    another architecture)."""
    network = LoraNetwork(name, [])
    for module_name, parts in group_modules(state_dict).items():
        key = lookup_key(module_name, res_blocks)
        target = index.get(key) if key else None
        if target is None:
            network.unmatched.append(module_name)
            continue
        alpha = parts.pop("alpha", None)
        try:
            module = LoraModule(target, _kind(parts), dict(parts),
                                float(alpha) if alpha is not None else None)
            rows, inner = module.out_in()
        except (KeyError, IndexError) as error:
            raise LoraError(f"{module_name}: incomplete tensors ({error})") from error
        except LoraError as error:
            raise LoraError(f"{module_name}: {error}") from error
        shape = shapes[target.parameter]
        wanted = ((target.rows[1] - target.rows[0]) if target.rows else shape[0],
                  int(torch.Size(shape[1:]).numel()) if len(shape) > 1 else 1)
        if (rows, inner) != wanted:
            raise LoraError(f"{module_name}: a {module.kind} of {rows}x{inner} does not fit "
                            f"{target.parameter} {list(shape)} (another model's LoRA?)")
        network.modules.append(module)
    if not network.modules:
        raise LoraError(f"{name}: none of its {len(network.unmatched)} modules fits this model "
                        "(a LoRA for another architecture?)")
    return network


class LoraPatch:
    """`with LoraPatch(model, [(network, te_multiplier, unet_multiplier), …]):` the networks are
    in the weights inside the block and the weights are bit-identical to before after it."""

    def __init__(self, model: nn.Module,
                 networks: list[tuple[LoraNetwork, float, float]]) -> None:
        self.model = model
        self.networks = networks
        self._saved: dict[str, Tensor] = {}

    def __enter__(self) -> "LoraPatch":
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for network, te_multiplier, unet_multiplier in self.networks:
                for module in network.modules:
                    name = module.target.parameter
                    multiplier = unet_multiplier if name.startswith("model.") else te_multiplier
                    if multiplier == 0:
                        continue
                    weight = parameters[name]
                    if name not in self._saved:
                        self._saved[name] = weight.detach().clone()
                    view = weight[slice(*module.target.rows)] if module.target.rows else weight
                    delta = module.delta(view.shape, torch.float32) * multiplier
                    view.copy_((view.float() + delta).to(view.dtype))
        return self

    def __exit__(self, *exc_info: object) -> None:
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, saved in self._saved.items():
                parameters[name].copy_(saved)
        self._saved.clear()
