"""The embedded job service: specs run on this process's JobQueue (the default, no server).

Finished jobs stay readable for a bounded time and count (`JobRetention`); queued and running ones
are always kept. The queue also runs other work (a UI generation, a model load): `view` and
`job_ids` show only the service's jobs, while `current_id`, `interrupt` and `skip` act on
whatever holds the device, as A1111's progress routes expect.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from modules.jobs.progress import JobProgress
from modules.jobs.queue import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Job, JobQueue
from modules.jobs.service import (DuplicateJobError, EventLog, JobError, JobEvent, JobHandler,
                                  JobSpec, JobView, PreviewEncoder, ProgressPump, error_message,
                                  final_event_data)


@dataclass(frozen=True)
class JobRetention:
    """How long finished jobs (and their results) stay readable, and how many at most."""
    max_age_seconds: float = 3600.0
    max_count: int = 100


@dataclass
class _Record:
    log: EventLog
    job: Job = field(init=False)     # set once queued, before the record is listed
    preview: str | None = None


class InProcessJobService:
    """`JobService` over a JobQueue: the handler for a spec's kind runs on the queue's worker."""

    def __init__(self, queue: JobQueue, handlers: Mapping[str, JobHandler], *,
                 retention: JobRetention = JobRetention(),
                 encode_preview: PreviewEncoder | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue = queue
        self._handlers = handlers
        self._retention = retention
        self._encode_preview = encode_preview
        self._clock = clock  # must tick like time.monotonic: Job.finished_at comes from it
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    # -- JobService ------------------------------------------------------------------------------
    def submit(self, spec: JobSpec, *, task_id: str | None = None) -> str:
        handler = self._handlers.get(spec.kind)
        if handler is None:
            raise ValueError(f"No handler for jobs of kind {spec.kind!r}")
        if task_id and (self._record(task_id) is not None or self.queue.get(task_id) is not None):
            raise DuplicateJobError(f"Job {task_id} already exists")
        # the record outlives the job (retention): it keeps no copy of the payload (an img2img
        # request's images), which only the job's function holds until it ends
        record = _Record(EventLog())
        log = record.log
        # first in the log: the worker may start the job before submit() returns
        log.append("state", {"state": QUEUED})

        def run(progress: JobProgress) -> dict[str, Any]:
            log.append("state", {"state": RUNNING, "position": 0})
            with ProgressPump(progress, lambda event, data: self._emit(record, event, data),
                              encode_preview=self._encode_preview):
                return handler(spec.payload, progress)

        with self._lock:
            job = record.job = self.queue.submit(spec.kind, run, task_id=task_id)
            self._records[job.id] = record
            self._expire_locked()
        job.add_done_callback(lambda finished: log.append(finished.state, final_event_data(
            finished.id, finished.state, self._view_of(finished, record).error)))
        return job.id

    def view(self, job_id: str) -> JobView | None:
        record = self._record(job_id)
        return None if record is None else self._view_of(record.job, record)

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        record = self._record(job_id)
        job = None if record is None else record.job
        if job is None:
            raise KeyError(job_id)
        if not job.wait_finished(timeout):
            raise TimeoutError(f"{job_id} did not finish within {timeout} s")
        view = self.view(job_id)
        assert view is not None
        return view

    def cancel(self, job_id: str) -> bool:
        return self.queue.cancel_job(job_id)

    def interrupt(self, job_id: str) -> bool:
        return self.queue.interrupt(job_id)

    def skip(self, job_id: str) -> bool:
        job = self._job(job_id)
        if job is None or job.finished:
            return False
        job.progress.skip()
        return True

    def current_id(self) -> str | None:
        job = self.queue.current()
        return None if job is None else job.id

    def job_ids(self) -> list[str]:
        with self._lock:
            self._expire_locked()
            return list(self._records)

    def events(self, job_id: str, after: str | None = None,
               timeout: float = 0.0) -> list[JobEvent]:
        record = self._record(job_id)
        return [] if record is None else record.log.read(after, timeout)

    def close(self) -> None:
        """The queue belongs to the application, which shuts it down."""

    # -- helpers ---------------------------------------------------------------------------------
    def _emit(self, record: _Record, event: str, data: dict[str, Any]) -> None:
        if data.get("preview"):
            record.preview = data["preview"]
        record.log.append(event, data)

    def _record(self, job_id: str) -> _Record | None:
        with self._lock:
            self._expire_locked()
            return self._records.get(job_id)

    def _job(self, job_id: str) -> Job | None:
        record = self._record(job_id)
        return record.job if record is not None else self.queue.get(job_id)

    def _view_of(self, job: Job, record: _Record | None) -> JobView:
        state = job.state
        progress = job.progress
        view = JobView(id=job.id, kind=job.kind, state=state,
                       position=job.queue_position() if state in (QUEUED, RUNNING) else None,
                       textinfo=progress.textinfo, interrupted=progress.interrupted,
                       skipped=progress.skipped,
                       preview=record.preview if record is not None else None)
        if state == RUNNING:
            snapshot = progress.snapshot()
            view.progress = {key: snapshot[key] for key in ("step", "total", "job_no",
                                                            "job_count", "fraction", "eta")}
        elif state == DONE:
            view.result = job.result
        elif state == FAILED:
            view.error = error_message(job.error)
            if isinstance(job.error, JobError):
                view.error_status, view.error_body = job.error.status, job.error.body
        elif state == CANCELLED:
            view.position = None
        return view

    def _expire_locked(self) -> None:
        now = self._clock()
        finished = [(job_id, record.job.finished_at) for job_id, record in self._records.items()
                    if record.job.finished and record.job.finished_at is not None]
        finished.sort(key=lambda item: item[1])
        excess = len(finished) - self._retention.max_count
        for index, (job_id, finished_at) in enumerate(finished):
            if index < excess or now - finished_at > self._retention.max_age_seconds:
                del self._records[job_id]
