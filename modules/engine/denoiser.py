"""Model wrappers the samplers call: `DiscreteDenoiser` (sigma-space x0 prediction over the UNet's
eps / v output) and `CFGDenoiser` (classifier-free guidance, AND composition, prompt editing).

Samplers see a function `denoised = model(x, sigma)` in k-diffusion's variance-exploding space, where
x = x0 + sigma * noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from k_diffusion.external import DiscreteSchedule

from modules.engine.cond_types import BatchConditioning, Cond, ImageCond


def append_dims(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.reshape(values.shape + (1,) * (ndim - values.ndim))


class DiscreteDenoiser:
    """x0 prediction from a discrete-timestep LDM model (`model.apply_model`), eps or v.

    Sigma <-> timestep conversion (with interpolation between the 1000 training steps) and the
    default schedule come from k-diffusion's `DiscreteSchedule`. We do not use k-diffusion's
    `CompVisVDenoiser` because it drops keyword conditioning (vector, concat)."""

    def __init__(self, model: Any, prediction: str | None = None, quantize: bool = False) -> None:
        self.model = model
        self.prediction = prediction or getattr(model, "prediction", "eps")
        if self.prediction not in ("eps", "v"):
            raise ValueError(f"unknown prediction type {self.prediction!r}")
        alphas_cumprod = model.alphas_cumprod.detach().float().cpu()
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.schedule = DiscreteSchedule(sigmas, quantize).to(getattr(model, "device", "cpu"))

    @property
    def sigmas(self) -> torch.Tensor:
        """The model's sigmas, ascending (timestep 0 first)."""
        return self.schedule.sigmas

    @property
    def sigma_min(self) -> float:
        return float(self.schedule.sigma_min)

    @property
    def sigma_max(self) -> float:
        return float(self.schedule.sigma_max)

    def get_sigmas(self, n: int) -> torch.Tensor:
        return self.schedule.get_sigmas(n)

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.schedule.sigma_to_t(sigma.to(self.sigmas.device))

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.schedule.t_to_sigma(t.to(self.sigmas.device))

    def __call__(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        crossattn: torch.Tensor,
        vector: torch.Tensor | None = None,
        concat: torch.Tensor | None = None,
        control: Any = None,
    ) -> torch.Tensor:
        sigma_x = append_dims(sigma.to(x), x.ndim)
        c_in = 1 / (sigma_x ** 2 + 1) ** 0.5
        timesteps = self.sigma_to_t(sigma).float().to(x.device)
        model_dtype = getattr(self.model, "dtype", x.dtype)
        extra = {} if control is None else {"control": control}
        output = self.model.apply_model(
            (x * c_in).to(model_dtype), timesteps, crossattn.to(model_dtype),
            vector=None if vector is None else vector.to(model_dtype),
            concat=None if concat is None else concat.to(model_dtype), **extra,
        ).to(x.dtype)
        if self.prediction == "eps":
            return x - output * sigma_x
        c_skip = 1 / (sigma_x ** 2 + 1)
        c_out = -sigma_x / (sigma_x ** 2 + 1) ** 0.5
        return x * c_skip + output * c_out


@dataclass
class EditImageCond(ImageCond):
    """instruct-pix2pix conditioning: `concat` is the init image latent; with an image CFG scale
    (other than None / 1) guidance becomes A1111's three-way CFG:
    out = uncond + cfg * (cond - img_cond) + image_cfg * (img_cond - uncond), where img_cond is
    the negative prompt with the image and uncond the negative prompt with a zero image."""
    image_cfg_scale: float | None = None

    @property
    def uses_image_guidance(self) -> bool:
        return self.concat is not None and self.image_cfg_scale not in (None, 1.0)


def pad_token_lengths(crossattns: list[torch.Tensor]) -> torch.Tensor:
    """Stack [T_i, C] token features into [N, T_max, C], extending shorter ones by repeating their
    last token vector (A1111's batching of conds of different chunk counts)."""
    longest = max(c.shape[0] for c in crossattns)
    padded = []
    for crossattn in crossattns:
        missing = longest - crossattn.shape[0]
        if missing:
            crossattn = torch.cat([crossattn, crossattn[-1:].expand(missing, -1)])
        padded.append(crossattn)
    return torch.stack(padded)


