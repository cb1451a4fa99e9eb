"""LoRA / LyCORIS networks in kohya's naming (what A1111, Forge and ComfyUI load) applied to a
loaded `StableDiffusionModel` for the length of one job: the parameters they change are swapped
for patched copies (`W + m·(alpha/rank)·up@down` and the other kinds of `lora_modules.py`)
while the job runs, and the model's own tensors, never written to, are put back after.

Names: `lora_unet_*` (SD1.x / SD2.x: diffusers' UNet paths; SDXL: the LDM paths), `lora_te_*`
(SD1.x transformers CLIP, SD2.x OpenCLIP), `lora_te1_*` / `lora_te2_*` (SDXL's two encoders);
diffusers / PEFT files (`unet.<dotted path>.lora_A.weight` …) are read as the same names.
diffusers paths are turned into the LDM ones as A1111 does (down_blocks_i_attentions_j →
input_blocks_{1+3i+j}_1 …); OpenCLIP's fused attention takes q / k / v as row slices of
`in_proj_weight`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from modules.engine.lora_modules import KNOWN_PARTS, PART_ALIASES, LoraError, LoraModule, \
    Target, module_kind

_RESNET_PARTS = {"conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0",
                 "norm2": "out_layers_0", "time_emb_proj": "emb_layers_1",
                 "conv_shortcut": "skip_connection"}
_CLIP_TO_OPENCLIP = (("self_attn_out_proj", "attn_out_proj"), ("mlp_fc1", "mlp_c_fc"),
                     ("mlp_fc2", "mlp_c_proj"))
_QKV = {"q_proj": 0, "k_proj": 1, "v_proj": 2}


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


def kohya_name(module_name: str) -> str:
    """Any trainer's module name → kohya's: diffusers / PEFT files name modules by their dotted
    diffusers paths under `unet.`, `text_encoder.`, `text_encoder_2.` (maybe under PEFT's
    `base_model.model.`)."""
    name = module_name.removeprefix("base_model.model.")
    for prefix, kohya in (("unet.", "lora_unet_"), ("text_encoder_2.", "lora_te2_"),
                          ("text_encoder.", "lora_te_")):
        if name.startswith(prefix):
            return kohya + name[len(prefix):].replace(".", "_")
    return name


def lookup_keys(lora_name: str, res_blocks: int = 2) -> list[str]:
    """A module name → the `target_index` keys it may mean, most likely first (none: not a UNet
    or text-encoder name). `lora_te_` is SDXL's first encoder in diffusers-named files; an up
    block's upsampler sits after its attention only where the level has attention."""
    lora_name = kohya_name(lora_name)
    for prefix, key in (("lora_unet_", "unet:"), ("lora_te1_", "te1:"), ("lora_te2_", "te2:"),
                        ("lora_te_", "te:")):
        if not lora_name.startswith(prefix):
            continue
        rest = lora_name[len(prefix):]
        if key == "te:":
            return ["te:" + rest, "te1:" + rest]
        if key != "unet:":
            return [key + rest]
        converted = diffusers_unet_to_ldm(rest, res_blocks)
        keys = ["unet:" + converted]
        if re.search(r"upsamplers_0_conv$", rest):
            level = converted.rsplit("_", 2)
            keys.append("unet:" + level[0] + ("_1_conv" if level[1] == "2" else "_2_conv"))
        return keys
    return []


@dataclass
class LoraNetwork:
    name: str
    modules: list[LoraModule]
    unmatched: list[str] = field(default_factory=list)   # module names this model lacks

    def first_ranks(self, count: int | None) -> "LoraNetwork":
        """The network with `dyn=count` (None: itself)."""
        if count is None:
            return self
        return LoraNetwork(self.name, [module.first_ranks(count) for module in self.modules],
                           self.unmatched)


_PARTS_LONGEST_FIRST = sorted(KNOWN_PARTS | set(PART_ALIASES),
                              key=len, reverse=True)


