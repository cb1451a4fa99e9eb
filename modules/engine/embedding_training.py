"""Training's arithmetic (textual inversion and hypernetworks): the learning-rate schedule, the
denoising loss, and the optimizer over the trained tensors (the model itself stays frozen).

Each step noises the training latents at random timesteps, asks the UNet for the noise (or `v`)
and moves only the trained tensors (an embedding's vectors, a hypernetwork's MLPs; AdamW without
weight decay, as A1111) along the gradient of the mean squared error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modules.engine.textual_inversion import Embedding

TRAIN_TIMESTEPS = 1000
CLIP_MODES = ("disabled", "value", "norm")


@dataclass(frozen=True)
class RateSchedule:
    """A1111's learning-rate text: "0.005" or "0.005:100, 1e-3:1000, 1e-5" (a rate until a
    step, the last one until the run's end). Steps count from 0; `rate_at` is None once the
    schedule (or `max_steps`) has ended."""
    pieces: tuple[tuple[float, int], ...]

    @classmethod
    def parse(cls, text: str, max_steps: int) -> "RateSchedule":
        pieces: list[tuple[float, int]] = []
        parts = [part.strip() for part in str(text).split(",") if part.strip()]
        if not parts:
            raise ValueError("the learning rate is empty")
        for index, part in enumerate(parts):
            rate_text, _, end_text = part.partition(":")
            try:
                rate = float(rate_text)
                end = int(end_text) if end_text.strip() else max_steps
            except ValueError as error:
                raise ValueError(f"learning rate '{part}' is not 'rate' or 'rate:step'") \
                    from error
            if rate <= 0:
                raise ValueError(f"learning rate {rate} must be above 0")
            if pieces and end <= pieces[-1][1]:
                raise ValueError(f"learning rate steps must grow: '{part}'")
            pieces.append((rate, min(end, max_steps)))
            if not end_text.strip() and index < len(parts) - 1:
                raise ValueError(f"only the last learning rate may leave out its step: '{part}'")
        return cls(tuple(pieces))

    @property
    def end(self) -> int:
        return self.pieces[-1][1]

    def rate_at(self, step: int) -> float | None:
        for rate, end in self.pieces:
            if step < end:
                return rate
        return None


def diffusion_loss(model: Any, latents: Tensor, crossattn: Tensor, vector: Tensor | None,
                   generator: torch.Generator) -> Tensor:
    """The denoising loss of `latents` [B, 4, h, w] under conditioning `crossattn`: random
    timesteps and noise from `generator`, target eps or v by the model's prediction."""
    batch = latents.shape[0]
    device = latents.device
    steps = torch.randint(0, TRAIN_TIMESTEPS, (batch,), generator=generator)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(device)
    alphas = model.alphas_cumprod.to(torch.float32)[steps].to(device).view(batch, 1, 1, 1)
    x0 = latents.float()
    noisy = alphas.sqrt() * x0 + (1 - alphas).sqrt() * noise
    dtype = next(model.model.diffusion_model.parameters()).dtype
    output = model.apply_model(noisy.to(dtype), steps.to(device=device, dtype=torch.float32),
                               crossattn.to(dtype), vector=None if vector is None
                               else vector.to(dtype))
    target = noise if model.prediction == "eps" else \
        alphas.sqrt() * noise - (1 - alphas).sqrt() * x0
    return F.mse_loss(output.float(), target)


class ParameterOptimizer:
    """AdamW (no weight decay, as A1111) over trained tensors, with A1111's gradient clipping."""

    def __init__(self, parameters: list[Tensor], learning_rate: float, *,
                 clip_mode: str = "disabled", clip_value: float = 0.1,
                 state: dict | None = None) -> None:
        if clip_mode not in CLIP_MODES:
            raise ValueError(f"gradient clipping must be one of {', '.join(CLIP_MODES)}")
        self.trained = parameters
        self.optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
        if state is not None:
            self.optimizer.load_state_dict(state)
        self.clip_mode, self.clip_value = clip_mode, float(clip_value)

    def set_rate(self, rate: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def step(self) -> None:
        """Apply the accumulated gradient (clipped as configured) and clear it."""
        if self.clip_mode == "value":
            nn.utils.clip_grad_value_(self.trained, self.clip_value)
        elif self.clip_mode == "norm":
            nn.utils.clip_grad_norm_(self.trained, self.clip_value)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()


class EmbeddingOptimizer(ParameterOptimizer):
    """The optimizer over an embedding's vectors, which it swaps for trainable float32 leaves
    (the Embedding object keeps working in prompts: the conditioning reads those leaves)."""

    def __init__(self, embedding: Embedding, learning_rate: float, **options: Any) -> None:
        self.embedding = embedding
        self.parameters = {key: nn.Parameter(value.detach().float().clone())
                           for key, value in embedding.vectors.items()}
        embedding.vectors = dict(self.parameters)
        super().__init__(list(self.parameters.values()), learning_rate, **options)

    def snapshot(self) -> dict[str, Tensor]:
        """The vectors now, detached (what a save writes)."""
        return {key: value.detach().clone() for key, value in self.parameters.items()}
