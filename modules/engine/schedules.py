"""Noise schedules ("Schedule type") with A1111's names, labels and aliases (a1111-compat.md §7.2).

Every sigma function returns a descending float32 CPU tensor of `n + 1` sigmas ending in 0. The ones
A1111 marks `need_inner_model` read the model's discrete sigma table through a k-diffusion
`DiscreteSchedule` (sigma <-> timestep conversion with log-linear interpolation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from k_diffusion import sampling as k_sampling
from k_diffusion.external import DiscreteSchedule
from scipy import stats

# NVIDIA "Align Your Steps" 10-step sigma tables (published on the AYS how-to page).
AYS_SIGMAS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SIGMAS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)


@dataclass(frozen=True)
class ScheduleInputs:
    """What some schedules need besides (n, sigma_min, sigma_max)."""
    discrete: DiscreteSchedule | None = None   # the model's sigma table (need_inner_model ones)
    rho: float | None = None                   # None = the scheduler's default_rho
    is_sdxl: bool = False                      # Align Your Steps table choice
    beta_alpha: float = 0.6                    # A1111 opts.beta_dist_alpha
    beta_beta: float = 0.6                     # A1111 opts.beta_dist_beta


SigmaFunction = Callable[[int, float, float, ScheduleInputs], torch.Tensor]


@dataclass(frozen=True)
class SchedulerInfo:
    name: str
    label: str
    aliases: tuple[str, ...] | None
    default_rho: float
    need_inner_model: bool
    function: SigmaFunction | None   # None = "Automatic" (the sampler's default / model schedule)


def _require_discrete(inputs: ScheduleInputs) -> DiscreteSchedule:
    if inputs.discrete is None:
        raise ValueError("this schedule needs the model's discrete sigma table (ScheduleInputs.discrete)")
    return inputs.discrete


def _as_sigmas(values: torch.Tensor | list[float] | np.ndarray) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32).cpu()


def _timesteps_to_sigmas(discrete: DiscreteSchedule, timesteps: torch.Tensor) -> torch.Tensor:
    table_device = discrete.sigmas.device
    return k_sampling.append_zero(discrete.t_to_sigma(timesteps.to(table_device)).float()).cpu()


def _t_of_sigma(discrete: DiscreteSchedule, sigma: float) -> float:
    return float(discrete.sigma_to_t(torch.tensor(sigma, device=discrete.sigmas.device)))


def uniform_sigmas(n: int, sigma_min: float, sigma_max: float, inputs: ScheduleInputs) -> torch.Tensor:
    """k-diffusion's `DiscreteSchedule.get_sigmas`: n timesteps evenly spaced from 999 to 0."""
    return _as_sigmas(_require_discrete(inputs).get_sigmas(n).float())


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, inputs: ScheduleInputs) -> torch.Tensor:
    rho = 7.0 if inputs.rho is None else inputs.rho
    return _as_sigmas(k_sampling.get_sigmas_karras(n, sigma_min, sigma_max, rho=rho))


def exponential_sigmas(n: int, sigma_min: float, sigma_max: float, inputs: ScheduleInputs) -> torch.Tensor:
    return _as_sigmas(k_sampling.get_sigmas_exponential(n, sigma_min, sigma_max))


def polyexponential_sigmas(n: int, sigma_min: float, sigma_max: float, inputs: ScheduleInputs) -> torch.Tensor:
    rho = 1.0 if inputs.rho is None else inputs.rho
    return _as_sigmas(k_sampling.get_sigmas_polyexponential(n, sigma_min, sigma_max, rho=rho))


def sgm_uniform_sigmas(n: int, sigma_min: float, sigma_max: float, inputs: ScheduleInputs) -> torch.Tensor:
    """n + 1 evenly spaced timesteps between sigma_max and sigma_min, the last one dropped."""
    discrete = _require_discrete(inputs)
    start, end = _t_of_sigma(discrete, sigma_max), _t_of_sigma(discrete, sigma_min)
    return _timesteps_to_sigmas(discrete, torch.linspace(start, end, n + 1)[:-1])


def normal_sigmas(n: int, sigma_min: float, sigma_max: float, inputs: ScheduleInputs) -> torch.Tensor:
    """n evenly spaced timesteps from sigma_max's to sigma_min's, then 0."""
    discrete = _require_discrete(inputs)
    start, end = _t_of_sigma(discrete, sigma_max), _t_of_sigma(discrete, sigma_min)
    return _timesteps_to_sigmas(discrete, torch.linspace(start, end, n))


def simple_sigmas(n: int, sigma_min: float, sigma_max: float, inputs: ScheduleInputs) -> torch.Tensor:
    """Every (len / n)-th model sigma counted from the top."""
    model_sigmas = _require_discrete(inputs).sigmas.float().cpu()
    stride = len(model_sigmas) / n
    picked = [float(model_sigmas[-(1 + int(k * stride))]) for k in range(n)]
    return _as_sigmas(picked + [0.0])


