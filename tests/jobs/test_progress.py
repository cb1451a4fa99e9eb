"""JobProgress as the sampler drives it: 0-based step indexes, monotone progress that ends at
exactly 1.0, interrupt/skip at the next step, and interrupting a job that is still queued."""
from __future__ import annotations

import threading

import pytest

from modules.engine.sampling import SamplingInterrupted
from modules.jobs.progress import JobProgress
from modules.jobs.queue import JobQueue

TIMEOUT = 10


def _run_batches(progress: JobProgress, batches: int, steps: int,
                 seen: list[float] | None = None) -> list[int]:
    """Drive `progress` like the pipeline: sampler indexes 0..steps-1 per batch. Returns the
    number of completed steps per batch."""
    progress.begin(batches)
    completed = []
    for batch in range(batches):
        if progress.interrupted:
            break
        if batch:
            progress.next_job()
        done = 0
        for index in range(steps):
            try:
                progress.on_sampler_step(index, steps)
            except SamplingInterrupted:
                break
            done += 1
            if seen is not None:
                seen.append(progress.progress_fraction())
        completed.append(done)
    return completed


def test_last_sampler_step_completes_the_job():
    progress = JobProgress()
    seen: list[float] = []
    _run_batches(progress, batches=3, steps=4, seen=seen)
    assert seen == sorted(seen)                       # never goes back
    assert seen[0] == pytest.approx(1 / 12)           # index 0 is one step done
    assert seen[-1] == 1.0
    assert progress.state_dict()["sampling_step"] == 4


def test_steps_beyond_the_total_are_clamped():
    progress = JobProgress()
    progress.begin(1)
    progress.on_sampling_step(12, 10)   # adaptive samplers may take more steps than planned
    assert progress.sampling_step == 10 and progress.progress_fraction() == 1.0


def test_skip_ends_the_batch_and_progress_stays_monotone():
    progress = JobProgress()
    seen: list[float] = []

    class SkipAtThirdStep:
        def __call__(self, step, total, latent):
            if progress.job_no == 1 and step == 3:
                progress.skip()

    progress.set_step_listener(SkipAtThirdStep())
    completed = _run_batches(progress, batches=3, steps=5, seen=seen)
    assert completed == [5, 3, 5]
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert not progress.skipped


def test_interrupt_stops_at_the_next_step_and_no_preview_runs_after_it():
    progress = JobProgress()
    calls: list[int] = []

    def listener(step, total, latent):
        calls.append(step)
        if step == 2:
            progress.interrupt()

    progress.set_step_listener(listener)
    completed = _run_batches(progress, batches=2, steps=50)
    assert completed == [2]
    assert calls == [1, 2]
    assert progress.interrupted and progress.job_no == 0


def test_interrupting_a_queued_job_keeps_the_request_until_it_runs():
    queue = JobQueue()
    try:
        started, release = threading.Event(), threading.Event()
        blocker = queue.submit("txt2img",
                               lambda progress: started.set() or release.wait(TIMEOUT))
        assert started.wait(TIMEOUT)
        queued = queue.submit("txt2img", lambda progress: _run_batches(progress, 3, 10))
        assert queued.queue_position() == 1
        assert queue.interrupt(queued.id) is True
        assert queue.interrupt("task(txt2img-NOPE000)") is False
        release.set()
        assert blocker.wait(TIMEOUT) is True
        assert queued.wait(TIMEOUT) == []          # started, stopped before its first batch
        assert queued.progress.interrupted and queued.progress.sampling_step == 0
        assert queue.interrupt(queued.id) is False  # finished jobs are not interrupted
    finally:
        queue.shutdown()


def test_interrupt_by_id_reaches_the_running_job():
    queue = JobQueue()
    try:
        started = threading.Event()

        def sampling(progress: JobProgress) -> int:
            progress.begin(1)
            for index in range(10_000):
                if index == 3:
                    started.set()
                try:
                    progress.on_sampler_step(index, 10_000)
                except SamplingInterrupted:
                    return index
                threading.Event().wait(0.002)
            return -1

        job = queue.submit("txt2img", sampling)
        assert started.wait(TIMEOUT)
        assert queue.interrupt(job.id)
        assert 3 <= job.wait(TIMEOUT) < 10_000
    finally:
        queue.shutdown()
