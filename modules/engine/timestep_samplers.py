"""Samplers A1111 ships outside k-diffusion — DDIM, DDIM CFG++, PLMS, UniPC, LCM, Restart — written
with k-diffusion's sampler signature `(model, x, sigmas, extra_args, callback, disable, ...)` so they
run in the same loop. `model(x, sigma)` returns the x0 estimate in variance-exploding space
(x = x0 + sigma * eps), which is how the classic VP-timestep formulas are expressed here:

* a DDIM step from sigma to sigma_next keeping eps fixed is x + (sigma_next - sigma) * eps;
* DDIM's stochastic eta term equals k-diffusion's ancestral step split (sigma_down, sigma_up) with
  the same eta, since sigma_ddim / sqrt(alpha_prev) = eta * sqrt(s'^2 (s^2 - s'^2) / s^2).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from k_diffusion.sampling import get_ancestral_step, get_sigmas_karras

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CFG_PP_SCALE_MULTIPLIER = 1 / 12.5   # A1111 maps the usual cfg_scale onto CFG++'s [0, 1] range


def _randn_noise_sampler(x: torch.Tensor) -> NoiseSampler:
    return lambda sigma, sigma_next: torch.randn_like(x)


def _report(callback: Callable | None, x: torch.Tensor, step: int, sigma: torch.Tensor,
            denoised: torch.Tensor) -> None:
    if callback is not None:
        callback({"x": x, "i": step, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})


def _eps(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    return (x - denoised) / sigma


@torch.no_grad()
def sample_ddim(model, x, sigmas, extra_args=None, callback=None, disable=None, eta: float = 0.0,
                noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """DDIM (Song et al. 2020); eta = 0 is deterministic, eta > 0 adds DDIM's stochastic term."""
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or _randn_noise_sampler(x)
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * ones, **extra_args)
        _report(callback, x, i, sigma, denoised)
        sigma_down, sigma_up = get_ancestral_step(sigma, sigma_next, eta=eta)
        x = denoised + _eps(x, sigma, denoised) * sigma_down
        if sigma_up:
            x = x + noise_sampler(sigma, sigma_next) * sigma_up
    return x


@torch.no_grad()
def sample_ddim_cfgpp(model, x, sigmas, extra_args=None, callback=None, disable=None) -> torch.Tensor:
    """DDIM CFG++ (Chung et al. 2024): re-noise with the *unconditional* eps instead of the guided one.

    `model` must be a CFGDenoiser: it exposes `last_uncond_denoised` after each call and runs with
    `cfg_scale_multiplier` = 1 / 12.5 (set by the caller)."""
    extra_args = extra_args or {}
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * ones, **extra_args)
        _report(callback, x, i, sigma, denoised)
        uncond_eps = _eps(x, sigma, model.last_uncond_denoised)
        x = denoised + uncond_eps * sigma_next
    return x


# Adams–Bashforth weights on (eps_t, eps_t-1, eps_t-2, eps_t-3), as used by PLMS
_ADAMS_BASHFORTH = {
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


@torch.no_grad()
def sample_plms(model, x, sigmas, extra_args=None, callback=None, disable=None) -> torch.Tensor:
    """PLMS (pseudo linear multistep, Liu et al. 2022): the first step is a pseudo improved-Euler
    step (two model calls), later steps combine up to four past eps with Adams–Bashforth weights."""
    extra_args = extra_args or {}
    ones = x.new_ones([x.shape[0]])
    eps_history: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * ones, **extra_args)
        _report(callback, x, i, sigma, denoised)
        eps = _eps(x, sigma, denoised)
        if not eps_history and sigma_next > 0:
            x_trial = x + (sigma_next - sigma) * eps
            eps_next = _eps(x_trial, sigma_next, model(x_trial, sigma_next * ones, **extra_args))
            eps_combined = (eps + eps_next) / 2
        elif not eps_history:
            eps_combined = eps
        else:
            weights = _ADAMS_BASHFORTH[min(len(eps_history) + 1, 4)]
            recent = [eps] + eps_history[::-1]
            eps_combined = sum(w * e for w, e in zip(weights, recent))
        x = x + (sigma_next - sigma) * eps_combined
        eps_history = (eps_history + [eps])[-3:]
    return x


