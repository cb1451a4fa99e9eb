"""/internal/* routes used by the browser UI (not protected by --api-auth, like A1111):
GET /internal/ping, GET /internal/pending-tasks, and (UI mode only) POST /internal/progress."""
from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

from fastapi import APIRouter

from modules.api.models import InternalProgressResponse, PendingTasksResponse, ProgressRequest

if TYPE_CHECKING:
    from modules.app.context import AppContext

_LIVE_PREVIEW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def live_preview_data_url(image, image_format: str) -> str:
    fmt = image_format.lower() if image_format.lower() in _LIVE_PREVIEW_FORMATS else "png"
    buffer = io.BytesIO()
    picture = image.convert("RGB") if fmt == "jpeg" else image
    picture.save(buffer, format=_LIVE_PREVIEW_FORMATS[fmt])
    return f"data:image/{fmt};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def internal_progress(ctx: "AppContext", request: ProgressRequest) -> InternalProgressResponse:
    """§4.5: progress of one task id as the UI polls it (no 0.01 offset, eta in seconds)."""
    jobs = ctx.jobs
    current = jobs.current()
    pending = jobs.pending_ids()
    active = current is not None and request.id_task == current.id
    queued = request.id_task in pending
    completed = request.id_task in jobs.recent_finished_ids()
    if not active:
        textinfo = "Waiting..."
        if queued:
            textinfo = f"In queue: {pending.index(request.id_task) + 1}/{len(pending)}"
        return InternalProgressResponse(active=False, queued=queued, completed=completed,
                                        id_live_preview=-1, textinfo=textinfo)

    progress = current.progress
    fraction = progress.progress_fraction()
    live_preview, id_live_preview = None, request.id_live_preview
    options = ctx.options
    if options.get("live_previews_enable") and request.live_preview:
        image = progress.current_image
        if image is not None and progress.id_live_preview != request.id_live_preview:
            image_format = options.get("live_previews_image_format") or "png"
            live_preview = live_preview_data_url(image, image_format)
            id_live_preview = progress.id_live_preview
    return InternalProgressResponse(active=True, queued=queued, completed=completed,
                                    progress=fraction, eta=progress.eta_seconds(fraction),
                                    live_preview=live_preview, id_live_preview=id_live_preview,
                                    textinfo=progress.textinfo)


def internal_router(ctx: "AppContext", *, ui_mode: bool) -> APIRouter:
    router = APIRouter(prefix="/internal", tags=["internal"])

    @router.get("/ping")
    def ping() -> dict:
        return {}

    @router.get("/pending-tasks", response_model=PendingTasksResponse)
    def pending_tasks() -> PendingTasksResponse:
        ids = ctx.jobs.pending_ids()
        return PendingTasksResponse(size=len(ids), tasks=ids)

    if ui_mode:
        @router.post("/progress", response_model=InternalProgressResponse)
        def progress(request: ProgressRequest) -> InternalProgressResponse:
            return internal_progress(ctx, request)

    return router
