"""The denoise loop: `sample(...)` runs one sampler over one batch, txt2img or img2img (A1111 step
semantics), and reports what A1111 writes into the infotext for the sampler settings used."""
from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from k_diffusion.sampling import BrownianTreeNoiseSampler

from modules.engine import schedules
from modules.engine.cond_types import BatchConditioning
from modules.engine.denoiser import CFGDenoiser, DiscreteDenoiser
from modules.engine.noise import ImageRNG
from modules.engine.samplers import SamplerInfo, effective_scheduler, find_sampler
from modules.engine.timestep_samplers import restart_step_plan, sample_restart, sample_unipc

StepCallback = Callable[[int, int, torch.Tensor], None]
UNIPC_SKIP_TYPES = ("time_uniform", "time_quadratic", "logSNR")


class SamplingInterrupted(Exception):
    """Raised by a step callback to stop sampling; `sample` then returns the latest x0 estimate."""


@dataclass
class SamplingResult:
    latent: torch.Tensor
    extra_generation_params: dict[str, Any] = field(default_factory=dict)
    #: index (in this call's sigma schedule) where `stop_at` ended the run: `latent` is then x at
    #: that sigma, ready for `resume_from=(stopped_at, latent)`; None when the run went to the end
    stopped_at: int | None = None
    #: how often the model was called (prompt-editing schedules count these)
    denoiser_calls: int = 0

#: stop_at(step index, total steps, model timestep at that step) -> stop before this step?
StopRule = Callable[[int, int, float], bool]


def _is_sdxl(model: Any) -> bool:
    config = getattr(model, "config", None)
    return bool(getattr(config, "is_sdxl", False))


def _timestep_sampler_sigmas(denoiser: DiscreteDenoiser, sampler: SamplerInfo, steps: int,
                             unipc_skip_type: str) -> torch.Tensor:
    """A1111's own spacing for the DDIM family under "Automatic" (they ignore k-diffusion schedules).

    DDIM / PLMS: the "DDIM" schedule, timesteps 1, 1 + s, … (s = 1000 // steps), then sigma 0.
    UniPC (as the reference implementation): steps + 1 points from t = 999 down to t = 0, uniform in
    time, in sqrt-time (time_quadratic) or in log-SNR; no trailing 0 — the last step is a
    first-order predictor landing on the model's smallest sigma."""
    last_t = len(denoiser.sigmas) - 1
    if sampler.function is sample_unipc:
        if unipc_skip_type not in UNIPC_SKIP_TYPES:
            raise ValueError(f"unknown UniPC skip type {unipc_skip_type!r}")
        if unipc_skip_type == "logSNR":
            log_sigmas = torch.linspace(math.log(denoiser.sigma_max), math.log(denoiser.sigma_min), steps + 1)
            return log_sigmas.exp()
        # continuous time u in [1/1000, 1] maps to the discrete timestep 1000 * u - 1
        first, last = 1.0, 1.0 / (last_t + 1)
        if unipc_skip_type == "time_quadratic":
            times = torch.linspace(first ** 0.5, last ** 0.5, steps + 1) ** 2
        else:
            times = torch.linspace(first, last, steps + 1)
        return denoiser.t_to_sigma((times * (last_t + 1) - 1).clamp(0, last_t)).float().cpu()
    return schedules.ddim_sigmas(steps, denoiser.sigma_min, denoiser.sigma_max,
                                 schedules.ScheduleInputs(discrete=denoiser.schedule))