def _unipc_coefficients(lambdas: list[torch.Tensor], lambda_next: torch.Tensor, order: int,
                        variant: str) -> tuple[torch.Tensor, torch.Tensor, float, float, list[float]]:
    """R matrix, b vector, B(h), h*phi_1(h) and the ratios r_k of UniPC's data-prediction update
    (Zhao et al. 2023, Alg. for x0-prediction), computed in float64."""
    h = float(lambda_next - lambdas[-1])
    ratios = [float(lambdas[-(k + 1)] - lambdas[-1]) / h for k in range(1, order)] + [1.0]
    neg_h = -h
    h_phi_1 = math.expm1(neg_h)
    b_of_h = neg_h if variant == "bh1" else math.expm1(neg_h)
    h_phi_k = h_phi_1 / neg_h - 1
    factorial = 1
    rows, rhs = [], []
    for k in range(1, order + 1):
        rows.append([r ** (k - 1) for r in ratios])
        rhs.append(h_phi_k * factorial / b_of_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / neg_h - 1 / factorial
    return (torch.tensor(rows, dtype=torch.float64), torch.tensor(rhs, dtype=torch.float64),
            b_of_h, h_phi_1, ratios)


@torch.no_grad()
def sample_unipc(model, x, sigmas, extra_args=None, callback=None, disable=None, order: int = 3,
                 variant: str = "bh1", lower_order_final: bool = True) -> torch.Tensor:
    """UniPC multistep predictor-corrector (UniP-p + UniC) with x0 prediction, variants bh1 / bh2.

    One model call per step: the call at the new point feeds both the corrector and the history.
    A final step to sigma 0 returns that last x0 estimate."""
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"unknown UniPC variant {variant!r} (bh1 or bh2)")
    extra_args = extra_args or {}
    ones = x.new_ones([x.shape[0]])
    positive = [s for s in sigmas if s > 0]
    ends_at_zero = len(positive) < len(sigmas)
    lambdas = [-torch.log(positive[0])]
    history = [model(x, positive[0] * ones, **extra_args)]
    _report(callback, x, 0, positive[0], history[0])
    interval_count = len(positive) - 1
    # the jump to sigma 0 counts as the final (first-order) step for lower_order_final
    total_steps = interval_count + int(ends_at_zero)
    for step in range(1, interval_count + 1):
        sigma_prev, sigma_next = positive[step - 1], positive[step]
        step_order = min(order, step, len(history))
        if lower_order_final:
            step_order = max(1, min(step_order, total_steps + 1 - step))
        lambda_next = -torch.log(sigma_next)
        matrix, rhs, b_of_h, h_phi_1, ratios = _unipc_coefficients(lambdas, lambda_next, step_order, variant)
        latest = history[-1]
        differences = [(history[-(k + 1)] - latest) / ratios[k - 1] for k in range(1, step_order)]
        x_base = (sigma_next / sigma_prev) * x - h_phi_1 * latest
        x_pred = x_base
        if differences:
            predictor = [0.5] if step_order == 2 else torch.linalg.solve(matrix[:-1, :-1], rhs[:-1]).tolist()
            x_pred = x_base - b_of_h * sum(w * d for w, d in zip(predictor, differences))
        is_last = step == interval_count
        if is_last and not ends_at_zero:
            x = x_pred
            break
        model_next = model(x_pred, sigma_next * ones, **extra_args)
        _report(callback, x_pred, step, sigma_next, model_next)
        corrector = [0.5] if step_order == 1 else torch.linalg.solve(matrix, rhs).tolist()
        correction = corrector[-1] * (model_next - latest)
        correction = correction + sum(w * d for w, d in zip(corrector[:-1], differences))
        x = x_base - b_of_h * correction
        lambdas = (lambdas + [lambda_next])[-order:]
        history = (history + [model_next])[-order:]
    if ends_at_zero:
        x = history[-1]
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None,
               noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """Latent Consistency Model sampling: jump to the x0 estimate, re-noise to the next sigma."""
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or _randn_noise_sampler(x)
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * ones, **extra_args)
        _report(callback, x, i, sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


def restart_step_plan(sigmas: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(sigma_from, sigma_to) pairs for Restart sampling (Xu et al. 2023) with A1111's automatic
    restart setting: for >= 20 steps the main schedule is shortened to a Karras schedule and, once
    sigma reaches ~0.1, the process jumps back up to sigma ~2 (with fresh noise) and re-descends over
    `restart_steps` Karras steps, `restart_times` times (9 steps once; >= 36 steps: steps // 4, twice).
    With fewer than 20 steps there is no restart and it is plain Heun."""
    steps = len(sigmas) - 1
    if steps < 20:
        return list(zip(sigmas[:-1], sigmas[1:]))
    restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
    main = get_sigmas_karras(steps - restart_steps * restart_times, float(sigmas[-2]), float(sigmas[0]),
                             device=sigmas.device)
    restart_at = int(torch.argmin((main - 0.1).abs()))
    restart_top = int(torch.argmin((main - 2.0).abs()))
    plan: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(len(main) - 1):
        plan.append((main[i], main[i + 1]))
        if i + 1 == restart_at and restart_top < restart_at:
            segment = get_sigmas_karras(restart_steps + 1, float(main[restart_at]), float(main[restart_top]),
                                        device=sigmas.device)[:-1]
            for _ in range(restart_times):
                plan.extend(zip(segment[:-1], segment[1:]))
    return plan


@torch.no_grad()
def sample_restart(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise: float = 1.0,
                   noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """Restart sampling: Heun steps along `restart_step_plan`; whenever the plan jumps up in sigma,
    fresh noise lifts x to the higher level (variance sigma_up^2 - sigma_down^2)."""
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or _randn_noise_sampler(x)
    ones = x.new_ones([x.shape[0]])
    current_sigma: torch.Tensor | None = None
    for step, (sigma, sigma_next) in enumerate(restart_step_plan(sigmas)):
        if current_sigma is not None and current_sigma < sigma:
            x = x + noise_sampler(current_sigma, sigma) * s_noise * (sigma ** 2 - current_sigma ** 2) ** 0.5
        denoised = model(x, sigma * ones, **extra_args)
        _report(callback, x, step, sigma, denoised)
        slope = _eps(x, sigma, denoised)
        x_euler = x + slope * (sigma_next - sigma)
        if sigma_next > 0:
            slope_next = _eps(x_euler, sigma_next, model(x_euler, sigma_next * ones, **extra_args))
            x = x + (slope + slope_next) / 2 * (sigma_next - sigma)
        else:
            x = x_euler
        current_sigma = sigma_next
    return x


def restart_total_steps(sigmas: torch.Tensor) -> int:
    return len(restart_step_plan(sigmas))

