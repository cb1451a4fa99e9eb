"""The module kinds of LoRA / LyCORIS files and the weight change each makes (kohya LoRA /
LoCon with Tucker cores, LoHa, LoKr, IA3, OFT / BOFT, norm modules, full diffs, DoRA on any of
them), matched onto one model parameter (`Target`). `lora.py` names and groups the modules and
patches the model with them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor


class LoraError(ValueError):
    """A file that is no LoRA this build reads, or one for another model (the message says)."""


@dataclass(frozen=True)
class Target:
    """Where a LoRA module lands: a parameter of the model, maybe a row slice of it."""
    parameter: str                  # e.g. "model.diffusion_model.input_blocks.1.1.proj_in.weight"
    rows: tuple[int, int] | None = None     # OpenCLIP q / k / v inside in_proj_weight


#: the tensors of one module, by kind (kohya LoRA / LoCon [Tucker: `lora_mid`], LyCORIS LoHa,
#: LoKr [both with Tucker cores `hada_t*` / `lokr_t2`], IA3, full "diff"); `dora_scale` makes
#: any of them DoRA
KIND_PARTS = {
    "lora": ("lora_down.weight", "lora_up.weight", "lora_mid.weight"),
    "loha": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"),
    "lokr": ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"),
    "ia3": ("weight", "on_input"),
    "oft": ("oft_blocks", "oft_diag", "rescale"),
    "norm": ("w_norm", "b_norm"),
    "full": ("diff", "diff_b"),
}
#: the parts that change a bias (the target weight's neighbour) rather than the weight
BIAS_PARTS = ("b_norm", "diff_b")
#: other trainers' names for a LoRA's two matrices (PEFT, diffusers' attention processors)
PART_ALIASES = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight",
                "lora.down.weight": "lora_down.weight", "lora.up.weight": "lora_up.weight",
                "lora_linear_layer.down.weight": "lora_down.weight",
                "lora_linear_layer.up.weight": "lora_up.weight"}
KNOWN_PARTS = {part for parts in KIND_PARTS.values() for part in parts} | {"alpha", "dora_scale"}


def module_kind(parts: Mapping[str, Tensor]) -> str:
    for kind, names in KIND_PARTS.items():
        if any(name in parts for name in names):
            return kind
    raise LoraError(f"no known LoRA tensors among {sorted(parts)}")


def _tucker(core: Tensor, wa: Tensor, wb: Tensor) -> Tensor:
    """A Tucker core (rank, rank, kh, kw) with its factors wa (rank, out), wb (rank, in) →
    (out, in, kh, kw)."""
    return torch.einsum("i j k l, i p, j r -> p r k l", core.float(), wa.float(), wb.float())


def _matrix(parts: Mapping[str, Tensor], name: str, core: str | None = None) -> Tensor:
    """LoKr's factor `name`: stored whole, as `name_a @ name_b`, or around a Tucker core."""
    if name in parts:
        return parts[name].float()
    if core is not None and core in parts:
        return _tucker(parts[core], parts[f"{name}_a"], parts[f"{name}_b"])
    return parts[f"{name}_a"].float() @ parts[f"{name}_b"].float()


def _cayley(blocks: Tensor, constraint: float) -> Tensor:
    """Orthogonal blocks from trained ones: Q = B - Bᵀ (its norm clamped to `constraint`, when
    set), R = (I + Q)(I - Q)⁻¹."""
    skew = blocks - blocks.transpose(-1, -2)
    if constraint:
        norm = skew.flatten().norm()
        skew = skew * ((norm.clamp(max=constraint) + 1e-8) / (norm + 1e-8))
    eye = torch.eye(blocks.shape[-1], device=blocks.device)
    return (eye + skew) @ torch.linalg.inv(eye - skew)


def _butterfly(rows: Tensor, half: int, forward: bool) -> Tensor:
    """BOFT's row permutation at one level: groups of 2·`half` rows, their two halves
    interleaved (forward) or back."""
    shape = rows.shape
    grouped = rows.reshape(-1, 2, half, *shape[1:]) if forward else \
        rows.reshape(-1, half, 2, *shape[1:])
    return grouped.transpose(1, 2).reshape(shape)


