"""The "LDSR" entry of the `UpscalerRegistry` (Extras, hires fix, SD upscale, /sdapi/v1/upscalers).

A1111's layout: models/LDSR (or --ldsr-models-path) holds `model.ckpt` or `model.safetensors` and
the release's `project.yaml`. LDSR is listed when the weights are there; using it without the yaml
(or with weights that do not fit it) is a 400 that says so. The steps follow `ldsr_steps`; the
network stays loaded between calls when `ldsr_cached` is on. Each call starts from seed 0, so the
same image and settings give the same result (A1111 draws unseeded noise).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from modules.engine.ldsr import LDSRError, LDSRModel, load_ldsr, super_resolution
from modules.processing.context import UnsupportedRequestError
from modules.processing.upscalers import UpscalerInfo, UpscalerRegistry

LDSR_NAME = "LDSR"
WEIGHT_NAMES = ("model.safetensors", "model.ckpt")
YAML_NAME = "project.yaml"


def find_ldsr_weights(folder: Path) -> Path | None:
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


class LDSRUpscaler:
    """Loads the LDSR networks on use (kept while `ldsr_cached` is on) and runs them."""

    def __init__(self, weights: Path, options: Any, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, allow_unsafe_pickle: bool = False) -> None:
        self.weights = weights
        self.options = options
        self.device = device
        self.dtype = dtype
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._lock = threading.Lock()
        self._cached: LDSRModel | None = None

    def upscale(self, image: Image.Image, scale: float) -> Image.Image:
        steps = int(self.options.get("ldsr_steps"))
        keep = bool(self.options.get("ldsr_cached"))
        with self._lock:
            try:
                model = self._cached or load_ldsr(
                    self.weights, self.weights.with_name(YAML_NAME), device=self.device,
                    dtype=self.dtype, allow_unsafe_pickle=self.allow_unsafe_pickle)
                self._cached = model if keep else None
                return super_resolution(model, image, scale, steps)
            except LDSRError as error:
                raise UnsupportedRequestError(f"LDSR cannot run: {error}") from error


def register_ldsr(registry: UpscalerRegistry, folder: Path, options: Any, *,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  allow_unsafe_pickle: bool = False) -> LDSRUpscaler | None:
    """Add "LDSR" to `registry` when `folder` holds its weights."""
    weights = find_ldsr_weights(Path(folder))
    if weights is None:
        return None
    upscaler = LDSRUpscaler(weights, options, device=device, dtype=dtype,
                            allow_unsafe_pickle=allow_unsafe_pickle)
    registry.register(UpscalerInfo(LDSR_NAME, upscaler.upscale, scale=4.0,
                                   model_name=LDSR_NAME, model_path=str(weights), max_passes=3))
    return upscaler
