"""Pydantic (v2) request and response models of the A1111 API (a1111-compat.md §2-§4).

Field names, types, defaults and order follow A1111 1.10 so that the OpenAPI schema, the echoed
`parameters` and clients such as sdwebuiapi see the same shapes. Unknown request keys are ignored.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from modules.processing.params import GenerationParams, Img2ImgParams


class _GenerationRequestChecks(BaseModel):
    """Validation shared by the generation request models (422 with a message)."""
    model_config = ConfigDict(extra="ignore")

    @field_validator("steps", check_fields=False)
    @classmethod
    def _steps_positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("steps must be at least 1")
        return value

    @field_validator("width", "height", check_fields=False)
    @classmethod
    def _size_positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("width and height must be at least 1 pixel")
        return value

    @field_validator("batch_size", "n_iter", check_fields=False)
    @classmethod
    def _count_positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("batch_size and n_iter must be at least 1")
        return value

    @field_validator("cfg_scale", check_fields=False)
    @classmethod
    def _cfg_finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("cfg_scale must be a finite number")
        return value


# Fields the API adds after the processing fields (A1111's StableDiffusionTxt2ImgProcessingAPI).
_API_EXTRA_FIELDS: dict[str, tuple[Any, Any]] = {
    "script_name": (str | None, None),
    "script_args": (list[Any], Field(default_factory=list)),
    "send_images": (bool, True),
    "save_images": (bool, False),
    "alwayson_scripts": (dict[str, Any], Field(default_factory=dict)),
    "infotext": (str | None, None),
}


def _request_model(name: str, title: str, params_class: type, doc: str, *,
                   base: type[BaseModel] = _GenerationRequestChecks,
                   type_overrides: dict[str, Any] | None = None) -> type[BaseModel]:
    """A pydantic request model with the processing dataclass's fields, in its order, then the API
    extras — A1111 builds its API models from the processing classes the same way.
    `type_overrides` gives a field its API type (e.g. base64 strings for images)."""
    hints = {**typing.get_type_hints(params_class), **(type_overrides or {})}
    fields: dict[str, tuple[Any, Any]] = {}
    for field in dataclasses.fields(params_class):
        if field.name in params_class.INTERNAL_FIELDS:
            continue
        if field.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=field.default_factory)
        else:
            default = field.default
        fields[field.name] = (hints[field.name], default)
    fields.update(_API_EXTRA_FIELDS)
    model = create_model(name, __base__=base, __doc__=doc, **fields)
    model.model_config["title"] = title
    model.model_rebuild(force=True)
    return model


StableDiffusionTxt2ImgProcessingAPI = _request_model(
    "StableDiffusionTxt2ImgProcessingAPI", "StableDiffusionProcessingTxt2Img", GenerationParams,
    "POST /sdapi/v1/txt2img (§3.1). Width/height are kept as sent; processing rounds them down to "
    "multiples of 8 (min 8) like A1111's latent size does.")


class _Img2ImgRequestChecks(_GenerationRequestChecks):
    @field_validator("denoising_strength", check_fields=False)
    @classmethod
    def _denoising_in_range(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError("denoising_strength must be between 0 and 1")
        return value


StableDiffusionImg2ImgProcessingAPI = _request_model(
    "StableDiffusionImg2ImgProcessingAPI", "StableDiffusionProcessingImg2Img", Img2ImgParams,
    "POST /sdapi/v1/img2img (§3.2). init_images, mask and latent_mask are base64 images (raw or "
    "data-URL).", base=_Img2ImgRequestChecks,
    type_overrides={"init_images": list[str] | None, "mask": str | None,
                    "latent_mask": str | None})


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


# -- extras, png-info, interrogate (§4.1-§4.3) ----------------------------------------------------
class ExtrasBaseRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    resize_mode: typing.Literal[0, 1] = Field(
        default=0, description="0 = scale by upscaling_resize, 1 = to upscaling_resize_w x _h")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(default=0, ge=0, le=1)
    codeformer_visibility: float = Field(default=0, ge=0, le=1)
    codeformer_weight: float = Field(default=0, ge=0, le=1)
    upscaling_resize: float = Field(default=2, gt=0, le=32)
    upscaling_resize_w: int = Field(default=512, ge=1, le=16384)
    upscaling_resize_h: int = Field(default=512, ge=1, le=16384)
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = Field(default=0, ge=0, le=1)
    upscale_first: bool = False


class ExtrasSingleImageRequest(ExtrasBaseRequest):
    image: str = Field(default="", description="Image to work on, base64 (raw or data-URL)")


class FileData(BaseModel):
    data: str = Field(description="Base64 representation of the file")
    name: str = Field(description="File name")


class ExtrasBatchImagesRequest(ExtrasBaseRequest):
    imageList: list[FileData] = Field(description="List of images to work on")


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str = Field(default="", description="The generated image in base64 format.")


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


class PNGInfoRequest(BaseModel):
    image: str


class PNGInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class InterrogateRequest(BaseModel):
    image: str = ""
    model: str = "clip"


class InterrogateResponse(BaseModel):
    caption: str | None = None


# -- listings, memory, training (§2, §4.6, §4.8) --------------------------------------------------
class SDVaeItem(BaseModel):
    model_name: str
    filename: str


class HypernetworkItem(BaseModel):
    name: str
    path: str | None = None


class FaceRestorerItem(BaseModel):
    name: str
    cmd_dir: str | None = None


class RealesrganItem(BaseModel):
    name: str
    path: str | None = None
    scale: float | None = None


class PromptStyleItem(BaseModel):
    name: str
    prompt: str | None = None
    negative_prompt: str | None = None


class EmbeddingItem(BaseModel):
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    shape: int
    vectors: int


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem]
    skipped: dict[str, EmbeddingItem]


class LoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any]


class MemoryResponse(BaseModel):
    ram: dict[str, Any] = Field(description="System memory stats")
    cuda: dict[str, Any] = Field(description="nVidia CUDA memory stats")


class ScriptsList(BaseModel):
    txt2img: list[str] = Field(default_factory=list)
    img2img: list[str] = Field(default_factory=list)


class ScriptArg(BaseModel):
    label: str | None = None
    value: Any = None
    minimum: Any = None
    maximum: Any = None
    step: Any = None
    choices: list[str] | None = None


class ScriptInfo(BaseModel):
    name: str | None = None
    is_alwayson: bool | None = None
    is_img2img: bool | None = None
    args: list[ScriptArg]


class ExtensionItem(BaseModel):
    name: str
    remote: str
    branch: str
    commit_hash: str
    version: str
    commit_date: int
    enabled: bool


class CreateResponse(BaseModel):
    info: str = Field(description="Response string from create embedding or hypernetwork task.")


class TrainResponse(BaseModel):
    info: str = Field(description="Response string from train embedding or hypernetwork task.")


# -- /sdapi/v2/jobs: the job queue (beyond A1111) -------------------------------------------------
class TextToImageJob(BaseModel):
    """A txt2img job: `request` is exactly the body of POST /sdapi/v1/txt2img."""
    type: typing.Literal["txt2img"]
    request: StableDiffusionTxt2ImgProcessingAPI  # type: ignore[valid-type]


class ImageToImageJob(BaseModel):
    """An img2img job: `request` is exactly the body of POST /sdapi/v1/img2img."""
    type: typing.Literal["img2img"]
    request: StableDiffusionImg2ImgProcessingAPI  # type: ignore[valid-type]


JobSubmission = typing.Annotated[typing.Union[TextToImageJob, ImageToImageJob],
                                 Field(discriminator="type")]


class JobProgressInfo(BaseModel):
    step: int = Field(description="Sampling steps done in the running batch")
    total: int = Field(description="Sampling steps of the running batch")
    job_no: int = Field(description="0-based index of the running batch (hires passes count)")
    job_count: int = Field(description="Number of batches of the job")
    fraction: float = Field(description="Overall progress, 0 to 1")
    eta: float | None = Field(default=None, description="Estimated seconds left")


class JobStatus(BaseModel):
    """State of a /sdapi/v2 job. `position` is 1-based while queued, 0 while running and null
    once finished; `progress` is set while running, `result` when done (the A1111 response of
    the v1 route), `error` when failed."""
    id: str
    type: str
    state: typing.Literal["queued", "running", "done", "failed", "cancelled"]
    position: int | None = None
    progress: JobProgressInfo | None = None
    result: TextToImageResponse | None = None
    error: str | None = None