def compute_sigmas(
    denoiser: DiscreteDenoiser,
    sampler: SamplerInfo,
    scheduler: str | None,
    steps: int,
    *,
    sigma_min: float = 0.0,
    sigma_max: float = 0.0,
    rho: float = 0.0,
    is_sdxl: bool = False,
    beta_dist_alpha: float = 0.6,
    beta_dist_beta: float = 0.6,
    uni_pc_skip_type: str = "time_uniform",
    always_discard_next_to_last_sigma: bool = False,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The sigmas (descending, CPU, ending in 0 — except UniPC's own automatic spacing) for `steps`
    steps and the infotext entries A1111 writes for schedule overrides. sigma_min / sigma_max / rho of 0 mean "model / scheduler default"."""
    params: dict[str, Any] = {}
    discard = sampler.discard_next_to_last_sigma
    if always_discard_next_to_last_sigma and not discard:
        discard = True
        params["Discard penultimate sigma"] = True
    count = steps + 1 if discard else steps

    chosen = effective_scheduler(sampler, scheduler)
    if chosen.function is None:
        if sampler.kind == "timestep":
            sigmas = _timestep_sampler_sigmas(denoiser, sampler, count, uni_pc_skip_type)
        else:
            sigmas = denoiser.get_sigmas(count).float().cpu()
    else:
        low, high, schedule_rho = denoiser.sigma_min, denoiser.sigma_max, None
        if sigma_min and sigma_min != low:
            low = params["Schedule min sigma"] = sigma_min
        if sigma_max and sigma_max != high:
            high = params["Schedule max sigma"] = sigma_max
        if chosen.default_rho != -1 and rho and rho != chosen.default_rho:
            schedule_rho = params["Schedule rho"] = rho
        if chosen.name == "beta":
            params["Beta schedule alpha"] = beta_dist_alpha
            params["Beta schedule beta"] = beta_dist_beta
        inputs = schedules.ScheduleInputs(discrete=denoiser.schedule, rho=schedule_rho, is_sdxl=is_sdxl,
                                          beta_alpha=beta_dist_alpha, beta_beta=beta_dist_beta)
        sigmas = chosen.function(count, low, high, inputs)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas, params


def img2img_steps(steps: int, denoising_strength: float, fix_steps: bool = False) -> tuple[int, int]:
    """A1111 `setup_img2img_steps`: (schedule length, t_enc). With fix_steps the schedule is
    stretched so exactly `steps` steps run."""
    if fix_steps:
        total = int(steps / min(denoising_strength, 0.999)) if denoising_strength > 0 else 0
        return total, steps - 1
    return steps, int(min(denoising_strength, 0.999) * steps)


def _rng_noise_sampler(rng: ImageRNG, like: torch.Tensor) -> Callable[[Any, Any], torch.Tensor]:
    return lambda sigma, sigma_next: rng.next().to(like)


def _sampler_kwargs(
    sampler: SamplerInfo, x: torch.Tensor, sigmas: torch.Tensor, full_sigmas: torch.Tensor, *,
    rng: ImageRNG, seeds: list[int], eta: float, extra_values: dict[str, float],
    unipc: dict[str, Any], is_img2img: bool, denoiser: DiscreteDenoiser, params: dict[str, Any],
) -> dict[str, Any]:
    """Keyword arguments for the sampler function, only those it accepts (A1111 inspects the
    signature too), recording non-default values in `params` (infotext)."""
    accepted = inspect.signature(sampler.function).parameters
    kwargs: dict[str, Any] = dict(sampler.function_kwargs)
    if "eta" in accepted:
        kwargs["eta"] = eta
        if eta != sampler.eta_default:
            params[sampler.eta_infotext_key] = eta
    defaults = {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": math.inf, "s_noise": 1.0}
    labels = {"s_churn": "Sigma churn", "s_tmin": "Sigma tmin", "s_tmax": "Sigma tmax", "s_noise": "Sigma noise"}
    for name in sampler.extra_params:
        value = extra_values[name]
        if name in accepted and value != defaults[name]:
            kwargs[name] = value
            params[labels[name]] = value
    if "noise_sampler" in accepted:
        if sampler.brownian_noise:
            positive = full_sigmas[full_sigmas > 0]
            kwargs["noise_sampler"] = BrownianTreeNoiseSampler(
                x, positive.min(), full_sigmas.max(), seed=[int(s) for s in seeds])
        else:
            kwargs["noise_sampler"] = _rng_noise_sampler(rng, x)
    if "sigma_min" in accepted:   # DPM fast / adaptive integrate over a sigma range, not a list
        positive = sigmas[sigmas > 0]
        if is_img2img:
            kwargs["sigma_min"], kwargs["sigma_max"] = float(positive.min()), float(sigmas[0])
        else:
            kwargs["sigma_min"], kwargs["sigma_max"] = denoiser.sigma_min, denoiser.sigma_max
    else:
        kwargs["sigmas"] = sigmas
    if "n" in accepted:
        kwargs["n"] = len(sigmas) - 1
    if sampler.function is sample_unipc:
        kwargs.update(unipc)
    return kwargs


def sample(
    model: Any,
    conditioning: BatchConditioning,
    rng: ImageRNG,
    *,
    sampler_name: str,
    scheduler: str,
    steps: int,
    cfg_scale: float,
    eta: float | None = None,
    eta_ddim_default: float = 0.0,
    eta_ancestral_default: float = 1.0,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = 0.0,
    s_noise: float = 1.0,
    s_min_uncond: float = 0.0,
    sigma_min: float = 0.0,
    sigma_max: float = 0.0,
    rho: float = 0.0,
    eta_noise_seed_delta: int = 0,
    callback: StepCallback | None = None,
    init_latent: torch.Tensor | None = None,
    denoising_strength: float | None = None,
    seeds: list[int] | tuple[int, ...] = (),
    inpaint_mask: torch.Tensor | None = None,
    img2img_fix_steps: bool = False,
    beta_dist_alpha: float = 0.6,
    beta_dist_beta: float = 0.6,
    uni_pc_variant: str = "bh1",
    uni_pc_skip_type: str = "time_uniform",
    uni_pc_order: int = 3,
    uni_pc_lower_order_final: bool = True,
    always_discard_next_to_last_sigma: bool = False,
    stop_at: StopRule | None = None,
    resume_from: tuple[int, torch.Tensor] | None = None,
    denoiser_hooks: Any = None,
    extra_noise: float = 0.0,
    extra_noise_hook: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    | None = None,
    control: Any = None,
) -> SamplingResult:
    """Denoise one batch and return the final latent (x0, not yet scaled for the VAE).

    txt2img when init_latent is None (x = first noise * sigma_max), else img2img: the last
    t_enc + 1 sigmas of the schedule run from init_latent + noise * sigma_start (A1111 semantics).
    inpaint_mask ([B or 1, 1, h, w], 1 = regenerate) keeps the rest of init_latent fixed.
    callback(step, total_steps, x0_estimate) runs after every step; raising SamplingInterrupted
    from it ends sampling early with the latest x0 estimate as the result.
    A run can be split (e.g. to switch models): `stop_at` ends it before the first step it
    accepts and returns x at that sigma (`SamplingResult.stopped_at`); a second call with the same
    arguments and `resume_from=(stopped_at, x)` continues from there without new start noise and
    with each image's noise stream where the first call left it.
    img2img with `extra_noise` > 0 adds the start noise once more, times it, to the noised start
    (A1111's "Extra noise multiplier"); `extra_noise_hook(noise, init_latent, start)` may give
    other noise for that. `control` (a ControlNetPatch) adds ControlNet residuals to every UNet
    call, within its units' step windows.
    """
    sampler = find_sampler(sampler_name)
    if sampler is None:
        raise ValueError(f"unknown sampler {sampler_name!r}")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    device = torch.device(getattr(model, "device", "cpu"))
    denoiser = DiscreteDenoiser(model)
    is_img2img = init_latent is not None
    schedule_steps, t_enc = steps, steps - 1
    if is_img2img:
        strength = 0.75 if denoising_strength is None else denoising_strength
        schedule_steps, t_enc = img2img_steps(steps, strength, img2img_fix_steps)
        schedule_steps = max(schedule_steps, 1)
    full_sigmas, params = compute_sigmas(
        denoiser, sampler, scheduler, schedule_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho,
        is_sdxl=_is_sdxl(model), beta_dist_alpha=beta_dist_alpha, beta_dist_beta=beta_dist_beta,
        uni_pc_skip_type=uni_pc_skip_type, always_discard_next_to_last_sigma=always_discard_next_to_last_sigma)
    full_sigmas = full_sigmas.to(device)
    sigmas = full_sigmas[max(schedule_steps - t_enc - 1, 0):] if is_img2img else full_sigmas
    if resume_from is not None:
        sigmas = sigmas[resume_from[0]:]
    stopped_at = _first_stop(stop_at, denoiser, sigmas)
    if stopped_at is not None:
        sigmas = sigmas[:stopped_at + 1]

    if resume_from is not None:
        x = resume_from[1].to(device=device, dtype=torch.float32)
        if eta_noise_seed_delta and sampler.uses_ensd:
            params["ENSD"] = eta_noise_seed_delta
    else:
        noise = rng.first().to(device=device, dtype=torch.float32)
        if is_img2img:
            x = init_latent.to(device=device, dtype=torch.float32) + noise * sigmas[0]
            if extra_noise > 0:
                extra = extra_noise_hook(noise, init_latent, x) if extra_noise_hook else noise
                x = x + extra.to(x) * extra_noise
                params["Extra noise"] = extra_noise
        elif sampler.kind == "timestep":
            # the DDIM family starts from pure VP noise, i.e. noise / sqrt(alpha) in sigma space
            x = noise * (1 + sigmas[0] ** 2) ** 0.5
        else:
            x = noise * sigmas[0]
        if eta_noise_seed_delta:
            rng.reseed(eta_noise_seed_delta)
            if sampler.uses_ensd:
                params["ENSD"] = eta_noise_seed_delta

    cfg_denoiser = CFGDenoiser(
        denoiser, conditioning, cfg_scale, s_min_uncond=s_min_uncond, inpaint_mask=inpaint_mask,
        original_latent=init_latent if inpaint_mask is not None else None)
    cfg_denoiser.cfg_scale_multiplier = sampler.cfg_scale_multiplier
    cfg_denoiser.hooks = denoiser_hooks
    cfg_denoiser.control = control
    if s_min_uncond > 0:
        params["NGMS"] = s_min_uncond

    effective_eta = eta if eta is not None else (
        eta_ddim_default if sampler.kind == "timestep" else eta_ancestral_default)
    # Brownian trees need one seed per image of this batch
    image_seeds = list(seeds) if len(seeds) == x.shape[0] else list(rng.seeds)
    kwargs = _sampler_kwargs(
        sampler, x, sigmas, full_sigmas, rng=rng, seeds=image_seeds, eta=effective_eta,
        extra_values={"s_churn": s_churn, "s_tmin": s_tmin, "s_tmax": s_tmax or math.inf, "s_noise": s_noise},
        unipc={"order": uni_pc_order, "variant": uni_pc_variant, "lower_order_final": uni_pc_lower_order_final},
        is_img2img=is_img2img or stopped_at is not None or resume_from is not None,
        denoiser=denoiser, params=params)
    total_steps = len(restart_step_plan(sigmas)) if sampler.function is sample_restart else len(sigmas) - 1
    cfg_denoiser.total_steps = total_steps

    def on_step(info: dict[str, Any]) -> None:
        cfg_denoiser.sampling_step = int(info["i"]) + 1
        if callback is not None:
            callback(int(info["i"]), total_steps, info["denoised"])

    # Library code that draws noise we cannot route through `rng` (k-diffusion's Euler / Heun / DPM2
    # churn uses torch.randn_like) gets a forked global RNG seeded from the first image's seed.
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), torch.no_grad(), warnings.catch_warnings():
        # torchsde complains when float rounding puts a query a hair outside the Brownian interval
        warnings.filterwarnings("ignore", message=r"Should have t[ab]")
        torch.manual_seed(image_seeds[0] + eta_noise_seed_delta if image_seeds else 0)
        try:
            latent = sampler.function(cfg_denoiser, x, extra_args={}, callback=on_step, disable=True, **kwargs)
        except SamplingInterrupted:
            latent = cfg_denoiser.last_denoised if cfg_denoiser.last_denoised is not None else x
            stopped_at = None    # the run did not reach its stop: the result is the x0 estimate

    if inpaint_mask is not None and init_latent is not None and stopped_at is None:
        regenerate = inpaint_mask.to(latent)
        latent = init_latent.to(latent) * (1 - regenerate) + latent * regenerate
    return SamplingResult(latent=latent, extra_generation_params=params, stopped_at=stopped_at,
                          denoiser_calls=cfg_denoiser.step)


def _first_stop(stop_at: StopRule | None, denoiser: DiscreteDenoiser,
                sigmas: torch.Tensor) -> int | None:
    """The first step index the rule stops at (None: run to the end)."""
    if stop_at is None:
        return None
    steps = len(sigmas) - 1
    timesteps = denoiser.sigma_to_t(sigmas[:-1].clamp(min=denoiser.sigma_min))
    for index in range(steps):
        if stop_at(index, steps, float(timesteps[index])):
            return index
    return None
