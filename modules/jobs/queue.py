"""The job queue: one worker thread owns the device and runs jobs first-in, first-out.

The UI and the API both submit work here; A1111's synchronous endpoints simply wait for their job.
Task ids follow A1111: `task(<kind>-<7 random [A-Z0-9]>)`.
"""
from __future__ import annotations

import collections
import logging
import math
import secrets
import string
import threading
import time
import traceback
from typing import Any, Callable

from modules.jobs.progress import JobProgress

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED_STATES = (DONE, FAILED, CANCELLED)
RECENT_FINISHED_LIMIT = 16
_TASK_ID_ALPHABET = string.ascii_uppercase + string.digits


class QueueFullError(RuntimeError):
    """The queue already holds its maximum of waiting jobs (HTTP 429 with Retry-After)."""

    def __init__(self, waiting: int, limit: int, retry_after: int) -> None:
        self.waiting, self.limit, self.retry_after = waiting, limit, retry_after
        super().__init__(f"The queue is full ({waiting} jobs waiting, the limit is {limit}); "
                         f"try again in about {retry_after} s")


class JobCancelled(Exception):
    """The job was cancelled: removed from the queue before it started, or stopped while running
    with its result discarded (`JobQueue.cancel_job`)."""


def create_task_id(kind: str) -> str:
    suffix = "".join(secrets.choice(_TASK_ID_ALPHABET) for _ in range(7))
    return f"task({kind}-{suffix})"


