"""The request and result shapes of generation, with A1111's field names
(StableDiffusionProcessingTxt2Img / Img2Img fields, a1111-compat.md §3.1, §3.2, §3.6)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProcessingParams:
    """Fields common to txt2img and img2img (A1111's StableDiffusionProcessing), in A1111's order.
    The API's request models are generated from the subclasses, so a field added here appears in
    /sdapi/v1/txt2img and /img2img and their schemas. INTERNAL_FIELDS are not part of the API."""
    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
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
    # where the request came from: "api" coerces float fields in infotext as A1111's API does
    is_api: bool = False
    outpath_samples: str | None = None
    outpath_grids: str | None = None
    #: A1111's p.script_args: the tab's whole script-args array (index 0 = the selected script,
    #: then each script's slice); None = every script's defaults
    script_args: list | None = None

    INTERNAL_FIELDS = ("is_api", "outpath_samples", "outpath_grids", "script_args")


@dataclass
class GenerationParams(ProcessingParams):
    """One txt2img request (StableDiffusionProcessingTxt2Img, a1111-compat.md §3.1)."""
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
    sampler_index: str = "Euler"


@dataclass
class Img2ImgParams(ProcessingParams):
    """One img2img request (StableDiffusionProcessingImg2Img, a1111-compat.md §3.2).
    init_images / mask / latent_mask hold decoded PIL images once the API or UI has read them."""
    init_images: list[Any] | None = None
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    mask: Any = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: Any = None
    force_task_id: str | None = None
    sampler_index: str = "Euler"
    include_init_images: bool = False


@dataclass
class Processed:
    """Result of one generation job (A1111's `Processed`). `js()` gives the API's `info` string."""
    images: list[Any]                      # PIL images; a grid first when index_of_first_image == 1
    prompt: str
    all_prompts: list[str]
    negative_prompt: str
    all_negative_prompts: list[str]
    seed: int
    all_seeds: list[int]
    subseed: int
    all_subseeds: list[int]
    subseed_strength: float
    width: int
    height: int
    sampler_name: str
    cfg_scale: float
    steps: int
    batch_size: int
    restore_faces: bool
    face_restoration_model: str | None
    sd_model_name: str | None
    sd_model_hash: str | None
    sd_vae_name: str | None
    sd_vae_hash: str | None
    seed_resize_from_w: int
    seed_resize_from_h: int
    denoising_strength: float | None
    extra_generation_params: dict[str, Any]
    index_of_first_image: int
    infotexts: list[str]
    styles: list[str]
    job_timestamp: str
    clip_skip: int
    is_using_inpainting_conditioning: bool
    version: str | None
    comments: str = ""
    saved_files: list[str] = field(default_factory=list)

    INFO_KEYS = (
        "prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds",
        "subseed", "all_subseeds", "subseed_strength", "width", "height", "sampler_name",
        "cfg_scale", "steps", "batch_size", "restore_faces", "face_restoration_model",
        "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash", "seed_resize_from_w",
        "seed_resize_from_h", "denoising_strength", "extra_generation_params",
        "index_of_first_image", "infotexts", "styles", "job_timestamp", "clip_skip",
        "is_using_inpainting_conditioning", "version",
    )

    def info_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.INFO_KEYS}

    def js(self) -> str:
        """A1111's keys; `comments` (why a job stopped early, say) only when there are some."""
        import json
        info = self.info_dict()
        if self.comments:
            info["comments"] = self.comments
        return json.dumps(info, default=lambda _: None)
