"""Progress of one job: what A1111 keeps in `shared.state`, but owned by a single job.

The worker thread writes it (through the processing layer's step callback) while the API's
progress endpoints read it from other threads, so every access goes through one lock.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from modules.engine.sampling import SamplingInterrupted


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
        self.skipped = False
        self.stopping_generation = False
        self.textinfo: str | None = None
        self.time_start: float | None = None
        self.job_timestamp = "0"
        self.current_latent: Any = None
        self.current_image: Any = None
        self.id_live_preview = 0

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
        """Record a denoising step; raise SamplingInterrupted when interrupted or skipped so the
        sampler stops at this step (the caller decodes what it has)."""
        with self._lock:
            self.sampling_step = int(step)
            self.sampling_steps = int(total)
            if latent is not None:
                self.current_latent = latent
            stop = self.interrupted or self.skipped
        if stop:
            raise SamplingInterrupted("interrupted" if self.interrupted else "skipped")

    def set_current_image(self, image: Any) -> None:
        """Store a live-preview image; each new one gets a new preview id."""
        with self._lock:
            self.current_image = image
            self.id_live_preview += 1

    def set_textinfo(self, text: str | None) -> None:
        with self._lock:
            self.textinfo = text

    # -- requested from other threads ----------------------------------------------------------
    def interrupt(self) -> None:
        with self._lock:
            self.interrupted = True

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
