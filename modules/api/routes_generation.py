"""Generation routes: POST /sdapi/v1/txt2img, and the job controls that go with it
(GET /sdapi/v1/progress, POST /sdapi/v1/interrupt, POST /sdapi/v1/skip)."""
from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable

from fastapi import APIRouter, HTTPException

from modules.api.models import ProgressResponse, StableDiffusionTxt2ImgProcessingAPI, \
    TextToImageResponse
from modules.api.request_infotext import apply_request_infotext
from modules.app.options import coerce_value
from modules.engine.samplers import get_sampler_and_scheduler
from modules.jobs.progress import JobProgress
from modules.jobs.service import JobError
from modules.scripting.runner import ScriptArgsError, ScriptDisabledError
from modules.processing.images import encode_image_to_base64
from modules.processing.params import GenerationParams, Processed, ProcessingParams

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.jobs.service import JobService
    from modules.processing.context import ProcessingContext

log = logging.getLogger(__name__)

Txt2ImgRunner = Callable[[GenerationParams, "ProcessingContext"], Processed]

# the request's `script_args` is the selected script's slice; params.script_args is the whole
# args array script_args_for() builds
_PARAM_FIELDS = frozenset(field.name for field in dataclasses.fields(GenerationParams)) - \
    {"script_args"}


def default_txt2img_runner() -> Txt2ImgRunner:
    # imported on first use: the processing stack pulls in torch and the engine
    from modules.processing.txt2img import run_txt2img
    return run_txt2img


def resolve_sampler_fields(request: StableDiffusionTxt2ImgProcessingAPI) -> tuple[str, str | None]:
    """A1111 §3.3 steps 3-4: (sampler name, scheduler) as processing receives them. Unknown sampler
    names fall back to the first sampler; "<sampler> <Scheduler>" legacy names are split."""
    sampler, scheduler = get_sampler_and_scheduler(request.sampler_name or request.sampler_index,
                                                   request.scheduler)
    if not request.scheduler and scheduler != "Automatic":
        return sampler, scheduler
    return sampler, request.scheduler


def build_generation_params(request: StableDiffusionTxt2ImgProcessingAPI) -> GenerationParams:
    sampler, scheduler = resolve_sampler_fields(request)
    values = {key: value for key, value in request.model_dump().items() if key in _PARAM_FIELDS}
    values.update(
        sampler_name=sampler, scheduler=scheduler, is_api=True,
        # A1111 ignores the request's own flags: saving follows save_images
        do_not_save_samples=not request.save_images, do_not_save_grid=not request.save_images)
    return GenerationParams(**values)


def prepare_override_settings(ctx: "AppContext",
                              overrides: dict[str, Any] | None) -> dict[str, Any]:
    """§3.4, checked before the job is queued: a checkpoint override that names no known
    checkpoint is dropped, a known one is replaced by its title; unknown keys are dropped with a
    warning (A1111 answers 500); a value of the wrong type is a 422 naming the setting."""
    prepared: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        try:
            info = ctx.options.info(key)
        except KeyError:
            log.warning("override_settings: unknown setting %r ignored", key)
            continue
        if key == "sd_model_checkpoint":
            checkpoint = ctx.checkpoints.get_closest(str(value)) if value else None
            if checkpoint is None:
                log.warning("override_settings: checkpoint %r not found, ignored", value)
                continue
            value = checkpoint.title
        try:
            prepared[key] = coerce_value(info, value)
        except ValueError as error:
            raise HTTPException(status_code=422, detail=f"override_settings: {error}") from error
    return prepared


def make_generation_job(ctx: "AppContext", params: ProcessingParams, overrides: dict[str, Any],
                        restore_afterwards: bool,
                        runner: Callable[[Any, Any], Processed]) -> Callable[[JobProgress], Processed]:
    """The function the worker runs: settings overrides are applied inside the job, so a queued
    request never changes the settings of the job running before it."""

    def job(progress: JobProgress) -> Processed:
        if not restore_afterwards:
            for key, value in overrides.items():
                ctx.options.set(key, value, is_api=True)
        scope = ctx.options.override(overrides, is_api=True) if restore_afterwards and overrides \
            else nullcontext()
        with scope:
            return runner(params, ctx.processing_context(progress))

    return job


def encode_result_images(ctx: "AppContext", processed: Processed) -> list[str]:
    """Base64 files in opts.samples_format, each with its infotext when opts.enable_pnginfo."""
    options = ctx.options
    fmt = options.get("samples_format") or "png"
    with_info = bool(options.get("enable_pnginfo"))
    encoded = []
    for index, image in enumerate(processed.images):
        infotext = None
        if with_info:
            if index < len(processed.infotexts):
                infotext = processed.infotexts[index]
            else:
                infotext = getattr(image, "info", {}).get("parameters")
        encoded.append(encode_image_to_base64(image, fmt=fmt, infotext=infotext,
                                              jpeg_quality=int(options.get("jpeg_quality") or 80)))
    return encoded