class DenoiserHooks(Protocol):
    """What a caller may see and change in each CFG call (A1111's on_cfg_denoiser,
    on_cfg_denoised and on_cfg_after_cfg): the UNet's input rows (every cond part, then the
    unconds) with their sigmas and cross-attention, its outputs, and the guided x0."""

    def before_unet(self, denoiser: "CFGDenoiser", x: torch.Tensor, sigma: torch.Tensor,
                    crossattn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def after_unet(self, denoiser: "CFGDenoiser", outputs: torch.Tensor) -> torch.Tensor: ...

    def after_cfg(self, denoiser: "CFGDenoiser", denoised: torch.Tensor) -> torch.Tensor: ...


class CFGDenoiser:
    """Classifier-free guidance over a batch of B images, called by samplers as `model(x, sigma)`.

    Per call: every image's AND parts (each its prompt-edited Cond for the current step) and its
    uncond go through one batched UNet call; then
    denoised_i = uncond_i + sum_j w_ij * cfg * (cond_ij - uncond_i).
    `step` counts calls from 0 (second-order samplers call twice per step, as in A1111).

    s_min_uncond (NGMS): on odd steps with sigma < s_min_uncond the uncond pass is skipped and the
    image's first cond part stands in for it. inpaint_mask/original_latent: after each call the
    x0 estimate outside the mask (mask 0) is replaced by the original latent.
    """

    def __init__(
        self,
        denoiser: DiscreteDenoiser,
        conditioning: BatchConditioning,
        cfg_scale: float,
        *,
        s_min_uncond: float = 0.0,
        inpaint_mask: torch.Tensor | None = None,
        original_latent: torch.Tensor | None = None,
    ) -> None:
        if len(conditioning.conds) != len(conditioning.unconds):
            raise ValueError("conditioning needs one uncond per cond")
        self.denoiser = denoiser
        self.conditioning = conditioning
        self.cfg_scale = cfg_scale
        # DDIM CFG++ runs with cfg_scale / 12.5 (its guidance scale lives in [0, 1])
        self.cfg_scale_multiplier = 1.0
        self.s_min_uncond = s_min_uncond
        self.inpaint_mask = inpaint_mask
        self.original_latent = original_latent
        self.step = 0
        self.total_steps = 0
        self.last_denoised: torch.Tensor | None = None
        self.last_uncond_denoised: torch.Tensor | None = None
        #: optional DenoiserHooks: see them before the UNet, after it, and after the guidance
        self.hooks: DenoiserHooks | None = None
        #: optional per-job ControlNetPatch (told the progress and the uncond rows each call)
        self.control: Any = None
        #: sampler steps completed (set by `sample`'s step callback), for the control's window
        self.sampling_step = 0

    @property
    def batch_size(self) -> int:
        return len(self.conditioning.conds)

    @property
    def image_guidance(self) -> EditImageCond | None:
        image_cond = self.conditioning.image_cond
        if isinstance(image_cond, EditImageCond) and image_cond.uses_image_guidance:
            return image_cond
        return None

    @property
    def without_guidance(self) -> bool:
        """CFG 1 on one prompt per image (few-step models): the result is the cond pass alone,
        so the uncond pass is not run (as diffusers does). CFG++ samplers keep it: they re-noise
        with the uncond prediction."""
        return self.cfg_scale == 1.0 and self.cfg_scale_multiplier == 1.0 and all(
            len(composable.parts) == 1 and composable.parts[0][1] == 1.0
            for composable in self.conditioning.conds)

    def _conds_at_step(self, skip_uncond: bool, image_guided: bool = False,
                       ) -> tuple[list[Cond], list[int], list[list[tuple[int, float]]]]:
        """Flattened conds for this step (cond parts first, unconds last; with image guidance the
        unconds twice: with the image, then with a zero image), the image index of each row, and
        per image the (row, weight) of its parts."""
        rows: list[Cond] = []
        image_of_row: list[int] = []
        parts_per_image: list[list[tuple[int, float]]] = []
        for image_index, composable in enumerate(self.conditioning.conds):
            image_parts = []
            for scheduled, weight in composable.parts:
                image_parts.append((len(rows), weight))
                rows.append(scheduled.at(self.step))
                image_of_row.append(image_index)
            parts_per_image.append(image_parts)
        if not skip_uncond:
            for _ in range(2 if image_guided else 1):
                for image_index, scheduled in enumerate(self.conditioning.unconds):
                    rows.append(scheduled.at(self.step))
                    image_of_row.append(image_index)
        return rows, image_of_row, parts_per_image

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **_unused: Any) -> torch.Tensor:
        if x.shape[0] != self.batch_size:
            raise ValueError(f"latent batch {x.shape[0]} does not match conditioning batch {self.batch_size}")
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0])
        image_guidance = self.image_guidance
        skip_uncond = image_guidance is None and (
            self.without_guidance
            or (self.s_min_uncond > 0 and self.step % 2 == 1
                and float(sigma[0]) < self.s_min_uncond))
        rows, image_of_row, parts_per_image = self._conds_at_step(
            skip_uncond, image_guided=image_guidance is not None)
        index = torch.tensor(image_of_row, device=x.device)

        crossattn = pad_token_lengths([row.crossattn for row in rows]).to(x.device)
        vectors = [row.vector for row in rows]
        vector = torch.stack(vectors).to(x.device) if all(v is not None for v in vectors) else None
        image_concat = self.conditioning.image_cond.concat
        concat = None if image_concat is None else image_concat.to(x.device)[index]
        if image_guidance is not None:
            concat[-self.batch_size:] = 0   # the last unconds see a zero image

        x_rows, sigma_rows = x[index], sigma[index]
        if self.hooks is not None:
            x_rows, crossattn = self.hooks.before_unet(self, x_rows, sigma_rows, crossattn)
        control = self.control
        if control is not None:
            uncond_rows = torch.zeros(len(rows), dtype=torch.bool)
            uncond_rows[sum(len(parts) for parts in parts_per_image):] = True   # unconds last
            control.begin_call(self.sampling_step / max(self.total_steps, 1), uncond_rows)
        outputs = self.denoiser(x_rows, sigma_rows, crossattn, vector=vector, concat=concat,
                                control=control)
        if self.hooks is not None:
            outputs = self.hooks.after_unet(self, outputs)

        scale = self.cfg_scale * self.cfg_scale_multiplier
        if image_guidance is not None:
            uncond = outputs[-self.batch_size:]
            image_uncond = outputs[-2 * self.batch_size:-self.batch_size]
            # the text guidance is measured from the uncond that sees the image
            reference = image_uncond
            denoised = uncond + image_guidance.image_cfg_scale * (image_uncond - uncond)
        else:
            if skip_uncond:
                uncond = torch.stack([outputs[parts[0][0]] for parts in parts_per_image])
            else:
                uncond = outputs[-self.batch_size:]
            reference = uncond
            denoised = uncond.clone()
        for image_index, parts in enumerate(parts_per_image):
            for row, weight in parts:
                denoised[image_index] += (outputs[row] - reference[image_index]) * (weight * scale)

        if self.inpaint_mask is not None and self.original_latent is not None:
            keep = 1 - self.inpaint_mask.to(x)
            blended = self.original_latent.to(x) * keep + denoised * (1 - keep)
            # optional hook (scripts' on_mask_blend, e.g. soft inpainting): may blend otherwise
            mask_blend = getattr(self.hooks, "mask_blend", None)
            denoised = mask_blend(self, denoised, blended, sigma) if mask_blend else blended

        if self.hooks is not None:
            denoised = self.hooks.after_cfg(self, denoised)
        self.last_uncond_denoised = uncond
        self.last_denoised = denoised
        self.step += 1
        return denoised
