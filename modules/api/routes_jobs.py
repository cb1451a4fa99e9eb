"""/sdapi/v2/jobs: the job queue as an API (beyond A1111).

POST /sdapi/v2/jobs with `{"type": "txt2img" | "img2img", "request": {<the v1 request body>}}`
answers at once (202) with the job's id, state and 1-based queue position. GET /sdapi/v2/jobs/{id}
gives the state: queued (position), running (step / total / ETA), done (the v1 response
`{images, parameters, info}`), failed (the error message) or cancelled. DELETE cancels a queued or
running job (a running one is interrupted and its result discarded). GET /sdapi/v2/jobs/{id}/events
streams Server-Sent Events until the job ends. Finished jobs are kept for a bounded time and count;
after that their id answers 404 "Job not found or expired".

The v1 routes and these share one request path (`prepare_*_request`, `submit_generation_request`,
`generation_response`) and one queue: v1 simply waits for its job.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from modules.api.models import JobProgressInfo, JobStatus, JobSubmission, TextToImageResponse
from modules.api.routes_generation import (Txt2ImgRunner, default_txt2img_runner,
                                           generation_response, prepare_txt2img_request,
                                           submit_generation_request)
from modules.api.routes_img2img import (Img2ImgRunner, default_img2img_runner, echoed_parameters,
                                        prepare_img2img_request)
from modules.api.routes_internal import live_preview_data_url
from modules.jobs.queue import CANCELLED, DONE, FAILED, FINISHED_STATES, RUNNING, Job

if TYPE_CHECKING:
    from modules.app.context import AppContext

NOT_FOUND = "Job not found or expired"
EVENTS_POLL_SECONDS = 0.1
KEEPALIVE_SECONDS = 15.0
CANCEL_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class JobRetention:
    """How long finished jobs (and their results) stay readable, and how many at most."""
    max_age_seconds: float = 3600.0
    max_count: int = 100


@dataclass
class JobRecord:
    """A v2 job with what its response needs: the request and its echoed `parameters`."""
    job: Job
    kind: str
    request: Any
    parameters: dict[str, Any]
    response: TextToImageResponse | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class JobRegistry:
    """The v2 jobs by id, oldest first. Finished ones expire by age and count (checked whenever
    the registry is used); queued and running ones are always kept."""

    def __init__(self, retention: JobRetention,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._retention = retention
        self._clock = clock  # must tick like time.monotonic: Job.finished_at comes from it
        self._records: OrderedDict[str, JobRecord] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, record: JobRecord) -> None:
        with self._lock:
            self._records[record.job.id] = record
            self._expire_locked()

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            self._expire_locked()
            return self._records.get(job_id)

    def ids(self) -> list[str]:
        with self._lock:
            self._expire_locked()
            return list(self._records)

    def _expire_locked(self) -> None:
        now = self._clock()
        finished = [(job_id, record.job.finished_at) for job_id, record in self._records.items()
                    if record.job.finished and record.job.finished_at is not None]
        finished.sort(key=lambda item: item[1])
        excess = len(finished) - self._retention.max_count
        for index, (job_id, finished_at) in enumerate(finished):
            if index < excess or now - finished_at > self._retention.max_age_seconds:
                del self._records[job_id]


def job_progress_info(job: Job) -> JobProgressInfo:
    snapshot = job.progress.snapshot()
    return JobProgressInfo(**{key: snapshot[key] for key in JobProgressInfo.model_fields})


def error_message(error: BaseException | None) -> str:
    detail = getattr(error, "detail", None)
    return str(detail) if detail else str(error) or type(error).__name__


def finished_response(ctx: "AppContext", record: JobRecord) -> TextToImageResponse:
    """The A1111 response of a done job, encoded once and kept."""
    with record.lock:
        if record.response is None:
            record.response = generation_response(ctx, record.request, record.job.result,
                                                  record.parameters)
        return record.response


def job_status(ctx: "AppContext", record: JobRecord) -> JobStatus:
    job = record.job
    state = job.state
    status = JobStatus(id=job.id, type=record.kind, state=state,
                       position=None if state in FINISHED_STATES else job.queue_position())
    if state == RUNNING:
        status.progress = job_progress_info(job)
    elif state == DONE:
        status.result = finished_response(ctx, record)
    elif state == FAILED:
        status.error = error_message(job.error)
    return status


def sse_event(event: str, data: Any) -> str:
    """One Server-Sent Event; the JSON payload has no newlines, so one `data:` line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def job_events(ctx: "AppContext", record: JobRecord, *,
               poll_seconds: float = EVENTS_POLL_SECONDS) -> Iterator[str]:
    """`state` when the state or queue position changes, `progress` when the running job moves
    ({step, total, job_no, job_count, fraction, eta, preview}: preview is a data URL, only when a
    new live preview exists), and a last `done` / `failed` / `cancelled` event with the job's
    full status."""
    job = record.job
    last_state: tuple[str, int | None] | None = None
    last_progress: tuple[int, int, int] | None = None
    last_preview_id = 0
    last_sent = time.monotonic()
    while True:
        finished = job.finished
        if finished:
            status = job_status(ctx, record)
            yield sse_event(status.state, status.model_dump())
            return
        state = (job.state, job.queue_position())
        if state != last_state:
            last_state = state
            last_sent = time.monotonic()
            yield sse_event("state", {"id": job.id, "state": state[0], "position": state[1]})
        if job.state == RUNNING:
            snapshot = job.progress.snapshot()
            moved = (snapshot["step"], snapshot["total"], snapshot["job_no"])
            if moved != last_progress:
                last_progress = moved
                event = job_progress_info(job).model_dump()
                event["preview"] = None
                image = job.progress.current_image
                if snapshot["id_live_preview"] != last_preview_id and image is not None:
                    last_preview_id = snapshot["id_live_preview"]
                    image_format = ctx.options.get("live_previews_image_format") or "png"
                    event["preview"] = live_preview_data_url(image, image_format)
                last_sent = time.monotonic()
                yield sse_event("progress", event)
        if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
            last_sent = time.monotonic()
            yield ": keep-alive\n\n"
        job.wait_finished(poll_seconds)


