"""The parameter objects A1111 passes to callbacks (`modules.script_callbacks`), with its field
names. Callbacks may change the mutable ones (`x`, `image_cond`, `text_cond`, …) in place or by
assignment; the code that calls them reads the fields back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class CFGDenoiserParams:
    """on_cfg_denoiser: before the UNet call of a sampling step."""
    x: Any
    image_cond: Any
    sigma: Any
    sampling_step: int
    total_sampling_steps: int
    text_cond: Any
    text_uncond: Any
    denoiser: Any = None


@dataclass
class CFGDenoisedParams:
    """on_cfg_denoised: after the UNet call, before the guidance is combined."""
    x: Any
    sampling_step: int
    total_sampling_steps: int
    inner_model: Any = None


@dataclass
class AfterCFGCallbackParams:
    """on_cfg_after_cfg: the guided x0 estimate of the step."""
    x: Any
    sampling_step: int
    total_sampling_steps: int


@dataclass
class ExtraNoiseParams:
    noise: Any
    x: Any
    xi: Any


@dataclass
class ImageGridLoopParams:
    imgs: list
    cols: int
    rows: int


@dataclass
class UiTrainTabParams:
    txt2img_preview_params: Any


@dataclass
class BeforeTokenCounterParams:
    prompt: str
    steps: int
    styles: list
    is_positive: bool = True
