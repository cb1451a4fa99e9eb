"""Progress of one job: what A1111 keeps in `shared.state`, but owned by a single job.

The worker thread writes it (through the processing layer's step callback) while the API's
progress endpoints read it from other threads, so every access goes through one lock.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from modules.engine.sampling import SamplingInterrupted

log = logging.getLogger(__name__)

#: called after every recorded sampling step with (steps done, total steps, x0 estimate); the
#: processing layer hangs its live-preview renderer here
StepListener = Callable[[int, int, Any], None]


class JobProgress:
    """Thread-safe progress, interrupt and skip flags of one job.

    `job_count` is the number of sub-jobs (batches; hires doubles it), `job_no` the 0-based index
    of the running one, `sampling_step`/`sampling_steps` the denoising position inside it.
    """

    def __init__(self, job: str = "") -> None:
        self._lock = threading.Lock()
        self.job = job
        self.job_count = 0
        self.job_no = 0
        self.sampling_step = 0
        self.sampling_steps = 0
        self.interrupted = False
        #: why the job was interrupted when it was not the user (e.g. the server's time limit)
        self.interrupt_reason: str | None = None
        self.skipped = False
        self.stopping_generation = False
        self.textinfo: str | None = None
        self.time_start: float | None = None
        self.job_timestamp = "0"
        self.current_latent: Any = None
        self.current_image: Any = None
        self.id_live_preview = 0
        self._step_listener: StepListener | None = None
        self._listener_failed = False
        self._request_check: Callable[[], None] | None = None

    # -- written by the worker ---------------------------------------------------------------
    def begin(self, job_count: int) -> None:
        """Start (or restart the counting of) the job. Interrupt/skip requests made while the job
        was still queued or being set up are kept: they belong to this job."""
        with self._lock:
            self.job_count = max(0, int(job_count))
            self.job_no = 0
            self.sampling_step = 0
            self.sampling_steps = 0
            if self.time_start is None:
                self.time_start = time.time()
                self.job_timestamp = time.strftime("%Y%m%d%H%M%S", time.localtime(self.time_start))

    def next_job(self) -> None:
        """One sub-job (batch) finished; a pending skip applied to it and is cleared here."""
        with self._lock:
            self.job_no += 1
            self.sampling_step = 0
            self.skipped = False

    def on_sampling_step(self, step: int, total: int, latent: Any = None) -> None:
        """Record that `step` of `total` denoising steps are done; raise SamplingInterrupted when
        interrupted or skipped so the sampler stops here (the caller decodes what it has).
        Otherwise the step listener (live previews) runs; its failures never stop sampling."""
        check = self._request_check
        if check is not None:
            self._run_request_check(check)
        with self._lock:
            self.sampling_steps = int(total)
            self.sampling_step = min(int(step), self.sampling_steps) if total > 0 else int(step)
            if latent is not None:
                self.current_latent = latent
            stop = self.interrupted or self.skipped
            interrupted = self.interrupted
            listener = self._step_listener
        if stop:
            raise SamplingInterrupted("interrupted" if interrupted else "skipped")
        if listener is not None:
            self._notify_listener(listener, int(step), int(total), latent)

    def on_sampler_step(self, index: int, total: int, latent: Any = None) -> None:
        """The engine's step callback: samplers report the 0-based index of the step they just
        finished, so index + 1 steps are done (the last step makes the sub-job complete)."""
        self.on_sampling_step(int(index) + 1, total, latent)

    def set_step_listener(self, listener: StepListener | None) -> None:
        """Install (or remove, with None) what runs after each step, e.g. the preview renderer."""
        with self._lock:
            self._step_listener = listener
            self._listener_failed = False

    def set_request_check(self, check: Callable[[], None] | None) -> None:
        """Install what runs at the start of every step to pick up stop requests made elsewhere
        (a remote worker reads the queue's cancel / interrupt / skip keys), so a request takes
        effect at the next step; it calls interrupt() / skip() itself. Its failures are logged
        and sampling goes on."""
        self._request_check = check

    def _run_request_check(self, check: Callable[[], None]) -> None:
        try:
            check()
        except Exception:  # noqa: BLE001 - a lost request check must not stop the job
            log.debug("request check failed", exc_info=True)

    def _notify_listener(self, listener: StepListener, step: int, total: int, latent: Any) -> None:
        try:
            listener(step, total, latent)
        except Exception:  # noqa: BLE001 - a preview must never break sampling
            if not self._listener_failed:
                log.exception("live preview failed at step %d/%d (sampling goes on)", step, total)
            else:
                log.debug("live preview failed again at step %d/%d", step, total)
            self._listener_failed = True

    def set_current_image(self, image: Any) -> None:
        """Store a live-preview image; each new one gets a new preview id."""
        with self._lock:
            self.current_image = image
            self.id_live_preview += 1

    def set_textinfo(self, text: str | None) -> None:
        with self._lock:
            self.textinfo = text

    # -- requested from other threads ----------------------------------------------------------
    def interrupt(self, reason: str | None = None) -> None:
        """Stop the job at its next step; `reason` is kept for its result when it is not the
        user who asked (a time limit)."""
        with self._lock:
            self.interrupted = True
            if reason and self.interrupt_reason is None:
                self.interrupt_reason = reason

    def skip(self) -> None:
        with self._lock:
            self.skipped = True

    def should_stop(self) -> bool:
        """True when the current sub-job must stop (interrupt or skip)."""
        with self._lock:
            return self.interrupted or self.skipped

    # -- read by the progress endpoints --------------------------------------------------------
    def progress_fraction(self) -> float:
        """Fraction done in [0, 1]: finished sub-jobs plus the share of the running one."""
        with self._lock:
            return self._fraction_locked()

    def _fraction_locked(self) -> float:
        if self.job_count <= 0:
            return 0.0
        fraction = self.job_no / self.job_count
        if self.sampling_steps > 0:
            fraction += (1 / self.job_count) * (self.sampling_step / self.sampling_steps)
        return min(fraction, 1.0)

    def elapsed_seconds(self) -> float:
        with self._lock:
            return 0.0 if self.time_start is None else time.time() - self.time_start

    def eta_seconds(self, fraction: float | None = None) -> float | None:
        """Predicted remaining seconds from the elapsed time and `fraction` (default: the current
        progress fraction); None while nothing is done yet."""
        with self._lock:
            if fraction is None:
                fraction = self._fraction_locked()
            if self.time_start is None or fraction <= 0:
                return None
            elapsed = time.time() - self.time_start
        return elapsed / fraction - elapsed

    def snapshot(self) -> dict[str, Any]:
        """One consistent reading for job-status clients: sampling `step` of `total` in sub-job
        `job_no` of `job_count`, the overall `fraction`, `eta` seconds (None until something is
        done) and the id of the latest live preview."""
        with self._lock:
            fraction = self._fraction_locked()
            eta = None
            if self.time_start is not None and fraction > 0:
                elapsed = time.time() - self.time_start
                eta = elapsed / fraction - elapsed
            return {"step": self.sampling_step, "total": self.sampling_steps,
                    "job_no": self.job_no, "job_count": self.job_count, "fraction": fraction,
                    "eta": eta, "id_live_preview": self.id_live_preview}

    def state_dict(self) -> dict[str, Any]:
        """The `state` object of GET /sdapi/v1/progress (a1111-compat.md §4.4)."""
        with self._lock:
            return {
                "skipped": self.skipped,
                "interrupted": self.interrupted,
                "stopping_generation": self.stopping_generation,
                "job": self.job,
                "job_count": self.job_count,
                "job_timestamp": self.job_timestamp,
                "job_no": self.job_no,
                "sampling_step": self.sampling_step,
                "sampling_steps": self.sampling_steps,
            }
