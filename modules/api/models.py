"""Pydantic (v2) request and response models of the A1111 API (a1111-compat.md §2-§4).

Field names, types, defaults and order follow A1111 1.10 so that the OpenAPI schema, the echoed
`parameters` and clients such as sdwebuiapi see the same shapes. Unknown request keys are ignored.
"""
from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StableDiffusionTxt2ImgProcessingAPI(BaseModel):
    """POST /sdapi/v1/txt2img (§3.1). Width/height are kept as sent; processing rounds them down
    to multiples of 8 (min 8) like A1111's latent size does."""
    model_config = ConfigDict(extra="ignore", title="StableDiffusionProcessingTxt2Img")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = 0.75
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    force_task_id: str | None = None
    sampler_index: str = Field(default="Euler", title="Sampler index")
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = None

    @field_validator("steps")
    @classmethod
    def _steps_positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("steps must be at least 1")
        return value

    @field_validator("width", "height")
    @classmethod
    def _size_positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("width and height must be at least 1 pixel")
        return value

    @field_validator("batch_size", "n_iter")
    @classmethod
    def _count_positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("batch_size and n_iter must be at least 1")
        return value

    @field_validator("cfg_scale")
    @classmethod
    def _cfg_finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("cfg_scale must be a finite number")
        return value


class TextToImageResponse(BaseModel):
    images: list[str] | None = Field(default=None, title="Image",
                                     description="The generated images in base64 format.")
    parameters: dict[str, Any]
    info: str


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float | None = None
    need_inner_model: bool | None = None


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None


class ProgressResponse(BaseModel):
    """GET /sdapi/v1/progress (§4.4)."""
    progress: float = Field(title="Progress", description="The progress with a range of 0 to 1")
    eta_relative: float
    state: dict[str, Any]
    current_image: str | None = None
    textinfo: str | None = None
    current_task: str | None = None


class ProgressRequest(BaseModel):
    """POST /internal/progress (§4.5)."""
    model_config = ConfigDict(extra="ignore")
    id_task: str | None = None
    id_live_preview: int = -1
    live_preview: bool = True


class InternalProgressResponse(BaseModel):
    active: bool
    queued: bool
    completed: bool
    progress: float | None = None
    eta: float | None = None
    live_preview: str | None = None
    id_live_preview: int | None = None
    textinfo: str | None = None


class PendingTasksResponse(BaseModel):
    size: int
    tasks: list[str]
