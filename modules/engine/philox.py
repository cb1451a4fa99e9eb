"""CPU emulation of `torch.randn` on NVIDIA GPUs (A1111's "NV" RNG source).

CUDA's generator is Philox4x32 with 10 rounds (Salmon et al., "Parallel random numbers: as easy as
1, 2, 3", 2011); each normal number comes from one Philox block through the Box-Muller transform.
The block of element i of a call has counter (offset, 0, i, 0) and key (seed low 32 bits, seed high
32 bits); every call advances the offset by one. With it a CPU-only machine reproduces images whose
infotext says `RNG: NV`.
"""
from __future__ import annotations

import numpy as np
import torch

_MULTIPLIERS = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_WEYL = (np.uint32(0x9E3779B9), np.uint32(0xBB67AE85))
_ROUNDS = 10
_TWO_POW_MINUS_32 = 2.0 ** -32


def _mul_hi_lo(a: np.ndarray, multiplier: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    product = a.astype(np.uint64) * multiplier
    return (product >> np.uint64(32)).astype(np.uint32), product.astype(np.uint32)


def philox4x32(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Philox4x32-10 over columns: counter [4, n] uint32, key [2, n] uint32 → [4, n] uint32."""
    c0, c1, c2, c3 = (row.copy() for row in counter)
    k0, k1 = key[0].copy(), key[1].copy()
    with np.errstate(over="ignore"):
        for round_index in range(_ROUNDS):
            hi0, lo0 = _mul_hi_lo(c0, _MULTIPLIERS[0])
            hi1, lo1 = _mul_hi_lo(c2, _MULTIPLIERS[1])
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
            if round_index < _ROUNDS - 1:
                k0 = k0 + _WEYL[0]
                k1 = k1 + _WEYL[1]
    return np.stack([c0, c1, c2, c3])


def box_muller(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two uniform uint32 words → one standard normal value (curand's single-value form)."""
    u = x.astype(np.float64) * _TWO_POW_MINUS_32 + _TWO_POW_MINUS_32 / 2
    v = y.astype(np.float64) * (2 * np.pi * _TWO_POW_MINUS_32) + np.pi * _TWO_POW_MINUS_32
    return np.sqrt(-2.0 * np.log(u)) * np.sin(v)


class PhiloxGenerator:
    """Stateful like a torch.Generator: each `randn` call uses the next offset."""

    def __init__(self, seed: int, offset: int = 0) -> None:
        self.seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF
        self.offset = int(offset)

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        count = int(np.prod(shape))
        counter = np.zeros((4, count), dtype=np.uint32)
        counter[0] = np.uint32(self.offset & 0xFFFF_FFFF)
        counter[2] = np.arange(count, dtype=np.uint32)
        key = np.empty((2, count), dtype=np.uint32)
        key[0] = np.uint32(self.seed & 0xFFFF_FFFF)
        key[1] = np.uint32(self.seed >> 32)
        self.offset += 1
        block = philox4x32(counter, key)
        values = box_muller(block[0], block[1]).astype(np.float32)
        return torch.from_numpy(values.reshape(shape))
