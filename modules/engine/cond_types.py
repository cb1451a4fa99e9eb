"""Conditioning values passed from the text side (modules.engine.conditioning) to the sampling side
(modules.engine.sampling). Plain data, no behaviour beyond lookup."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Cond:
    """One encoded text for one image.

    crossattn: [T, C] token features (T = 77 * chunks).
    vector: [adm] SDXL pooled + size embedding (label_emb input); None for SD1/SD2.
    """
    crossattn: torch.Tensor
    vector: torch.Tensor | None = None


@dataclass
class ScheduledCond:
    """Prompt editing: (end_at_step, Cond) pairs sorted by step; the cond whose end_at_step is the
    first >= the current step applies (A1111 semantics, step counter starting at 0)."""
    entries: list[tuple[int, Cond]]

    def at(self, step: int) -> Cond:
        for end_at_step, cond in self.entries:
            if step <= end_at_step:
                return cond
        return self.entries[-1][1]


@dataclass
class ComposableCond:
    """Composable diffusion (`AND`): weighted sub-prompts of one image."""
    parts: list[tuple[ScheduledCond, float]]


@dataclass
class ImageCond:
    """Extra per-image conditioning concatenated to the UNet input (inpainting: mask + masked-image
    latent, 5 channels; instruct-pix2pix: image latent, 4 channels). [B, C, H/8, W/8]."""
    concat: torch.Tensor | None = None


@dataclass
class BatchConditioning:
    """What the sampler needs for one batch of B images."""
    conds: list[ComposableCond]          # len B
    unconds: list[ScheduledCond]         # len B
    image_cond: ImageCond = field(default_factory=ImageCond)
