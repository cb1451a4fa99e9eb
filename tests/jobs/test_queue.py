"""JobQueue / JobProgress: FIFO order, one job at a time, positions, results and errors,
interrupt/skip reaching a running job, A1111 task ids."""
from __future__ import annotations

import re
import threading
import time

import pytest

from modules.engine.sampling import SamplingInterrupted
from modules.jobs.progress import JobProgress
from modules.jobs.queue import CANCELLED, DONE, FAILED, JobCancelled, JobQueue, QueueFullError

TIMEOUT = 10


@pytest.fixture
def queue():
    jobs = JobQueue()
    yield jobs
    jobs.shutdown()


def blocking_job(started: threading.Event, release: threading.Event, value=None):
    def fn(progress: JobProgress):
        started.set()
        assert release.wait(TIMEOUT)
        return value
    return fn


def test_jobs_run_fifo_one_at_a_time(queue):
    order: list[int] = []
    running_now = []
    max_parallel = []
    lock = threading.Lock()

    def make(index):
        def fn(progress):
            with lock:
                running_now.append(index)
                max_parallel.append(len(running_now))
            time.sleep(0.01)
            with lock:
                running_now.remove(index)
                order.append(index)
            return index * 10
        return fn

    jobs = [queue.submit("txt2img", make(i)) for i in range(6)]
    results = [job.wait(TIMEOUT) for job in jobs]
    assert results == [0, 10, 20, 30, 40, 50]
    assert order == list(range(6))
    assert max(max_parallel) == 1
    assert all(job.state == DONE for job in jobs)
    # the recent-finished list keeps them in completion order
    assert queue.recent_finished_ids() == [job.id for job in jobs]


def test_positions_and_pending_ids(queue):
    started, release = threading.Event(), threading.Event()
    first = queue.submit("txt2img", blocking_job(started, release, "a"))
    assert started.wait(TIMEOUT)
    second = queue.submit("img2img", lambda p: "b")
    third = queue.submit("txt2img", lambda p: "c")
    assert queue.current() is first
    assert first.queue_position() == 0
    assert second.queue_position() == 1
    assert third.queue_position() == 2
    assert queue.pending_ids() == [second.id, third.id]
    assert queue.get(third.id) is third
    release.set()
    assert third.wait(TIMEOUT) == "c"
    assert first.result == "a"
    assert third.queue_position() is None
    assert queue.pending_ids() == []
    assert queue.current() is None
    assert queue.get(first.id) is first


def test_wait_reraises_job_exception_and_queue_keeps_working(queue):
    def broken(progress):
        raise ValueError("bad prompt")

    failed = queue.submit("txt2img", broken)
    with pytest.raises(ValueError, match="bad prompt"):
        failed.wait(TIMEOUT)
    assert failed.state == FAILED
    assert isinstance(failed.error, ValueError)
    assert queue.submit("txt2img", lambda p: 42).wait(TIMEOUT) == 42


def test_wait_timeout(queue):
    started, release = threading.Event(), threading.Event()
    job = queue.submit("txt2img", blocking_job(started, release))
    with pytest.raises(TimeoutError):
        job.wait(0.05)
    release.set()
    assert job.wait(TIMEOUT) is None


def test_task_id_format_and_forced_id(queue):
    job = queue.submit("txt2img", lambda p: None)
    assert re.fullmatch(r"task\(txt2img-[A-Z0-9]{7}\)", job.id)
    forced = queue.submit("txt2img", lambda p: None, task_id="task(my-own-id)")
    assert forced.id == "task(my-own-id)"
    ids = {queue.submit("txt2img", lambda p: None).id for _ in range(20)}
    assert len(ids) == 20


def test_interrupt_reaches_running_fn(queue):
    started = threading.Event()
    steps_seen: list[int] = []

    def sampling(progress: JobProgress):
        progress.begin(1)
        started.set()
        for step in range(1000):
            try:
                progress.on_sampling_step(step, 1000)
            except SamplingInterrupted:
                return "stopped"
            steps_seen.append(step)
            time.sleep(0.005)
        return "ran to the end"

    job = queue.submit("txt2img", sampling)
    assert started.wait(TIMEOUT)
    time.sleep(0.03)
    assert queue.interrupt_current()
    assert job.wait(TIMEOUT) == "stopped"
    assert job.progress.interrupted
    assert 0 < len(steps_seen) < 1000


def test_skip_ends_current_batch_only(queue):
    started = threading.Event()
    batches_done: list[tuple[int, int]] = []  # (batch, steps completed)

    def three_batches(progress: JobProgress):
        progress.begin(3)
        for batch in range(3):
            completed = 0
            for step in range(50):
                if batch == 0 and step == 5:
                    started.set()
                    time.sleep(0.1)  # the test skips here
                try:
                    progress.on_sampling_step(step + 1, 50)
                except SamplingInterrupted:
                    break
                completed += 1
            batches_done.append((batch, completed))
            progress.next_job()
        return progress.skipped

    job = queue.submit("txt2img", three_batches)
    assert started.wait(TIMEOUT)
    queue.skip_current()
    assert job.wait(TIMEOUT) is False  # skip is cleared once the batch ends
    assert batches_done[0][1] < 50
    assert batches_done[1] == (1, 50) and batches_done[2] == (2, 50)
    assert not job.progress.interrupted


