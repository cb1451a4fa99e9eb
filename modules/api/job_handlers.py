"""Generation requests as queue jobs: the payload a front puts in a `JobSpec` and the handlers that
run it wherever the device is (this process, or a `--worker` behind Redis).

The front prepares a request (infotext prefill, script arguments, admission: every 4xx happens
before anything is queued) and queues `{"request": <the prepared request>, "checkpoint": ...}`;
the handler prepares it again on its own process (the same steps give the same params), runs it
and answers the A1111 response as JSON. Any failure becomes a `JobError` with the status and error
envelope the v1 route answers, so a failure reads the same from every backend.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from modules.api.errors import error_envelope, status_for_exception
from modules.api.models import StableDiffusionImg2ImgProcessingAPI, \
    StableDiffusionTxt2ImgProcessingAPI
from modules.api.routes_generation import (Txt2ImgRunner, default_txt2img_runner,
                                           generation_response, make_generation_job,
                                           prepare_override_settings, prepare_txt2img_request)
from modules.api.routes_img2img import (Img2ImgRunner, default_img2img_runner, echoed_parameters,
                                        prepare_img2img_request)
from modules.api.routes_internal import live_preview_data_url
from modules.jobs.local_service import InProcessJobService, JobRetention
from modules.jobs.progress import JobProgress
from modules.jobs.service import JobError, JobHandler, JobService, JobSpec, error_message

if TYPE_CHECKING:
    from modules.app.context import AppContext

log = logging.getLogger(__name__)

GENERATION_KINDS = ("txt2img", "img2img")


def generation_spec(ctx: "AppContext", kind: str, request: Any, *, remote: bool) -> JobSpec:
    """The job for a prepared request. A remote queue also gets the checkpoint it must run on
    (the request's override, else this front's current one): workers keep their own settings,
    and affinity sends the job to a worker that has it loaded."""
    payload: dict[str, Any] = {"request": request.model_dump(mode="json")}
    # checked here, so a bad override is a 422 before anything is queued
    overrides = prepare_override_settings(ctx, request.override_settings)
    checkpoint = None
    if remote:
        wanted = overrides.get("sd_model_checkpoint") or ctx.options.get("sd_model_checkpoint")
        info = ctx.checkpoints.get_closest(str(wanted)) if wanted else None
        # the file name, not the title: a title gains its hash once the file has been hashed
        checkpoint = info.name if info is not None else None
        payload["checkpoint"] = checkpoint
        # the front's settings travel with the job: what a client sets on the front (POST
        # /sdapi/v1/options) applies on every worker alike
        payload["options"] = {key: value for key, value in ctx.options.data_dict().items()
                              if key != "sd_model_checkpoint"}
    return JobSpec(kind, payload, checkpoint=checkpoint)


def as_job_error(error: BaseException) -> JobError:
    if isinstance(error, JobError):
        return error
    return JobError(error_message(error) or "The job failed", status_for_exception(error),
                    error_envelope(error))


def generation_handlers(ctx: "AppContext", *, txt2img_runner: Txt2ImgRunner | None = None,
                        img2img_runner: Img2ImgRunner | None = None) -> dict[str, JobHandler]:
    def handler(kind: str) -> JobHandler:
        def run(payload: dict[str, Any], progress: JobProgress) -> dict[str, Any]:
            try:
                return _run_generation(ctx, kind, payload, progress, txt2img_runner,
                                       img2img_runner)
            except Exception as error:  # noqa: BLE001 - handed to whoever waits, as data
                raise as_job_error(error) from error
        return run

    return {kind: handler(kind) for kind in GENERATION_KINDS}


def _run_generation(ctx: "AppContext", kind: str, payload: dict[str, Any],
                    progress: JobProgress, txt2img_runner: Txt2ImgRunner | None,
                    img2img_runner: Img2ImgRunner | None) -> dict[str, Any]:
    runner: Callable[[Any, Any], Any]
    if kind == "txt2img":
        request = StableDiffusionTxt2ImgProcessingAPI.model_validate(payload["request"])
        request, params = prepare_txt2img_request(ctx, request)
        runner = txt2img_runner or default_txt2img_runner()
        parameters = request.model_dump()
    else:
        request = StableDiffusionImg2ImgProcessingAPI.model_validate(payload["request"])
        request, params = prepare_img2img_request(ctx, request)
        runner = img2img_runner or default_img2img_runner()
        parameters = echoed_parameters(request)
    adopt_front_options(ctx, payload.get("options") or {})
    overrides = prepare_override_settings(ctx, request.override_settings)
    checkpoint = payload.get("checkpoint")
    if checkpoint and "sd_model_checkpoint" not in overrides:
        info = ctx.checkpoints.get_closest(checkpoint)
        current = ctx.checkpoints.get_closest(str(ctx.options.get("sd_model_checkpoint") or ""))
        if info is not None and info != current:
            # a worker takes the front's checkpoint and keeps it loaded for the next jobs
            ctx.options.set("sd_model_checkpoint", info.title, is_api=True)
    job = make_generation_job(ctx, params, overrides,
                              request.override_settings_restore_afterwards, runner)
    processed = job(progress)
    return generation_response(ctx, request, processed, parameters).model_dump(mode="json")


def adopt_front_options(ctx: "AppContext", values: dict[str, Any]) -> None:
    """A worker takes the front's settings for good (changed ones only, so a model or VAE
    setting reloads once, not at every job); keys this worker does not know are left out."""
    for key, value in values.items():
        try:
            if ctx.options.get(key) != value:
                ctx.options.set(key, value, is_api=True)
        except (KeyError, ValueError) as error:
            log.debug("front setting %s not taken: %s", key, error)


def preview_encoder(ctx: "AppContext") -> Callable[[Any], str]:
    def encode(image: Any) -> str:
        return live_preview_data_url(image, ctx.options.get("live_previews_image_format")
                                     or "png")
    return encode


def in_process_service(ctx: "AppContext", *, txt2img_runner: Txt2ImgRunner | None = None,
                       img2img_runner: Img2ImgRunner | None = None,
                       retention: JobRetention = JobRetention(), clock=None) -> JobService:
    extra = {} if clock is None else {"clock": clock}
    return InProcessJobService(ctx.jobs, generation_handlers(ctx, txt2img_runner=txt2img_runner,
                                                             img2img_runner=img2img_runner),
                               retention=retention, encode_preview=preview_encoder(ctx), **extra)


def job_service_for(ctx: "AppContext", *, txt2img_runner: Txt2ImgRunner | None = None,
                    img2img_runner: Img2ImgRunner | None = None) -> JobService:
    """The application's queue (`ctx.job_service`: Redis with --queue), else one over this
    process's JobQueue with these runners."""
    service = getattr(ctx, "job_service", None)
    if service is not None:
        return service
    return in_process_service(ctx, txt2img_runner=txt2img_runner, img2img_runner=img2img_runner)


def is_remote(service: JobService) -> bool:
    return not isinstance(service, InProcessJobService)
