"""The noise that, sampled with Euler, gives back a given latent: Euler run backwards from
sigma ≈ 0 up to sigma_max under classifier-free guidance (A1111's "img2img alternative test"
finds it so that img2img from it with another prompt changes only what the prompt changes)."""
from __future__ import annotations

from typing import Any

import torch

from modules.engine.cond_types import BatchConditioning
from modules.engine.denoiser import CFGDenoiser, DiscreteDenoiser


@torch.no_grad()
def find_noise_for_latent(model: Any, conditioning: BatchConditioning, latent: torch.Tensor, *,
                          steps: int, cfg_scale: float,
                          sigma_adjustment: bool = False) -> torch.Tensor:
    """Unit-scale noise for `latent` ([B, C, h, w]) under `conditioning`. Without
    `sigma_adjustment` the result is normalised to a standard deviation of 1; with it, divided by
    the last sigma (and each step's slope taken at the sigma before it)."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    denoiser = DiscreteDenoiser(model)
    guided = CFGDenoiser(denoiser, conditioning, cfg_scale)
    sigmas = denoiser.get_sigmas(steps).flip(0).to(latent.device)    # 0 → sigma_max
    x = latent.to(torch.float32).clone()
    guided.total_steps = len(sigmas) - 1
    for index in range(1, len(sigmas)):
        first = index == 1
        at = sigmas[index] if first or not sigma_adjustment else sigmas[index - 1]
        denoised = guided(x, at.expand(x.shape[0]))
        scale = 2 * sigmas[index] if sigma_adjustment and first else at
        x = x + (x - denoised) / scale * (sigmas[index] - sigmas[index - 1])
        guided.step += 1
    return x / sigmas[-1] if sigma_adjustment else x / x.std()
