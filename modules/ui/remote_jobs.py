"""The generate buttons with a remote queue (`--queue`): the tab's request travels to a worker as
an API request (images and script inputs as base64), and the tab follows the job through the job
service: queue place, progress, live preview, then the images, or the error as a message."""
from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr
import numpy as np
from PIL import Image

from modules.api.job_handlers import generation_spec
from modules.api.models import StableDiffusionImg2ImgProcessingAPI, \
    StableDiffusionTxt2ImgProcessingAPI
from modules.jobs.service import CANCELLED, DONE, QUEUED, JobService, JobView
from modules.processing.images import decode_base64_to_image, encode_image_to_base64
from modules.ui.progress import PROGRESS_POLL_SECONDS, ProgressSnapshot, progress_bar_html

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.processing.params import ProcessingParams

log = logging.getLogger(__name__)

_IMAGE_FIELDS = ("init_images", "mask", "latent_mask")


def remote_service(ctx: "AppContext") -> JobService | None:
    """The remote queue when the app has one (--queue), else None (the tab runs here)."""
    return getattr(ctx, "job_service", None)


def jsonable(value: Any, where: str = "value") -> Any:
    """A UI value as JSON for the trip to a worker: images (PIL or arrays) as base64 PNG."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Image.Image):
        return encode_image_to_base64(value, fmt="png")
    if isinstance(value, np.ndarray):
        if value.ndim in (2, 3) and value.dtype == np.uint8:
            return encode_image_to_base64(Image.fromarray(value), fmt="png")
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): jsonable(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise ValueError(f"{where} ({type(value).__name__}) cannot be sent to the workers")


def request_from_params(ctx: "AppContext", kind: str, params: "ProcessingParams") -> Any:
    """The tab's params as the API request a worker runs (saving as the settings say)."""
    model = StableDiffusionTxt2ImgProcessingAPI if kind == "txt2img" \
        else StableDiffusionImg2ImgProcessingAPI
    values = {name: jsonable(getattr(params, name), name) for name in model.model_fields
              if hasattr(params, name) and name != "script_args"}
    for name in _IMAGE_FIELDS:
        if name in values and isinstance(values[name], str) and not values[name]:
            values[name] = None
    runner = ctx.scripts.runner(kind == "img2img")
    script_name, script_args, alwayson = runner.request_fields(params.script_args or [0])
    values.update(script_name=script_name, script_args=jsonable(script_args, "script inputs"),
                  alwayson_scripts=jsonable(alwayson, "script inputs"), save_images=True,
                  send_images=True)
    return model(**values)


def follow_remote(service: JobService, job_id: str, *,
                  poll_seconds: float = PROGRESS_POLL_SECONDS) -> Iterator[ProgressSnapshot]:
    """Snapshots of a queued job until it finishes; a new live preview only when it changed."""
    last_preview: str | None = None
    while True:
        view = service.view(job_id)
        if view is None or view.finished:
            return
        progress = view.progress or {}
        preview = None
        if view.preview and view.preview != last_preview:
            last_preview = view.preview
            preview = decode_base64_to_image(view.preview)
        yield ProgressSnapshot(
            fraction=float(progress.get("fraction") or 0.0), eta_seconds=progress.get("eta"),
            queue_position=view.position if view.state == QUEUED else 0,
            textinfo=view.textinfo, preview=preview, preview_id=0)
        time.sleep(poll_seconds)


def result_outputs(view: JobView, infotext_html: Callable[[str], str],
                   error_html: Callable[[str], str]) -> tuple[list, str, str, str]:
    """(images, info json, infotext html, error html) of a finished remote job."""
    if view.state != DONE or view.result is None:
        message = view.error if view.error else f"The job was {view.state}"
        if view.state == CANCELLED:
            message = "Interrupted: the job was cancelled before it finished"
        return [], "", "", error_html(message)
    info = json.loads(view.result.get("info") or "{}")
    infotexts = info.get("infotexts") or []
    images = []
    for index, encoded in enumerate(view.result.get("images") or []):
        image = decode_base64_to_image(encoded)
        if index < len(infotexts):
            image.info["parameters"] = infotexts[index]
        images.append(image)
    comments = info.get("comments") or ""
    shown = (f"<p class='comments'>{comments}</p>" if comments else "") + \
        infotext_html(infotexts[0] if infotexts else "")
    return images, view.result.get("info") or "", shown, ""


def generate_remote(ctx: "AppContext", kind: str, params: "ProcessingParams", *,
                    result_count: int, infotext_html: Callable[[str], str],
                    error_html: Callable[[str], str],
                    poll_seconds: float = PROGRESS_POLL_SECONDS) -> Iterator[tuple[Any, ...]]:
    """Queue the tab's request on the remote queue and yield the tab's outputs as it runs."""
    service = remote_service(ctx)
    assert service is not None
    request = request_from_params(ctx, kind, params)
    job_id = service.submit(generation_spec(ctx, kind, request, remote=True))
    keep_results = tuple(gr.skip() for _ in range(result_count))
    for snapshot in follow_remote(service, job_id, poll_seconds=poll_seconds):
        preview = snapshot.preview if snapshot.preview is not None else gr.skip()
        yield keep_results + (job_id, progress_bar_html(snapshot), preview)
    view = service.view(job_id)
    if view is None:
        yield ([], "", "", error_html("The job expired before its result was read")) + \
            (job_id, "", None)
        return
    yield result_outputs(view, infotext_html, error_html) + (job_id, "", None)


def interrupt_remote(service: JobService, task_id: str | None) -> bool:
    """Interrupt: a queued job is cancelled, a running one stops and keeps what it made."""
    job_id = task_id or service.current_id()
    if not job_id:
        return False
    view = service.view(job_id)
    if view is None or view.finished:
        return False
    return service.cancel(job_id) if view.state == QUEUED else service.interrupt(job_id)


def skip_remote(service: JobService, task_id: str | None) -> bool:
    job_id = task_id or service.current_id()
    return bool(job_id) and service.skip(job_id)