def ddim_sigmas(n: int, sigma_min: float, sigma_max: float, inputs: ScheduleInputs) -> torch.Tensor:
    """Model sigmas at evenly strided timesteps 1, 1 + s, 1 + 2s, … (s = 1000 // n), highest first.

    When 1000 is not a multiple of n, A1111's stride loop yields n + 1 steps; we instead spread n
    timesteps evenly between 1 and the top of that grid, which is identical whenever n divides 1000."""
    model_sigmas = _require_discrete(inputs).sigmas.float().cpu()
    count = len(model_sigmas)
    stride = max(count // n, 1)
    top = 1 + stride * ((count - 2) // stride)
    indices = np.rint(np.linspace(1, min(top, count - 1), n)).astype(int) if n > 1 else np.array([top])
    picked = [float(model_sigmas[i]) for i in indices[::-1]]
    return _as_sigmas(picked + [0.0])


def kl_optimal_sigmas(n: int, sigma_min: float, sigma_max: float, inputs: ScheduleInputs) -> torch.Tensor:
    """tan of a linear ramp between atan(sigma_max) and atan(sigma_min) ("Align Your Steps" paper's
    KL-optimal schedule). A1111 returns n + 1 values ending at sigma_min; we ramp over n values and
    append 0 like every other schedule, so the last step fully denoises."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    angles = ramp * math.atan(sigma_min) + (1 - ramp) * math.atan(sigma_max)
    return _as_sigmas(k_sampling.append_zero(torch.tan(angles)))


def _loglinear_resample(table: tuple[float, ...], count: int) -> np.ndarray:
    """Interpolate a descending sigma table to `count` points, linearly in log sigma."""
    ascending_logs = np.log(np.asarray(table[::-1], dtype=np.float64))
    source_positions = np.linspace(0, 1, len(table))
    target_positions = np.linspace(0, 1, count)
    return np.exp(np.interp(target_positions, source_positions, ascending_logs))[::-1].copy()


def align_your_steps_sigmas(n: int, sigma_min: float, sigma_max: float, inputs: ScheduleInputs) -> torch.Tensor:
    table = AYS_SIGMAS_SDXL if inputs.is_sdxl else AYS_SIGMAS_SD15
    values = np.asarray(table) if n == len(table) else _loglinear_resample(table, n)
    return _as_sigmas(np.append(values, 0.0))


def beta_sigmas(n: int, sigma_min: float, sigma_max: float, inputs: ScheduleInputs) -> torch.Tensor:
    """"Beta Sampling is All You Need" (Lee et al. 2024): sigmas spaced by the beta distribution's
    quantile function between sigma_max and sigma_min."""
    quantiles = stats.beta.ppf(1 - np.linspace(0, 1, n), inputs.beta_alpha, inputs.beta_beta)
    return _as_sigmas(np.append(sigma_min + quantiles * (sigma_max - sigma_min), 0.0))


SCHEDULERS: tuple[SchedulerInfo, ...] = (
    SchedulerInfo("automatic", "Automatic", None, -1, False, None),
    SchedulerInfo("uniform", "Uniform", None, -1, True, uniform_sigmas),
    SchedulerInfo("karras", "Karras", None, 7.0, False, karras_sigmas),
    SchedulerInfo("exponential", "Exponential", None, -1, False, exponential_sigmas),
    SchedulerInfo("polyexponential", "Polyexponential", None, 1.0, False, polyexponential_sigmas),
    SchedulerInfo("sgm_uniform", "SGM Uniform", ("SGMUniform",), -1, True, sgm_uniform_sigmas),
    SchedulerInfo("kl_optimal", "KL Optimal", None, -1, False, kl_optimal_sigmas),
    SchedulerInfo("align_your_steps", "Align Your Steps", None, -1, False, align_your_steps_sigmas),
    SchedulerInfo("simple", "Simple", None, -1, True, simple_sigmas),
    SchedulerInfo("normal", "Normal", None, -1, True, normal_sigmas),
    SchedulerInfo("ddim", "DDIM", None, -1, True, ddim_sigmas),
    SchedulerInfo("beta", "Beta", None, -1, True, beta_sigmas),
)
AUTOMATIC = SCHEDULERS[0]


def find_scheduler(name: str | None) -> SchedulerInfo | None:
    """Scheduler by name, label or alias (exact spelling); None when not found."""
    if not name:
        return None
    for scheduler in SCHEDULERS:
        if name in (scheduler.name, scheduler.label, *(scheduler.aliases or ())):
            return scheduler
    return None


def schedulers_api_list() -> list[dict]:
    """`GET /sdapi/v1/schedulers` items."""
    return [
        {
            "name": scheduler.name,
            "label": scheduler.label,
            "aliases": list(scheduler.aliases) if scheduler.aliases else None,
            "default_rho": float(scheduler.default_rho),
            "need_inner_model": scheduler.need_inner_model,
        }
        for scheduler in SCHEDULERS
    ]