def progress_response(ctx: "AppContext", skip_current_image: bool) -> ProgressResponse:
    """§4.4: progress is 0.01 + the done fraction while a job runs, 0 when idle."""
    job = ctx.jobs.current()
    if job is None or job.progress.job_count == 0:
        idle = job.progress if job is not None else JobProgress()
        return ProgressResponse(progress=0, eta_relative=0, state=idle.state_dict(),
                                textinfo=idle.textinfo,
                                current_task=job.id if job is not None else None)
    progress = job.progress
    fraction = min(0.01 + progress.progress_fraction(), 1.0)
    eta = progress.eta_seconds(fraction) or 0.0
    current_image = None
    if not skip_current_image and progress.current_image is not None:
        current_image = encode_image_to_base64(progress.current_image, fmt="png")
    return ProgressResponse(progress=fraction, eta_relative=eta, state=progress.state_dict(),
                            current_image=current_image, textinfo=progress.textinfo,
                            current_task=job.id)


def remote_progress_response(service: "JobService",
                             skip_current_image: bool) -> ProgressResponse:
    """§4.4 for a queue whose jobs run on workers: the running job that started last."""
    current = service.current_id()
    view = service.view(current) if current is not None else None
    if view is None or not view.progress:
        return ProgressResponse(progress=0, eta_relative=0, state=JobProgress().state_dict(),
                                current_task=current)
    snapshot = view.progress
    state = JobProgress(job=view.kind).state_dict()
    state.update(job_count=snapshot["job_count"], job_no=snapshot["job_no"],
                 sampling_step=snapshot["step"], sampling_steps=snapshot["total"],
                 interrupted=view.interrupted)
    fraction = min(0.01 + snapshot["fraction"], 1.0)
    image = None
    if not skip_current_image and view.preview:
        image = view.preview.split(",", 1)[-1]
    return ProgressResponse(progress=fraction, eta_relative=snapshot.get("eta") or 0.0,
                            state=state, current_image=image, textinfo=view.textinfo,
                            current_task=view.id)


def script_args_for(ctx: "AppContext", request: Any, *, is_img2img: bool) -> list[Any]:
    """§8.3: the tab's script-args array for the request's script_name / script_args /
    alwayson_scripts; A1111's texts as a 422."""
    runner = ctx.scripts.runner(is_img2img)
    try:
        return runner.request_args(request.script_name, request.script_args,
                                   request.alwayson_scripts)
    except ScriptDisabledError as error:
        raise HTTPException(status_code=403, detail=str(error)) from error
    except ScriptArgsError as error:
        raise HTTPException(status_code=422, detail=str(error)) from error


def prepare_txt2img_request(ctx: "AppContext", request: StableDiffusionTxt2ImgProcessingAPI
                            ) -> tuple[StableDiffusionTxt2ImgProcessingAPI, GenerationParams]:
    """§3.3 steps 1-5: the request after its infotext prefill, and its processing params,
    admitted under the server limits."""
    request = apply_request_infotext(request, ctx.options, getattr(ctx, "styles", None),
                                     ctx.scripts.infotext_pasted)
    script_args = script_args_for(ctx, request, is_img2img=False)
    params = build_generation_params(request)
    params.script_args = script_args
    ctx.admit_generation(params)
    return request, params


def generation_response(ctx: "AppContext", request: Any, processed: Processed,
                        parameters: dict[str, Any]) -> TextToImageResponse:
    """A1111's response shape (`parameters` is the request as the response echoes it)."""
    images = encode_result_images(ctx, processed) if request.send_images else []
    return TextToImageResponse(images=images, parameters=parameters, info=processed.js())


def run_generation_request(ctx: "AppContext", service: "JobService", kind: str,
                           request: Any) -> TextToImageResponse:
    """Queue one prepared txt2img / img2img request, wait for it and answer A1111's shape; a
    failure answers what it was where it ran (status and envelope)."""
    from modules.api.job_handlers import generation_spec, is_remote
    spec = generation_spec(ctx, kind, request, remote=is_remote(service))
    view = service.wait(service.submit(spec, task_id=request.force_task_id))
    view.raise_for_failure()
    if view.result is None:
        raise JobError(f"Job {view.id} was {view.state}", 409)
    return TextToImageResponse.model_validate(view.result)


def generation_router(ctx: "AppContext", *, txt2img_runner: Txt2ImgRunner | None = None,
                      service: "JobService | None" = None) -> APIRouter:
    from modules.api.job_handlers import is_remote, job_service_for  # they build on this module
    jobs = service or job_service_for(ctx, txt2img_runner=txt2img_runner)
    remote = is_remote(jobs)
    router = APIRouter(prefix="/sdapi/v1")

    @router.post("/txt2img", response_model=TextToImageResponse, tags=["generation"])
    def text2imgapi(request: StableDiffusionTxt2ImgProcessingAPI) -> TextToImageResponse:
        request, _ = prepare_txt2img_request(ctx, request)
        return run_generation_request(ctx, jobs, "txt2img", request)

    @router.get("/progress", response_model=ProgressResponse, tags=["progress"])
    def progressapi(skip_current_image: bool = False) -> ProgressResponse:
        if remote:
            return remote_progress_response(jobs, skip_current_image)
        return progress_response(ctx, skip_current_image)

    @router.post("/interrupt", tags=["progress"])
    def interruptapi() -> dict:
        current = jobs.current_id()
        if current is not None:
            jobs.interrupt(current)
        return {}

    @router.post("/skip", tags=["progress"])
    def skip() -> None:
        current = jobs.current_id()
        if current is not None:
            jobs.skip(current)

    return router