def _oft_rotated(parts: Mapping[str, Tensor], base: Tensor, alpha: float | None) -> Tensor:
    """The weight with OFT's block-orthogonal rotation of its output rows applied (kohya /
    LyCORIS `oft_blocks`, old LyCORIS `oft_diag` = the rotation itself, BOFT's butterfly
    stack when the blocks are 4-D), then LyCORIS' optional per-row `rescale`."""
    out = base.shape[0]
    if "oft_diag" in parts:
        rotation = parts["oft_diag"].float()
    else:
        rotation = _cayley(parts["oft_blocks"].float(), (alpha or 0.0) * out)
    if rotation.ndim == 3:
        count, size = rotation.shape[0], rotation.shape[1]
        blocks = base.reshape(count, size, *base.shape[1:])
        rotated = torch.einsum("k n m, k n ... -> k m ...", rotation, blocks).reshape(base.shape)
    else:
        size = rotation.shape[-1]
        rotated = base
        for level, level_blocks in enumerate(rotation):
            half = 2 ** level * (size // 2)
            rows = _butterfly(rotated, half, True).reshape(-1, size, *base.shape[1:])
            rows = torch.einsum("b i j, b j ... -> b i ...", level_blocks, rows)
            rotated = _butterfly(rows.reshape(base.shape), half, False)
    if "rescale" in parts:
        rotated = rotated * parts["rescale"].float().reshape(-1, *[1] * (base.ndim - 1))
    return rotated


@dataclass
class LoraModule:
    target: Target
    kind: str                       # a key of KIND_PARTS
    parts: dict[str, Tensor]
    alpha: float | None
    rank: int | None = None         # the trained rank when `parts` were cut down (`dyn=`)

    @property
    def dora_scale(self) -> Tensor | None:
        return self.parts.get("dora_scale")

    def first_ranks(self, count: int) -> "LoraModule":
        """A1111's `dyn=`: only the first `count` ranks of a plain LoRA (scaled as the whole
        one: alpha over the trained rank); other kinds as they are."""
        parts = self.parts
        if self.kind != "lora" or "lora_mid.weight" in parts or \
                count >= parts["lora_down.weight"].shape[0]:
            return self
        cut = dict(parts, **{"lora_down.weight": parts["lora_down.weight"][:count],
                             "lora_up.weight": parts["lora_up.weight"][:, :count]})
        return LoraModule(self.target, self.kind, cut, self.alpha,
                          parts["lora_down.weight"].shape[0])

    def scale(self) -> float:
        """alpha / dim as A1111 computes it per kind (1 without alpha, or for full diffs)."""
        if self.alpha is None or self.kind in ("full", "ia3", "oft", "norm"):
            return 1.0
        parts = self.parts
        if self.rank is not None:
            dim = self.rank
        elif self.kind == "lora":
            dim = parts["lora_down.weight"].shape[0]
        elif self.kind == "loha":
            dim = parts["hada_w1_b"].shape[0]
        else:
            dim = parts["lokr_w1_b"].shape[0] if "lokr_w1_b" in parts else \
                parts["lokr_w2_b"].shape[0] if "lokr_w2_b" in parts else None
        return self.alpha / dim if dim else 1.0

    def out_in(self, shape: torch.Size) -> tuple[int, int]:
        """(rows, inputs × kernel) the module's delta has, without building it (`shape`: the
        target's, which IA3 takes as it is)."""
        parts = self.parts
        kernel = int(torch.Size(shape[2:]).numel())
        if self.kind == "lora":
            if "lora_mid.weight" in parts:
                return parts["lora_up.weight"].shape[0], \
                    parts["lora_down.weight"].shape[1] * parts["lora_mid.weight"][0, 0].numel()
            return parts["lora_up.weight"].shape[0], parts["lora_down.weight"][0].numel()
        if self.kind == "loha":
            if "hada_t1" in parts:
                return parts["hada_w1_a"].shape[1], \
                    parts["hada_w1_b"].shape[1] * parts["hada_t1"][0, 0].numel()
            return parts["hada_w1_a"].shape[0], parts["hada_w1_b"].shape[1]
        if self.kind == "ia3":
            length = parts["weight"].numel()
            on_input = bool(parts.get("on_input", torch.tensor(False)).item())
            return (shape[0], length * kernel) if on_input else \
                (length, shape[1] * kernel if len(shape) > 1 else 1)
        if self.kind == "full" and "diff" in parts:
            return parts["diff"].shape[0], parts["diff"][0].numel()
        if self.kind in ("full", "norm", "oft"):
            blocks = parts.get("oft_blocks", parts.get("oft_diag"))
            rows = parts["w_norm"].shape[0] if "w_norm" in parts else \
                blocks.shape[-3] * blocks.shape[-1] if blocks is not None else shape[0]
            return rows, int(torch.Size(shape[1:]).numel()) if len(shape) > 1 else 1

        def size(name: str, core: str | None = None) -> tuple[int, int]:
            if name in parts:
                return parts[name].shape[0], parts[name][0].numel()
            if core is not None and core in parts:
                return parts[f"{name}_a"].shape[1], \
                    parts[f"{name}_b"].shape[1] * parts[core][0, 0].numel()
            return parts[f"{name}_a"].shape[0], parts[f"{name}_b"].shape[1]
        (o1, i1), (o2, i2) = size("lokr_w1"), size("lokr_w2", "lokr_t2")
        return o1 * o2, i1 * i2

    def bias_delta(self) -> Tensor | None:
        """The change of the target's bias (norm modules' `b_norm`, full diffs' `diff_b`)."""
        part = next((self.parts[name] for name in BIAS_PARTS if name in self.parts), None)
        return None if part is None else part.float().flatten()

    def add_to(self, weight: Tensor, base: Tensor, multiplier: float) -> None:
        """`weight += multiplier * delta` in place (`base`: the model's own weight). A plain
        LoRA on a float32 weight is one fused `addmm_` without a full-size temporary."""
        parts = self.parts
        if self.kind == "lora" and "lora_mid.weight" not in parts and self.dora_scale is None \
                and weight.dtype == torch.float32 and weight.is_contiguous():
            up, down = (parts[f"lora_{side}.weight"].flatten(1).to(weight.device, torch.float32)
                        for side in ("up", "down"))
            weight.view(weight.shape[0], -1).addmm_(up, down, alpha=multiplier * self.scale())
            return
        weight.copy_((weight.float() + self.delta(base) * multiplier).to(weight.dtype))

    def delta(self, base: Tensor) -> Tensor:
        """The weight change (float32) for the target's own weight `base` (its rows, for a
        slice): convolutions get the kernel folded in as A1111 rebuilds them; IA3 and DoRA
        scale from `base`. The multiplier is the caller's."""
        parts = {name: tensor.to(base.device) for name, tensor in self.parts.items()}
        shape = base.shape
        if self.kind == "lora":
            up, down = parts["lora_up.weight"].float(), parts["lora_down.weight"].float()
            if "lora_mid.weight" in parts:
                product = torch.einsum("n m k l, i n, m j -> i j k l",
                                       parts["lora_mid.weight"].float(), up.flatten(1),
                                       down.flatten(1))
            else:
                product = up.flatten(1) @ down.flatten(1)
        elif self.kind == "loha":
            if "hada_t1" in parts:
                product = _tucker(parts["hada_t1"], parts["hada_w1_a"], parts["hada_w1_b"]) * \
                    _tucker(parts["hada_t2"], parts["hada_w2_a"], parts["hada_w2_b"])
            else:
                product = (parts["hada_w1_a"].float() @ parts["hada_w1_b"].float()) * \
                    (parts["hada_w2_a"].float() @ parts["hada_w2_b"].float())
        elif self.kind == "lokr":
            w1, w2 = _matrix(parts, "lokr_w1"), _matrix(parts, "lokr_w2", "lokr_t2")
            if w2.ndim == 4:
                w1 = w1[:, :, None, None]
            product = torch.kron(w1, w2)
        elif self.kind == "ia3":
            scale = parts["weight"].float().flatten()
            on_input = bool(parts.get("on_input", torch.tensor(False)).item())
            flat = base.float().flatten(1) if base.ndim > 1 else base.float()[:, None]
            if on_input:     # one factor per input channel, repeated over the kernel
                scale = scale.repeat_interleave(flat.shape[1] // scale.numel())[None, :]
            else:
                scale = scale[:, None]
            product = flat * scale
        elif self.kind == "oft":
            product = _oft_rotated(parts, base.float(), self.alpha) - base.float()
        elif self.kind == "norm":
            product = parts["w_norm"].float() if "w_norm" in parts else torch.zeros(shape)
        else:
            product = parts["diff"].float() if "diff" in parts else torch.zeros(shape)
        product = product.reshape(shape)
        if self.dora_scale is not None:
            product = self._decompose(product, base.float())
        return product * self.scale()

    def _decompose(self, delta: Tensor, base: Tensor) -> Tensor:
        """DoRA as A1111 applies it: the merged weight's direction with the trained magnitude
        `dora_scale`, per input column ((1, in, …): LyCORIS' default) or per output row."""
        merged = base + delta
        magnitude = self.dora_scale.to(base.device, torch.float32)
        if magnitude.shape[0] == 1 and merged.shape[0] != 1:
            norm = merged.transpose(0, 1).flatten(1).norm(dim=1)
            norm = norm.reshape(1, -1, *[1] * (merged.ndim - 2))
        else:
            norm = merged.flatten(1).norm(dim=1).reshape(-1, *[1] * (merged.ndim - 1))
        return merged * (magnitude.reshape(norm.shape) / norm) - base
