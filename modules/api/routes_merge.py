"""POST /sdapi/v1/merge-checkpoints: A1111's Checkpoint Merger over HTTP (A1111 itself has no
such route; the fields are its tab's names). The merge is a job on the worker, after the running
one: /sdapi/v1/progress shows it tensor by tensor and /sdapi/v1/interrupt stops it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from modules.engine.checkpoint_io import CheckpointLoadError
from modules.engine.checkpoint_merge import MergeError, MergeWriteError
from modules.merger.request import InvalidMergeRequest, MergeRequest
from modules.merger.service import MergeInterrupted, MergeModelNotFound

if TYPE_CHECKING:
    from modules.app.context import AppContext

SEVEN_THREE_BLEND = {
    "primary_model_name": "anime-base.safetensors", "secondary_model_name": "second.safetensors",
    "interp_method": "Weighted sum", "multiplier": 0.3, "save_as_half": True,
    "custom_name": "anime-blend-7-3", "checkpoint_format": "safetensors",
}


class MergeCheckpointsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SEVEN_THREE_BLEND]})

    primary_model_name: str = Field(description="Model A: title, file name or hash")
    secondary_model_name: str | None = Field(
        "", description="Model B (Weighted sum, Add difference)")
    tertiary_model_name: str | None = Field("", description="Model C (Add difference)")
    interp_method: Literal["No interpolation", "Weighted sum", "Add difference"] = Field(
        "Weighted sum", description="Weighted sum: A·(1−M) + B·M; Add difference: "
                                    "A + (B − C)·M; No interpolation: A re-saved")
    multiplier: float = Field(0.3, description="M; 0 gives model A")
    save_as_half: bool = Field(False, description="store the merged fp32 tensors as float16")
    custom_name: str = Field("", description="output name without extension; default A1111's "
                                             "\"0.7(A) + 0.3(B)\"")
    checkpoint_format: Literal["safetensors", "ckpt"] = "safetensors"
    config_source: int | Literal["A, B or C", "B", "C", "Don't"] = Field(
        0, description="copy the .yaml sidecar of: 0 A, B or C; 1 B; 2 C; 3 none")
    bake_in_vae: str = Field("None", description="a VAE from models/VAE whose weights replace "
                                                 "the merged VAE")
    discard_weights: str = Field("", description="regex: matching tensors are left out")
    save_metadata: bool = True
    add_merge_recipe: bool = Field(True, description="write sd_merge_recipe / sd_merge_models")
    copy_metadata_fields: bool = Field(True, description="copy the inputs' metadata")
    metadata_json: str = Field("{}", description="extra metadata, a JSON object")
    primary_model_sha256: str = Field("", description="ours: refuse unless A has this sha256")
    secondary_model_sha256: str = ""
    tertiary_model_sha256: str = ""
    overwrite: bool = Field(False, description="ours: replace an existing file of that name")


class MergeCheckpointsResponse(BaseModel):
    title: str = Field(description="the new checkpoint's title, as sd_model_checkpoint takes it")
    model_name: str
    filename: str
    sha256: str | None
    hash: str | None = Field(description="short hash (10 hex)")
    config: str | None = Field(description="the copied .yaml sidecar, if any")
    is_inpainting: bool
    is_instruct_pix2pix: bool
    recipe: dict[str, Any] = Field(description="a recipe file rebuilding this checkpoint: "
                                               "python -m modules.merger recipe.json")
    info: str


def status_of_merge_error(error: Exception) -> int | None:
    """The HTTP status of what a merge refuses with (None: a server fault)."""
    statuses = ((MergeModelNotFound, 404), (InvalidMergeRequest, 422), (MergeError, 422),
                (CheckpointLoadError, 422), (FileExistsError, 409), (MergeInterrupted, 409),
                (MergeWriteError, 507))
    return next((status for kind, status in statuses if isinstance(error, kind)), None)


def merge_router(ctx: "AppContext") -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")

    @router.post("/merge-checkpoints", response_model=MergeCheckpointsResponse,
                 tags=["models"], summary="Merge checkpoints (Checkpoint Merger)",
                 responses={404: {"description": "a named model or VAE does not exist"},
                            409: {"description": "the output exists, or the merge was "
                                                 "interrupted"},
                            422: {"description": "bad field, or models that cannot be merged"},
                            507: {"description": "the disk is full; nothing was written"}})
    def merge_checkpoints(body: MergeCheckpointsRequest) -> MergeCheckpointsResponse:
        """Merge up to three checkpoints into a new one in the checkpoint folder, streamed
        tensor by tensor; the new file is listed at once (GET /sdapi/v1/sd-models)."""
        try:
            request = MergeRequest.from_dict(body.model_dump())
            merged = ctx.merge_checkpoints(request)
        except Exception as error:
            status = status_of_merge_error(error)
            if status is None:
                raise
            raise HTTPException(status_code=status, detail=str(error)) from error
        return MergeCheckpointsResponse(
            title=merged.title, model_name=merged.name, filename=merged.filename,
            sha256=merged.sha256, hash=merged.sha256[:10] if merged.sha256 else None,
            config=merged.config, is_inpainting=merged.is_inpainting,
            is_instruct_pix2pix=merged.is_instruct_pix2pix, recipe=merged.recipe,
            info=merged.message)

    return router