class Job:
    """One unit of work. `fn` receives the job's JobProgress and returns the result."""

    def __init__(self, queue: "JobQueue", job_id: str, kind: str,
                 fn: Callable[[JobProgress], Any]) -> None:
        self._queue = queue
        self.id = job_id
        self.kind = kind
        self.fn: Callable[[JobProgress], Any] | None = fn
        self.state = QUEUED
        self.progress = JobProgress(job=kind)
        self.result: Any = None
        self.error: BaseException | None = None
        self.submitted_at = time.monotonic()
        #: time.monotonic() when the job ended; None until then (result retention uses it)
        self.finished_at: float | None = None
        #: set by JobQueue.cancel_job on a running job: its result is discarded when it stops
        self.cancel_requested = False
        self._finished = threading.Event()
        # None once they have run: later ones run at once
        self._done_callbacks: list[Callable[["Job"], None]] | None = []
        self._callbacks_lock = threading.Lock()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Block until the job ends or `timeout` seconds pass; True when it has ended."""
        return self._finished.wait(timeout)

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; return its result or re-raise its exception.
        TimeoutError when `timeout` seconds pass first, JobCancelled if it was cancelled."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"{self.id} did not finish within {timeout} s")
        if self.state == CANCELLED:
            raise JobCancelled(f"{self.id} was cancelled")
        if self.error is not None:
            raise self.error
        return self.result

    def add_done_callback(self, callback: Callable[["Job"], None]) -> None:
        """Call `callback(job)` once the job has ended (at once when it already has)."""
        with self._callbacks_lock:
            if self._done_callbacks is not None:
                self._done_callbacks.append(callback)
                return
        callback(self)

    def queue_position(self) -> int | None:
        """1-based position among the waiting jobs; 0 while running; None once finished."""
        return self._queue.position_of(self)

    def _finish(self, state: str, result: Any = None, error: BaseException | None = None) -> None:
        self.state, self.result, self.error = state, result, error
        self.finished_at = time.monotonic()
        # the callbacks run before waiters wake, so what they record (a job's last event) is
        # there for anyone who sees the job finished
        with self._callbacks_lock:
            callbacks, self._done_callbacks = self._done_callbacks or [], None
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # noqa: BLE001 - one listener must not stop the worker
                log.exception("a done callback of %s failed", self.id)
        self._finished.set()

    def __repr__(self) -> str:
        return f"Job({self.id!r}, {self.state})"


class JobQueue:
    """FIFO queue served by a single worker thread (started on construction).

    `max_waiting()` bounds the jobs waiting to start (0 = no bound): beyond it `submit` raises
    QueueFullError. `time_limit()` (seconds, 0 = none) interrupts a job that runs longer, with
    the reason on its progress (`JobProgress.interrupt_reason`). Both are read at each use, so a
    settings change applies to the next job."""

    def __init__(self, *, name: str = "job-worker", max_waiting: Callable[[], int] = lambda: 0,
                 time_limit: Callable[[], float] = lambda: 0) -> None:
        self.max_waiting = max_waiting
        self.time_limit = time_limit
        self._recent_durations: collections.deque[float] = collections.deque(maxlen=8)
        self._condition = threading.Condition()
        self._pending: collections.deque[Job] = collections.deque()
        self._current: Job | None = None
        # finished jobs by id, oldest first, so late progress polls can still see "completed"
        self._finished: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._stopping = False
        self._worker = threading.Thread(target=self._run_worker, name=name, daemon=True)
        self._worker.start()

    # -- submitting ----------------------------------------------------------------------------
    def submit(self, kind: str, fn: Callable[[JobProgress], Any], *,
               task_id: str | None = None) -> Job:
        job = Job(self, task_id or create_task_id(kind), kind, fn)
        limit = int(self.max_waiting() or 0)
        with self._condition:
            if self._stopping:
                raise RuntimeError("the job queue is shut down")
            if limit > 0 and len(self._pending) >= limit:
                raise QueueFullError(len(self._pending), limit, self._retry_after_locked())
            self._pending.append(job)
            self._condition.notify_all()
        return job

    def run(self, kind: str, fn: Callable[[JobProgress], Any], *, task_id: str | None = None,
            timeout: float | None = None) -> Any:
        """Submit and wait: the synchronous endpoints' way of using the queue."""
        return self.submit(kind, fn, task_id=task_id).wait(timeout)

    def cancel(self, job_id: str) -> bool:
        """Remove a job that has not started yet; False when it is running, finished or unknown."""
        with self._condition:
            job = next((j for j in self._pending if j.id == job_id), None)
            if job is None:
                return False
            self._pending.remove(job)
            self._remember_finished(job)
        job._finish(CANCELLED)
        return True

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a queued or running job. A queued one is removed at once; a running one is
        interrupted and ends as CANCELLED with its result discarded. False when the id is
        unknown or the job has already finished."""
        if self.cancel(job_id):
            return True
        with self._condition:
            job = self._current if self._current is not None and self._current.id == job_id \
                else None
            if job is None:
                return False
            job.cancel_requested = True
        job.progress.interrupt()
        return True

    # -- queries -------------------------------------------------------------------------------
    def current(self) -> Job | None:
        with self._condition:
            return self._current

    def on_worker_thread(self) -> bool:
        """Whether the caller is the job running now (a nested run would wait on itself)."""
        return threading.current_thread() is self._worker

    def pending_ids(self) -> list[str]:
        """Ids of jobs waiting to start, in the order they will run."""
        with self._condition:
            return [job.id for job in self._pending]

    def recent_finished_ids(self) -> list[str]:
        """Ids of the last finished jobs (at most 16), oldest first."""
        with self._condition:
            return list(self._finished)

    def get(self, job_id: str) -> Job | None:
        with self._condition:
            if self._current is not None and self._current.id == job_id:
                return self._current
            for job in self._pending:
                if job.id == job_id:
                    return job
            return self._finished.get(job_id)

    def position_of(self, job: Job) -> int | None:
        with self._condition:
            if job is self._current:
                return 0
            for index, pending in enumerate(self._pending):
                if pending is job:
                    return index + 1
            return None

    def interrupt_current(self) -> bool:
        job = self.current()
        if job is not None:
            job.progress.interrupt()
        return job is not None

    def interrupt(self, job_id: str) -> bool:
        """Interrupt one job by id, running or still queued. A queued job keeps the request: it
        starts, stops before its first batch and returns what it has (no images), so whoever
        waits on it gets an ordinary, empty result. False when the id is unknown or finished."""
        with self._condition:
            job = self._current if self._current is not None and self._current.id == job_id \
                else next((j for j in self._pending if j.id == job_id), None)
        if job is None:
            return False
        job.progress.interrupt()
        return True

    def skip_current(self) -> bool:
        job = self.current()
        if job is not None:
            job.progress.skip()
        return job is not None

    # -- lifecycle -----------------------------------------------------------------------------
    def shutdown(self, *, timeout: float | None = 10.0) -> None:
        """Cancel waiting jobs, interrupt the running one and stop the worker."""
        with self._condition:
            self._stopping = True
            cancelled = list(self._pending)
            self._pending.clear()
            for job in cancelled:
                self._remember_finished(job)
            running = self._current
            self._condition.notify_all()
        for job in cancelled:
            job._finish(CANCELLED)
        if running is not None:
            running.progress.interrupt()
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout)

    def _retry_after_locked(self) -> int:
        """Seconds until a place in the queue is likely free: what the running job has left by
        its progress, else the mean time of recent jobs (caller holds the condition lock)."""
        seconds = None
        if self._current is not None:
            seconds = self._current.progress.eta_seconds()
        if seconds is None and self._recent_durations:
            seconds = sum(self._recent_durations) / len(self._recent_durations)
        return max(1, math.ceil(seconds if seconds is not None else 5))

    def _start_time_limit(self, job: Job) -> threading.Timer | None:
        seconds = float(self.time_limit() or 0)
        if seconds <= 0:
            return None

        def expire() -> None:
            log.warning("%s ran past the time limit of %g s: interrupted", job.id, seconds)
            job.progress.interrupt(f"Stopped after the server's time limit of {seconds:g} s "
                                   f"per job (setting limit_job_seconds)")

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()
        return timer

    def _remember_finished(self, job: Job) -> None:
        """Caller holds the condition lock."""
        self._finished[job.id] = job
        while len(self._finished) > RECENT_FINISHED_LIMIT:
            self._finished.popitem(last=False)

    def _run_worker(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                job = self._pending.popleft()
                job.state = RUNNING
                # counted as one sub-job until the processing layer says how many it has
                job.progress.begin(1)
                self._current = job
            result: Any = None
            failure: BaseException | None = None
            started = time.monotonic()
            timer = self._start_time_limit(job)
            try:
                result = job.fn(job.progress)
            except BaseException as error:  # noqa: BLE001 - handed to the waiting caller
                log.debug("job %s failed: %r", job.id, error)
                failure = error
                # a finished job is kept for a while; the locals of the frames its error went
                # through (a model, a batch of latents) must not be kept with it
                traceback.clear_frames(error.__traceback__)
            if timer is not None:
                timer.cancel()
            # the request's closure (decoded images, its params) is not needed any more
            job.fn = None
            with self._condition:
                self._current = None
                self._recent_durations.append(time.monotonic() - started)
                self._remember_finished(job)
            if job.cancel_requested:
                job._finish(CANCELLED)
            else:
                job._finish(FAILED if failure is not None else DONE, result, failure)
            del job, result, failure