def group_modules(state_dict: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """Flat keys ("<module>.<part>") → {module name: {part: tensor}}."""
    groups: dict[str, dict[str, Tensor]] = {}
    for key, tensor in state_dict.items():
        for part in _PARTS_LONGEST_FIRST:
            if key.endswith("." + part):
                groups.setdefault(key[:-len(part) - 1], {})[PART_ALIASES.get(part, part)] = tensor
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
        target = next((index[key] for key in lookup_keys(module_name, res_blocks)
                       if key in index), None)
        if target is None:
            network.unmatched.append(module_name)
            continue
        alpha = parts.pop("alpha", None)
        try:
            module = LoraModule(target, module_kind(parts), dict(parts),
                                float(alpha) if alpha is not None else None)
            rows, inner = module.out_in(shapes[target.parameter])
        except (KeyError, IndexError) as error:
            raise LoraError(f"{module_name}: incomplete tensors ({error})") from error
        except LoraError as error:
            raise LoraError(f"{module_name}: {error}") from error
        shape = shapes[target.parameter]
        wanted = ((target.rows[1] - target.rows[0]) if target.rows else shape[0],
                  int(torch.Size(shape[1:]).numel()) if len(shape) > 1 else 1)
        if module.bias_delta() is not None and bias_name(target.parameter) not in shapes:
            raise LoraError(f"{module_name}: changes a bias that {target.parameter} lacks")
        if (rows, inner) != wanted:
            raise LoraError(f"{module_name}: a {module.kind} of {rows}x{inner} does not fit "
                            f"{target.parameter} {list(shape)} (another model's LoRA?)")
        network.modules.append(module)
    if not network.modules:
        raise LoraError(f"{name}: none of its {len(network.unmatched)} modules fits this model "
                        "(a LoRA for another architecture?)")
    return network


def bias_name(weight_name: str) -> str:
    """The bias beside a weight (OpenCLIP's fused `in_proj_weight` → `in_proj_bias`)."""
    return weight_name[:-len("weight")] + "bias"


def _multiplier(name: str, te_multiplier: float, unet_multiplier: float) -> float:
    return unet_multiplier if name.startswith("model.") else te_multiplier


def patch_bytes(model: nn.Module, networks: list[tuple[LoraNetwork, float, float]]) -> int:
    """The memory `patched_weights` takes: one copy of every parameter the networks change."""
    parameters = dict(model.named_parameters())
    touched = {name for network, te, unet in networks for module in network.modules
               if _multiplier(module.target.parameter, te, unet) != 0
               for name in (module.target.parameter,
                            *([bias_name(module.target.parameter)]
                              if module.bias_delta() is not None else []))}
    return sum(parameters[name].numel() * parameters[name].element_size() for name in touched)


def patched_weights(model: nn.Module, networks: list[tuple[LoraNetwork, float, float]]
                    ) -> dict[str, Tensor]:
    """New tensors for the parameters the networks change, with the networks in them (each
    network's change computed from the model's own weight, as A1111 does); the model's
    parameters are not touched."""
    parameters = dict(model.named_parameters())
    patched: dict[str, Tensor] = {}
    # plain tensors (not inference tensors), so the patched model can serve any caller
    with torch.inference_mode(False), torch.no_grad():
        for network, te_multiplier, unet_multiplier in networks:
            for module in network.modules:
                name = module.target.parameter
                multiplier = _multiplier(name, te_multiplier, unet_multiplier)
                if multiplier == 0:
                    continue
                original = parameters[name].detach()
                if name not in patched:
                    patched[name] = original.clone()
                rows = slice(*module.target.rows) if module.target.rows else slice(None)
                module.add_to(patched[name][rows], original[rows], multiplier)
                change = module.bias_delta()
                if change is not None:
                    bias = bias_name(name)
                    if bias not in patched:
                        patched[bias] = parameters[bias].detach().clone()
                    view = patched[bias][rows]
                    view.copy_((view.float() + change.to(view.device) * multiplier)
                               .to(view.dtype))
    return patched


class LoraPatch:
    """`with LoraPatch(model, [(network, te_multiplier, unet_multiplier), …]):` inside the block
    the model's changed parameters hold patched copies (`weights`: computed here, or given from
    an earlier job with the same networks); after it they hold their own tensors again, which
    were never written to."""

    def __init__(self, model: nn.Module, networks: list[tuple[LoraNetwork, float, float]], *,
                 weights: dict[str, Tensor] | None = None) -> None:
        self.model = model
        self.networks = networks
        self.weights = weights
        self._originals: dict[str, Tensor] = {}

    def __enter__(self) -> "LoraPatch":
        if self.weights is None:
            self.weights = patched_weights(self.model, self.networks)
        parameters = dict(self.model.named_parameters())
        for name, tensor in self.weights.items():
            self._originals[name] = parameters[name].data
            parameters[name].data = tensor
        return self

    def __exit__(self, *exc_info: object) -> None:
        parameters = dict(self.model.named_parameters())
        for name, original in self._originals.items():
            parameters[name].data = original
        self._originals.clear()
