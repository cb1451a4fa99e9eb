"""Seeds -> latent noise with A1111 semantics (a1111-compat.md §11.2).

Every image of a batch has its own generator seeded with its own seed, so an image's noise does not
depend on the batch it was generated in. Variation seeds blend two noises with slerp; "seed resize
from" generates the noise at another size and pastes it centred.
"""
from __future__ import annotations

import secrets
from typing import Any

import torch

from modules.engine.philox import PhiloxGenerator

RNG_SOURCES = ("GPU", "CPU", "NV")
SEED_RANGE = 4294967294   # A1111 draws random seeds from [0, 4294967294)


def resolve_seed(seed: Any) -> int:
    """A1111 `get_fixed_seed`: -1, None, "" or a non-numeric string -> a random seed; else the int."""
    if seed is None or seed == "":
        seed = -1
    elif isinstance(seed, str):
        try:
            seed = int(seed.strip())
        except ValueError:
            seed = -1
    seed = int(seed)
    if seed == -1:
        return secrets.randbelow(SEED_RANGE)
    return seed


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noises, A1111's variant: the vectors are normalised along
    dim 1 (the latent height axis of a [C, H, W] noise), so `val` 0 -> low and 1 -> high."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        # almost parallel: plain linear interpolation (A1111 swaps the weights here, a bug we skip)
        return low * (1 - val) + high * val
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    low_weight = (torch.sin((1.0 - val) * omega) / sin_omega).unsqueeze(1)
    high_weight = (torch.sin(val * omega) / sin_omega).unsqueeze(1)
    return low_weight * low + high_weight * high


class ImageRNG:
    """Per-image noise for one batch.

    shape: one image's latent shape (C, H/8, W/8). seeds/subseeds: one per image.
    source: "CPU" (torch CPU generator; identical on every machine), "GPU" (a generator on `device`;
    on a CPU device this equals "CPU"), "NV" (CPU emulation of CUDA's generator: the noise an
    NVIDIA GPU's torch.randn gives, on any machine).
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        seeds: list[int],
        subseeds: list[int] | None = None,
        subseed_strength: float = 0.0,
        seed_resize_from_h: int = 0,
        seed_resize_from_w: int = 0,
        source: str = "CPU",
        device: str | torch.device = "cpu",
    ) -> None:
        if source not in RNG_SOURCES:
            raise ValueError(f"unknown RNG source {source!r}; expected one of {', '.join(RNG_SOURCES)}")
        self.shape = tuple(int(v) for v in shape)
        self.seeds = [int(s) for s in seeds]
        self.subseeds = None if subseeds is None else [int(s) for s in subseeds]
        self.subseed_strength = float(subseed_strength)
        self.seed_resize_from_h = int(seed_resize_from_h or 0)
        self.seed_resize_from_w = int(seed_resize_from_w or 0)
        self.source = source
        self.device = torch.device(device)
        self.generators = [self._generator(seed) for seed in self.seeds]

    @property
    def batch_size(self) -> int:
        return len(self.seeds)

    def _generator_device(self) -> torch.device:
        return self.device if self.source == "GPU" else torch.device("cpu")

    def _generator(self, seed: int) -> torch.Generator | PhiloxGenerator:
        if self.source == "NV":
            return PhiloxGenerator(seed)
        return torch.Generator(device=self._generator_device()).manual_seed(seed)

    def _randn(self, shape: tuple[int, ...],
               generator: torch.Generator | PhiloxGenerator) -> torch.Tensor:
        if isinstance(generator, PhiloxGenerator):
            return generator.randn(shape)
        return torch.randn(shape, generator=generator, device=self._generator_device())

    def _noise_shape(self) -> tuple[int, int, int]:
        if self.seed_resize_from_h <= 0 or self.seed_resize_from_w <= 0:
            return self.shape
        return (self.shape[0], self.seed_resize_from_h // 8, self.seed_resize_from_w // 8)

    def _paste_centred(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Copy the centre of `source` onto the centre of `target` (whichever is smaller bounds it)."""
        offset_x = (target.shape[2] - source.shape[2]) // 2
        offset_y = (target.shape[1] - source.shape[1]) // 2
        width = source.shape[2] if offset_x >= 0 else source.shape[2] + 2 * offset_x
        height = source.shape[1] if offset_y >= 0 else source.shape[1] + 2 * offset_y
        target_x, target_y = max(offset_x, 0), max(offset_y, 0)
        source_x, source_y = max(-offset_x, 0), max(-offset_y, 0)
        target[:, target_y:target_y + height, target_x:target_x + width] = \
            source[:, source_y:source_y + height, source_x:source_x + width]
        return target

    def first(self) -> torch.Tensor:
        """The initial noise [B, *shape]. Re-creates the per-image generators, so calling it again
        gives the same noise; `next()` then continues each image's stream."""
        self.generators = [self._generator(seed) for seed in self.seeds]
        noise_shape = self._noise_shape()
        resized = noise_shape != self.shape
        images = []
        for index, (seed, generator) in enumerate(zip(self.seeds, self.generators)):
            if resized:
                noise = self._randn(noise_shape, self._generator(seed))
            else:
                noise = self._randn(self.shape, generator)
            if self.subseeds is not None and self.subseed_strength != 0:
                subseed = self.subseeds[index] if index < len(self.subseeds) else 0
                subnoise = self._randn(noise_shape, self._generator(subseed))
                noise = slerp(self.subseed_strength, noise, subnoise)
            if resized:
                # like A1111, the image's own generator still draws a full-size noise first
                noise = self._paste_centred(self._randn(self.shape, generator), noise)
            images.append(noise)
        return torch.stack(images).to(self.device)

    def next(self) -> torch.Tensor:
        """Further noise [B, *shape] (ancestral / SDE samplers) from each image's generator."""
        return torch.stack([self._randn(self.shape, g) for g in self.generators]).to(self.device)

    def reseed(self, offset: int) -> None:
        """Restart every image's generator at seed + offset (A1111's eta noise seed delta, ENSD)."""
        self.generators = [self._generator(seed + offset) for seed in self.seeds]