def test_progress_fraction_state_and_eta():
    progress = JobProgress(job="txt2img")
    assert progress.progress_fraction() == 0.0
    assert progress.eta_seconds() is None
    progress.begin(4)
    progress.next_job()
    progress.on_sampling_step(5, 10)
    # one of four batches done, half of the second: 1/4 + 1/4 * 0.5
    assert progress.progress_fraction() == pytest.approx(0.375)
    state = progress.state_dict()
    assert list(state) == ["skipped", "interrupted", "stopping_generation", "job", "job_count",
                           "job_timestamp", "job_no", "sampling_step", "sampling_steps"]
    assert (state["job"], state["job_count"], state["job_no"]) == ("txt2img", 4, 1)
    assert (state["sampling_step"], state["sampling_steps"]) == (5, 10)
    assert re.fullmatch(r"\d{14}", state["job_timestamp"])
    time.sleep(0.02)
    eta = progress.eta_seconds()
    assert eta is not None and eta > 0


def test_live_preview_ids_increase():
    progress = JobProgress()
    assert progress.id_live_preview == 0
    progress.set_current_image("first")
    progress.set_current_image("second")
    assert (progress.current_image, progress.id_live_preview) == ("second", 2)


def test_cancel_and_shutdown():
    queue = JobQueue()
    started, release = threading.Event(), threading.Event()
    running = queue.submit("txt2img", blocking_job(started, release, "done"))
    assert started.wait(TIMEOUT)
    waiting = queue.submit("txt2img", lambda p: "never")
    another = queue.submit("txt2img", lambda p: "never either")
    assert queue.cancel(waiting.id)
    assert not queue.cancel(running.id)
    assert waiting.state == CANCELLED
    with pytest.raises(JobCancelled):
        waiting.wait(TIMEOUT)
    release.set()
    queue.shutdown()
    assert running.wait(TIMEOUT) == "done"
    assert another.state in (CANCELLED, DONE)
    with pytest.raises(RuntimeError):
        queue.submit("txt2img", lambda p: None)


def test_a_finished_job_keeps_its_result_but_not_what_its_work_held(queue):
    """Finished jobs stay readable for a while; the objects their function or their error's
    frames referenced (a model, decoded images) must not be kept alive with them."""
    import gc
    import weakref

    class Heavy:
        pass

    held = Heavy()
    seen = weakref.ref(held)

    def work(progress: JobProgress, kept=held):
        return id(kept)

    assert queue.run("work", work) == id(held)
    del held, work
    gc.collect()
    assert seen() is None, "the finished job keeps its function's closure"

    def failing(progress: JobProgress):
        local = Heavy()
        failing.seen = weakref.ref(local)
        raise ValueError("bad request")

    job = queue.submit("failing", failing)
    with pytest.raises(ValueError, match="bad request"):
        job.wait(TIMEOUT)
    gc.collect()
    assert failing.seen() is None, "the failed job's traceback keeps its frames' locals"
    assert job.state == FAILED and str(job.error) == "bad request"


def test_a_full_queue_refuses_with_a_retry_time():
    limit = {"waiting": 2}
    jobs = JobQueue(max_waiting=lambda: limit["waiting"])
    try:
        started, release = threading.Event(), threading.Event()
        running = jobs.submit("running", blocking_job(started, release, "first"))
        assert started.wait(TIMEOUT)
        waiting = [jobs.submit("waiting", lambda progress, i=i: i) for i in range(2)]
        with pytest.raises(QueueFullError) as caught:
            jobs.submit("one too many", lambda progress: None)
        assert caught.value.waiting == 2 and caught.value.limit == 2
        assert caught.value.retry_after >= 1
        assert "the limit is 2" in str(caught.value)
        assert jobs.pending_ids() == [job.id for job in waiting]   # nothing was added
        limit["waiting"] = 0                                       # 0: no bound (read each time)
        extra = jobs.submit("unbounded", lambda progress: "ok")
        release.set()
        assert running.wait(TIMEOUT) == "first"
        assert [job.wait(TIMEOUT) for job in waiting] == [0, 1] and extra.wait(TIMEOUT) == "ok"
    finally:
        jobs.shutdown()


def test_a_job_past_the_time_limit_is_interrupted_and_says_why():
    jobs = JobQueue(time_limit=lambda: 0.3)
    try:
        def long_sampling(progress: JobProgress) -> str:
            progress.begin(1)
            for step in range(1000):
                try:
                    progress.on_sampling_step(step + 1, 1000)
                except SamplingInterrupted:
                    return f"stopped at step {step + 1}"
                time.sleep(0.01)
            return "ran to the end"

        job = jobs.submit("long", long_sampling)
        result = job.wait(TIMEOUT)
        assert result.startswith("stopped at step") and job.state == DONE
        assert "time limit of 0.3 s" in job.progress.interrupt_reason
        # a quick job after it is not affected
        assert jobs.run("quick", lambda progress: progress.interrupt_reason) is None
    finally:
        jobs.shutdown()