def jobs_router(ctx: "AppContext", *,
                txt2img_runner: Txt2ImgRunner | None = None,
                img2img_runner: Img2ImgRunner | None = None,
                retention: JobRetention = JobRetention(),
                clock: Callable[[], float] = time.monotonic) -> APIRouter:
    router = APIRouter(prefix="/sdapi/v2", tags=["jobs"])
    registry = JobRegistry(retention, clock)

    def find(job_id: str) -> JobRecord:
        record = registry.get(job_id)
        if record is None:
            raise HTTPException(status_code=404, detail=NOT_FOUND)
        return record

    @router.post("/jobs", response_model=JobStatus, status_code=202,
                 summary="Queue a txt2img or img2img job and return at once",
                 responses={409: {"description": "force_task_id names a known job"},
                            422: {"description": "The inner request is invalid"}})
    def submit_job(submission: JobSubmission) -> JobStatus:
        request = submission.request
        if request.force_task_id and (registry.get(request.force_task_id) is not None
                                      or ctx.jobs.get(request.force_task_id) is not None):
            raise HTTPException(status_code=409,
                                detail=f"Job {request.force_task_id} already exists")
        if submission.type == "txt2img":
            request, params = prepare_txt2img_request(ctx, request)
            runner = txt2img_runner or default_txt2img_runner()
            parameters = request.model_dump()
        else:
            request, params = prepare_img2img_request(ctx, request)
            runner = img2img_runner or default_img2img_runner()
            parameters = echoed_parameters(request)
        job = submit_generation_request(ctx, submission.type, request, params, runner)
        # the record outlives the job (retention): it keeps no copy of the request's images,
        # which the job has decoded and the echoed parameters hold only when asked for
        slim = request.model_copy(update={name: None for name in ("init_images", "mask",
                                                                  "latent_mask")
                                          if name in type(request).model_fields})
        record = JobRecord(job=job, kind=submission.type, request=slim, parameters=parameters)
        registry.add(record)
        return job_status(ctx, record)

    @router.get("/jobs", response_model=list[JobStatus], summary="List the known jobs")
    def list_jobs() -> list[JobStatus]:
        """Queued, running and retained finished jobs, oldest first (results left out)."""
        statuses = []
        for job_id in registry.ids():
            record = registry.get(job_id)
            if record is not None:
                statuses.append(job_status(ctx, record).model_copy(update={"result": None}))
        return statuses

    @router.get("/jobs/{job_id}", response_model=JobStatus, summary="State and result of a job",
                responses={404: {"description": NOT_FOUND}})
    def get_job(job_id: str) -> JobStatus:
        return job_status(ctx, find(job_id))

    @router.delete("/jobs/{job_id}", response_model=JobStatus,
                   summary="Cancel a queued or running job",
                   responses={404: {"description": NOT_FOUND},
                              409: {"description": "The job has already finished"}})
    def cancel_job(job_id: str) -> JobStatus:
        """A queued job is removed; a running one is interrupted at its next step and its result
        discarded. Answers once the job has stopped (or after 10 s, still `running`)."""
        record = find(job_id)
        if record.job.state == CANCELLED:
            return job_status(ctx, record)
        if not ctx.jobs.cancel_job(job_id):
            raise HTTPException(status_code=409, detail=f"Job already {record.job.state}")
        record.job.wait_finished(CANCEL_WAIT_SECONDS)
        return job_status(ctx, record)

    @router.get("/jobs/{job_id}/events", summary="Progress and previews as Server-Sent Events",
                response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}},
                                 "description": "events `state`, `progress`, then one of "
                                                "`done` / `failed` / `cancelled`"},
                           404: {"description": NOT_FOUND}})
    def job_events_stream(job_id: str) -> StreamingResponse:
        record = find(job_id)
        return StreamingResponse(job_events(ctx, record), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
