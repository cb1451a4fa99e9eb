"""The job service: what the API and the character service submit work to, whatever runs it.

A job is a `JobSpec` (a kind and a JSON payload), so it can cross a process boundary; a handler
per kind (`JobHandler`) turns the payload into a JSON result on whichever process owns a device.
Two implementations share this interface: `local_service.InProcessJobService` (the default: this
process's `JobQueue`) and `redis_service.RedisJobService` (Redis Streams, workers elsewhere).

Each job has an ordered log of events (`JobEvent`: `state`, `progress`, then one of `done` /
`failed` / `cancelled`) with ids a client can resume after (SSE `Last-Event-ID`).
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from modules.jobs.progress import JobProgress

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED_STATES = (DONE, FAILED, CANCELLED)
EVENT_LOG_LIMIT = 1000

#: runs one job on the process that owns the device: (payload, progress) -> JSON-able result
JobHandler = Callable[[dict[str, Any], JobProgress], dict[str, Any]]
#: a live-preview image -> a data URL (the API layer decides the format)
PreviewEncoder = Callable[[Any], str]


class QueueUnavailableError(RuntimeError):
    """The queue's server cannot be reached (HTTP 503 with this message)."""


class DuplicateJobError(ValueError):
    """A job with the requested id already exists (HTTP 409)."""


class JobError(RuntimeError):
    """A job's failure as data, the same on every backend: the message, the HTTP status it
    answers and the error body (A1111's envelope). Handlers raise it (the API layer wraps
    whatever went wrong); a waiting v1 route raises it again."""

    def __init__(self, message: str, status: int = 500,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {"error": "JobError", "detail": message, "body": "",
                             "errors": message}


@dataclass(frozen=True)
class JobSpec:
    """A job as data: `kind` picks the handler, `payload` is its JSON input and `checkpoint` the
    model title it needs (None: whatever is loaded), which the Redis queue uses for affinity."""
    kind: str
    payload: dict[str, Any]
    checkpoint: str | None = None

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "payload": self.payload,
                           "checkpoint": self.checkpoint}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "JobSpec":
        data = json.loads(text)
        return cls(kind=data["kind"], payload=data["payload"], checkpoint=data.get("checkpoint"))


@dataclass
class JobView:
    """One reading of a job. `position` is 1-based while queued, 0 while running, None once
    finished; `progress` ({step, total, job_no, job_count, fraction, eta}) while running;
    `preview` the latest live preview as a data URL; `result` when done; `error` when failed."""
    id: str
    kind: str
    state: str
    position: int | None = None
    progress: dict[str, Any] | None = None
    preview: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    #: the HTTP status and body the failure answers (see JobError)
    error_status: int | None = None
    error_body: dict[str, Any] | None = None
    worker: str | None = None
    textinfo: str | None = None
    interrupted: bool = False
    skipped: bool = False

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    def raise_for_failure(self) -> None:
        if self.state == FAILED:
            raise JobError(self.error or "The job failed", self.error_status or 500,
                           self.error_body)


@dataclass(frozen=True)
class JobEvent:
    id: str
    event: str
    data: dict[str, Any] = field(default_factory=dict)


class JobService(Protocol):
    """What callers of the queue use; both backends implement all of it."""

    def submit(self, spec: JobSpec, *, task_id: str | None = None) -> str:
        """Queue a job and return its id. QueueFullError when the queue holds its maximum,
        DuplicateJobError for a known `task_id`, QueueUnavailableError when unreachable."""

    def view(self, job_id: str) -> JobView | None:
        """The job's state now; None when unknown or expired."""

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        """Block until the job has finished and return its last view (TimeoutError first)."""

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job (removed) or a running one (stopped, result discarded, never run
        again); False when unknown or finished."""

    def interrupt(self, job_id: str) -> bool:
        """Stop the job at its next step and keep what it made; False when unknown / finished."""

    def skip(self, job_id: str) -> bool:
        """Skip the job's running batch; False when unknown or finished."""

    def current_id(self) -> str | None:
        """The running job that started last (A1111's single "current job"), else None."""

    def job_ids(self) -> list[str]:
        """Known jobs (queued, running, retained finished ones), oldest first."""

    def events(self, job_id: str, after: str | None = None,
               timeout: float = 0.0) -> list[JobEvent]:
        """The job's events after the one with id `after` (all with None), waiting up to
        `timeout` seconds for one to arrive. Unknown ids give []."""

    def close(self) -> None:
        """Release connections and threads."""


