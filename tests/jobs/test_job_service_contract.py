"""One contract, two backends: the in-process queue and Redis Streams with worker threads (a real
redis-server started by the tests). A stand-in pipeline (tests/jobs/stub_jobs.py) sleeps per step
and reports steps like the real one."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from modules.jobs.local_service import InProcessJobService
from modules.jobs.queue import JobQueue, QueueFullError
from modules.jobs.redis_service import RedisJobService
from modules.jobs.redis_worker import RedisWorker
from modules.jobs.service import (CANCELLED, DONE, FAILED, QUEUED, RUNNING, DuplicateJobError,
                                  JobError, JobService, JobSpec)
from tests.jobs.stub_jobs import RunLog, steps_handler
from tests.redis_server import RedisServer, start_redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> RedisServer:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@dataclass
class Backend:
    service: JobService
    runs: RunLog
    limit: dict[str, int]
    add_workers: Callable[[int], None]
    closers: list[Callable[[], None]] = field(default_factory=list)


@pytest.fixture(params=["in-process", "redis"])
def backend(request) -> Backend:
    runs = RunLog()
    handlers = {"steps": steps_handler(runs)}
    limit = {"waiting": 0}
    if request.param == "in-process":
        queue = JobQueue(max_waiting=lambda: limit["waiting"])
        backend = Backend(InProcessJobService(queue, handlers), runs, limit, lambda n: None)
        yield backend
        queue.shutdown()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flush()
    service = RedisJobService(server.url, max_waiting=lambda: limit["waiting"])
    workers: list[RedisWorker] = []

    def add_workers(count: int) -> None:
        for _ in range(count):
            workers.append(RedisWorker(server.url, handlers, heartbeat_timeout=1.0).start())

    add_workers(1)
    yield Backend(service, runs, limit, add_workers)
    for worker in workers:
        worker.stop()
    service.close()


def steps(seed: int, count: int = 3, delay: float = 0.02, **extra: Any) -> JobSpec:
    return JobSpec("steps", {"seed": seed, "steps": count, "delay": delay, **extra})


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_jobs_complete_exactly_once_with_their_own_seeds(backend: Backend) -> None:
    backend.add_workers(2)
    ids = [backend.service.submit(steps(seed)) for seed in range(30)]
    views = [backend.service.wait(job_id, timeout=60) for job_id in ids]
    assert [view.state for view in views] == [DONE] * 30
    assert [view.result["seed"] for view in views] == list(range(30))
    assert all(view.result["steps_done"] == 3 for view in views)
    time.sleep(0.5)  # nothing runs a second time afterwards
    assert sorted(backend.runs.started) == list(range(30))


def test_waiting_jobs_have_positions_in_order(backend: Backend) -> None:
    service = backend.service
    first = service.submit(steps(1, count=40, delay=0.02))
    wait_for(lambda: service.view(first).state == RUNNING)
    later = [service.submit(steps(seed)) for seed in (2, 3, 4)]
    assert [service.view(job_id).position for job_id in later] == [1, 2, 3]
    assert service.view(first).position == 0
    assert service.current_id() == first
    assert service.cancel(later[0])
    assert [service.view(job_id).position for job_id in later[1:]] == [1, 2]
    assert service.view(later[0]).state == CANCELLED
    for job_id in later[1:]:
        assert service.wait(job_id, timeout=30).state == DONE
    assert 2 not in backend.runs.started  # the cancelled one never ran
    assert service.job_ids()[:4] == [first, *later]


def test_cancel_running_stops_within_a_step_and_never_runs_again(backend: Backend) -> None:
    service = backend.service
    job_id = service.submit(steps(7, count=200, delay=0.05))
    wait_for(lambda: (service.view(job_id).progress or {}).get("step", 0) >= 2)
    asked = time.monotonic()
    assert service.cancel(job_id)
    view = service.wait(job_id, timeout=10)
    assert view.state == CANCELLED and view.result is None
    assert time.monotonic() - asked < 2.0   # steps are 0.05 s; the poll is 0.1 s
    follow = service.submit(steps(8))
    assert service.wait(follow, timeout=10).state == DONE
    time.sleep(0.3)
    assert backend.runs.count(7) == 1
    assert not service.cancel(job_id)        # finished: nothing to cancel


def test_interrupt_keeps_what_was_made_and_skip_ends_the_batch(backend: Backend) -> None:
    service = backend.service
    job_id = service.submit(steps(3, count=200, delay=0.05))
    wait_for(lambda: (service.view(job_id).progress or {}).get("step", 0) >= 2)
    assert service.interrupt(job_id)
    view = service.wait(job_id, timeout=10)
    assert view.state == DONE and view.result["stopped"] == "interrupted"
    assert 2 <= view.result["steps_done"] < 200
    skipped = service.submit(steps(4, count=200, delay=0.05))
    wait_for(lambda: (service.view(skipped).progress or {}).get("step", 0) >= 1)
    assert service.skip(skipped)
    assert service.wait(skipped, timeout=10).result["stopped"] == "skipped"


def test_a_request_takes_effect_at_the_next_step(backend: Backend) -> None:
    """Steps of 10 ms, far shorter than the progress poll: the interrupt is still read at the
    next step (the worker checks the queue's keys at every step)."""
    service = backend.service
    job_id = service.submit(steps(11, count=1000, delay=0.01))
    wait_for(lambda: (service.view(job_id).progress or {}).get("step", 0) >= 5)
    asked = time.monotonic()
    assert service.interrupt(job_id)
    result = service.wait(job_id, timeout=20).result
    assert result["stopped"] == "interrupted"
    late = [moment for moment in result["finished_at"] if moment > asked]
    assert len(late) <= 1, f"{len(late)} steps finished after the request"


def test_failure_carries_its_message_and_status(backend: Backend) -> None:
    job_id = backend.service.submit(steps(5, fail="Checkpoint 'x' not found"))
    view = backend.service.wait(job_id, timeout=10)
    assert view.state == FAILED
    assert view.error == "Checkpoint 'x' not found" and view.error_status == 422
    with pytest.raises(JobError) as raised:
        view.raise_for_failure()
    assert raised.value.status == 422


def test_events_arrive_in_order_and_resume_after_an_id(backend: Backend) -> None:
    service = backend.service
    job_id = service.submit(steps(9, count=6, delay=0.05))
    service.wait(job_id, timeout=20)
    events = service.events(job_id)
    names = [event.event for event in events]
    assert names[0] == "state" and events[0].data["state"] == QUEUED
    assert events[1].data["state"] == RUNNING
    assert names[-1] == DONE
    progress = [event.data["step"] for event in events if event.event == "progress"]
    assert progress == sorted(progress) and progress[-1] == 6
    middle = len(events) // 2
    assert service.events(job_id, after=events[middle].id) == events[middle + 1:]
    assert service.events(job_id, after=events[-1].id, timeout=0.2) == []


def test_events_wait_for_the_next_one(backend: Backend) -> None:
    service = backend.service
    job_id = service.submit(steps(10, count=4, delay=0.1))
    seen: list[str] = []
    after = None
    deadline = time.monotonic() + 20
    while DONE not in seen and time.monotonic() < deadline:
        for event in service.events(job_id, after, timeout=1.0):
            seen.append(event.event)
            after = event.id
    assert seen[-1] == DONE and "progress" in seen


def test_duplicate_ids_and_a_full_queue_are_refused(backend: Backend) -> None:
    service = backend.service
    running = service.submit(steps(1, count=100, delay=0.05), task_id="task(mine-1)")
    assert running == "task(mine-1)"
    with pytest.raises(DuplicateJobError):
        service.submit(steps(2), task_id="task(mine-1)")
    wait_for(lambda: service.view(running).state == RUNNING)
    backend.limit["waiting"] = 2
    service.submit(steps(3))
    service.submit(steps(4))
    with pytest.raises(QueueFullError) as raised:
        service.submit(steps(5))
    assert raised.value.limit == 2 and raised.value.retry_after >= 1
    service.cancel(running)


def test_unknown_ids(backend: Backend) -> None:
    service = backend.service
    assert service.view("task(nope)") is None
    assert not service.cancel("task(nope)") and not service.interrupt("task(nope)")
    assert service.events("task(nope)") == []


def test_interrupt_sent_while_queued_applies_when_it_starts(backend: Backend) -> None:
    service = backend.service
    first = service.submit(steps(1, count=10, delay=0.05))
    second = service.submit(steps(2, count=50, delay=0.05))
    assert service.interrupt(second)
    assert service.wait(first, timeout=10).result["steps_done"] == 10
    view = service.wait(second, timeout=10)
    assert view.state == DONE and view.result["steps_done"] == 0


def test_waiting_from_many_threads(backend: Backend) -> None:
    service = backend.service
    ids = [service.submit(steps(seed, count=2)) for seed in range(6)]
    results: dict[str, Any] = {}

    def wait(job_id: str) -> None:
        results[job_id] = service.wait(job_id, timeout=30).result["seed"]

    threads = [threading.Thread(target=wait, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[job_id] for job_id in ids] == list(range(6))
