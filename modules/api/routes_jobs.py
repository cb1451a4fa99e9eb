"""/sdapi/v2/jobs: the job queue as an API (beyond A1111).

POST /sdapi/v2/jobs with `{"type": "txt2img" | "img2img", "request": {<the v1 request body>}}`
answers at once (202) with the job's id, state and 1-based queue position. GET /sdapi/v2/jobs/{id}
gives the state: queued (position), running (step / total / ETA), done (the v1 response
`{images, parameters, info}`), failed (the error message) or cancelled. DELETE cancels a queued or
running job (a running one is interrupted and its result discarded). GET /sdapi/v2/jobs/{id}/events
streams Server-Sent Events until the job ends. Finished jobs are kept for a bounded time and count;
after that their id answers 404 "Job not found or expired".

The v1 routes and these share one request path (`prepare_*_request`, `job_handlers`) and one job
service (in-process, or Redis with --queue): v1 simply waits for its job. The events carry ids:
a client that reconnects with `Last-Event-ID` gets what it missed, then the rest.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import StreamingResponse

from modules.api.job_handlers import generation_spec, in_process_service, is_remote
from modules.api.models import JobProgressInfo, JobStatus, JobSubmission, TextToImageResponse
from modules.api.routes_generation import Txt2ImgRunner, prepare_txt2img_request
from modules.api.routes_img2img import Img2ImgRunner, prepare_img2img_request
from modules.jobs.local_service import JobRetention
from modules.jobs.service import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobService, JobView

if TYPE_CHECKING:
    from modules.app.context import AppContext

__all__ = ["JobRetention", "jobs_router"]

NOT_FOUND = "Job not found or expired"
EVENTS_WAIT_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
CANCEL_WAIT_SECONDS = 10.0


def job_status(view: JobView) -> JobStatus:
    status = JobStatus(id=view.id, type=view.kind, state=view.state, position=view.position)
    if view.state == RUNNING and view.progress:
        status.progress = JobProgressInfo(**{key: view.progress[key]
                                             for key in JobProgressInfo.model_fields})
    elif view.state == DONE and view.result is not None:
        status.result = TextToImageResponse.model_validate(view.result)
    elif view.state == FAILED:
        status.error = view.error
    return status


def sse_event(event: str, data: Any, event_id: str | None = None) -> str:
    """One Server-Sent Event; the JSON payload has no newlines, so one `data:` line."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def job_events(service: JobService, job_id: str, last_event_id: str | None = None, *,
               wait_seconds: float = EVENTS_WAIT_SECONDS) -> Iterator[str]:
    """The job's events after `last_event_id` (all of them without one), then new ones as they
    come: `state` (queued / running; a queued job's position is sent again whenever it moves,
    without an id), `progress` ({step, total, job_no, job_count, fraction, eta, preview}: preview
    is a data URL when a new live preview exists) and a last `done` / `failed` / `cancelled`
    event with the job's full status."""
    after = last_event_id
    last_position: int | None = None
    last_sent = time.monotonic()
    while True:
        for event in service.events(job_id, after, timeout=wait_seconds):
            after = event.id
            last_sent = time.monotonic()
            if event.event in (DONE, FAILED, CANCELLED):
                view = service.view(job_id)
                data = job_status(view).model_dump() if view is not None else event.data
                yield sse_event(event.event, data, event.id)
                return
            data = dict(event.data)
            if event.event == "state":
                data.setdefault("id", job_id)
                data.setdefault("position", None)
            yield sse_event(event.event, data, event.id)
        view = service.view(job_id)
        if view is None:
            return
        if view.state == QUEUED and view.position != last_position:
            last_position = view.position
            last_sent = time.monotonic()
            yield sse_event("state", {"id": job_id, "state": QUEUED, "position": view.position})
        if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
            last_sent = time.monotonic()
            yield ": keep-alive\n\n"


def jobs_router(ctx: "AppContext", *, txt2img_runner: Txt2ImgRunner | None = None,
                img2img_runner: Img2ImgRunner | None = None,
                retention: JobRetention = JobRetention(),
                clock: Callable[[], float] | None = None,
                service: JobService | None = None) -> APIRouter:
    router = APIRouter(prefix="/sdapi/v2", tags=["jobs"])
    jobs = service or getattr(ctx, "job_service", None) or in_process_service(
        ctx, txt2img_runner=txt2img_runner, img2img_runner=img2img_runner, retention=retention,
        clock=clock)
    def find(job_id: str) -> JobView:
        view = jobs.view(job_id)
        if view is None:
            raise HTTPException(status_code=404, detail=NOT_FOUND)
        return view

    @router.post("/jobs", response_model=JobStatus, status_code=202,
                 summary="Queue a txt2img or img2img job and return at once",
                 responses={409: {"description": "force_task_id names a known job"},
                            422: {"description": "The inner request is invalid"},
                            503: {"description": "The queue (Redis) cannot be reached"}})
    def submit_job(submission: JobSubmission) -> JobStatus:
        request = submission.request
        if request.force_task_id and jobs.view(request.force_task_id) is not None:
            raise HTTPException(status_code=409,
                                detail=f"Job {request.force_task_id} already exists")
        if submission.type == "txt2img":
            request, _ = prepare_txt2img_request(ctx, request)
        else:
            request, _ = prepare_img2img_request(ctx, request)
        spec = generation_spec(ctx, submission.type, request, remote=is_remote(jobs))
        job_id = jobs.submit(spec, task_id=request.force_task_id)
        view = jobs.view(job_id)
        assert view is not None
        return job_status(view)

    @router.get("/jobs", response_model=list[JobStatus], summary="List the known jobs")
    def list_jobs() -> list[JobStatus]:
        """Queued, running and retained finished jobs of the API (v1's too), oldest first
        (results left out)."""
        statuses = []
        for job_id in jobs.job_ids():
            view = jobs.view(job_id)
            if view is not None:
                view.result = None
                statuses.append(job_status(view))
        return statuses

    @router.get("/jobs/{job_id}", response_model=JobStatus, summary="State and result of a job",
                responses={404: {"description": NOT_FOUND}})
    def get_job(job_id: str) -> JobStatus:
        return job_status(find(job_id))

    @router.delete("/jobs/{job_id}", response_model=JobStatus,
                   summary="Cancel a queued or running job",
                   responses={404: {"description": NOT_FOUND},
                              409: {"description": "The job has already finished"}})
    def cancel_job(job_id: str) -> JobStatus:
        """A queued job is removed; a running one is interrupted at its next step and its result
        discarded. Answers once the job has stopped (or after 10 s, still `running`)."""
        view = find(job_id)
        if view.state == CANCELLED:
            return job_status(view)
        if not jobs.cancel(job_id):
            raise HTTPException(status_code=409, detail=f"Job already {view.state}")
        try:
            return job_status(jobs.wait(job_id, timeout=CANCEL_WAIT_SECONDS))
        except TimeoutError:
            return job_status(find(job_id))

    @router.get("/jobs/{job_id}/events", summary="Progress and previews as Server-Sent Events",
                response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}},
                                 "description": "events `state`, `progress`, then one of "
                                                "`done` / `failed` / `cancelled`; each with an "
                                                "`id` to resume from (`Last-Event-ID`)"},
                           404: {"description": NOT_FOUND}})
    def job_events_stream(job_id: str,
                          last_event_id: str | None = Header(default=None)) -> StreamingResponse:
        find(job_id)
        return StreamingResponse(job_events(jobs, job_id, last_event_id),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