class EventLog:
    """An in-memory, bounded, ordered event log with blocking reads; ids are 1, 2, 3, ..."""

    def __init__(self, limit: int = EVENT_LOG_LIMIT) -> None:
        self._events: collections.deque[JobEvent] = collections.deque(maxlen=limit)
        self._next = 1
        self._condition = threading.Condition()

    def append(self, event: str, data: dict[str, Any]) -> str:
        with self._condition:
            entry = JobEvent(str(self._next), event, data)
            self._next += 1
            self._events.append(entry)
            self._condition.notify_all()
            return entry.id

    def read(self, after: str | None = None, timeout: float = 0.0) -> list[JobEvent]:
        last = event_number(after)
        deadline = time.monotonic() + max(0.0, timeout)
        with self._condition:
            while True:
                found = [entry for entry in self._events if int(entry.id) > last]
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found
                self._condition.wait(remaining)


def error_message(error: BaseException | None) -> str | None:
    """What a client is told about a failure: an HTTP error's detail, else the message."""
    if error is None:
        return None
    detail = getattr(error, "detail", None)
    return str(detail) if detail else str(error) or type(error).__name__


def event_number(event_id: str | None) -> int:
    """An in-memory event id as a number; a missing or malformed one reads as "from the start"."""
    try:
        return int(event_id) if event_id else 0
    except ValueError:
        return 0


def progress_event(snapshot: dict[str, Any], preview: str | None) -> dict[str, Any]:
    event = {key: snapshot[key] for key in ("step", "total", "job_no", "job_count", "fraction",
                                            "eta")}
    event["preview"] = preview
    return event


class ProgressPump:
    """Watches a running job's JobProgress from a helper thread: appends a `progress` event when
    the step, total or batch moves (with a new live preview when there is one) and runs `on_tick`
    (a remote worker reads its cancel / interrupt / skip requests there). Both queue backends use
    it, so their event streams look alike."""

    def __init__(self, progress: JobProgress, emit: Callable[[str, dict[str, Any]], None], *,
                 encode_preview: PreviewEncoder | None = None,
                 on_tick: Callable[[], None] | None = None, poll_seconds: float = 0.1) -> None:
        self._progress = progress
        self._emit = emit
        self._encode_preview = encode_preview
        self._on_tick = on_tick
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._last_moved: tuple[int, int, int] | None = None
        self._last_preview_id = 0
        self._thread = threading.Thread(target=self._run, name="progress-pump", daemon=True)

    def __enter__(self) -> "ProgressPump":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            self._tick(with_requests=True)
        self._tick(with_requests=False)  # what the last step reported

    def _tick(self, *, with_requests: bool) -> None:
        try:
            if with_requests and self._on_tick is not None:
                self._on_tick()
            self.publish()
        except Exception:  # noqa: BLE001 - progress reporting never fails the job
            log.debug("progress pump tick failed", exc_info=True)

    def publish(self) -> None:
        snapshot = self._progress.snapshot()
        moved = (snapshot["step"], snapshot["total"], snapshot["job_no"])
        if moved == self._last_moved or snapshot["job_count"] == 0:
            return
        self._last_moved = moved
        preview = None
        image = self._progress.current_image
        if (self._encode_preview is not None and image is not None
                and snapshot["id_live_preview"] != self._last_preview_id):
            self._last_preview_id = snapshot["id_live_preview"]
            preview = self._encode_preview(image)
        self._emit("progress", progress_event(snapshot, preview))


def final_event_data(job_id: str, state: str, error: str | None = None) -> dict[str, Any]:
    """The data of a job's last event (`done` / `failed` / `cancelled`), on every backend."""
    data: dict[str, Any] = {"id": job_id, "state": state}
    if error:
        data["error"] = error
    return data

