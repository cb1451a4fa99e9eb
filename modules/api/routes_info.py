"""Listing and settings routes: sd-models, samplers, schedulers, options, refresh-checkpoints,
cmd-flags (a1111-compat.md §2, §4.7, §4.8, §7)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, HTTPException

from modules.api.models import SamplerItem, SchedulerItem, SDModelItem
from modules.app.cmd_args import redacted_flags
from modules.engine.samplers import samplers_api_list
from modules.engine.schedules import schedulers_api_list
from modules.processing.upscalers import latent_upscale_modes_api_list, upscalers_api_list

if TYPE_CHECKING:
    from modules.app.checkpoints import CheckpointInfo
    from modules.app.context import AppContext


def sd_model_item(info: "CheckpointInfo") -> SDModelItem:
    return SDModelItem(title=info.title, model_name=info.model_name, hash=info.shorthash,
                       sha256=info.sha256, filename=str(info.filename),
                       config=str(info.config) if info.config else None)


def apply_options(ctx: "AppContext", changes: dict[str, Any]) -> None:
    """POST /sdapi/v1/options (§4.7). Deviation from A1111, which answers 500 here: an unknown key
    or an unknown checkpoint is a 400 and an invalid value a 422, each with a message, and nothing
    is applied in either case (values set before a bad one are rolled back)."""
    options = ctx.options
    current_values = options.data_dict()
    unknown = [key for key in changes if key not in current_values]
    if unknown:
        raise HTTPException(status_code=400, detail=f"Unknown setting(s): {', '.join(unknown)}")

    checkpoint = None
    if "sd_model_checkpoint" in changes:
        wanted = changes["sd_model_checkpoint"]
        checkpoint = ctx.checkpoints.get_closest(str(wanted)) if wanted else None
        if checkpoint is None:
            raise HTTPException(status_code=400, detail=f"model '{wanted}' not found")

    applied: list[str] = []
    try:
        for key, value in changes.items():
            if key == "sd_model_checkpoint":
                continue
            if options.set(key, value, is_api=True):
                applied.append(key)
    except (ValueError, TypeError) as error:
        for key in applied:
            options.set(key, current_values[key], is_api=True)
        raise HTTPException(status_code=422, detail=f"Invalid value for a setting: {error}") from error

    if checkpoint is not None and not getattr(options, "frozen", False):
        ctx.load_checkpoint(checkpoint)
        options.set("sd_model_checkpoint", checkpoint.title, is_api=True)
    options.save()


def info_router(ctx: "AppContext") -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")

    @router.get("/sd-models", response_model=list[SDModelItem], tags=["models"])
    def get_sd_models() -> list[SDModelItem]:
        return [sd_model_item(info) for info in ctx.checkpoints.list()]

    @router.post("/refresh-checkpoints", tags=["models"])
    def refresh_checkpoints() -> None:
        ctx.checkpoints.refresh()

    @router.get("/samplers", response_model=list[SamplerItem], tags=["samplers"])
    def get_samplers() -> list[dict]:
        return samplers_api_list()

    @router.get("/schedulers", response_model=list[SchedulerItem], tags=["samplers"])
    def get_schedulers() -> list[dict]:
        return schedulers_api_list()

    @router.get("/upscalers", tags=["postprocessing"])
    def get_upscalers() -> list[dict]:
        # [{name, model_name, model_path, model_url, scale}] from the upscaler registry
        return upscalers_api_list(ctx.upscalers)

    @router.get("/latent-upscale-modes", tags=["postprocessing"])
    def get_latent_upscale_modes() -> list[dict]:
        return latent_upscale_modes_api_list()

    @router.get("/options", tags=["settings"])
    def get_config() -> dict[str, Any]:
        # sd_model_checkpoint names the checkpoint actually loaded, as A1111 reports it
        return ctx.shown_options()

    @router.post("/options", tags=["settings"])
    def set_config(changes: dict[str, Any] = Body(...)) -> None:
        apply_options(ctx, changes)

    @router.get("/cmd-flags", tags=["settings"])
    def get_cmd_flags() -> dict[str, Any]:
        return redacted_flags(ctx.args)

    return router
