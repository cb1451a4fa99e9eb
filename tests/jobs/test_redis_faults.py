"""Redis queue faults with real processes: a worker killed with SIGKILL mid-job, jobs whose
workers keep dying (dead letter), model affinity, Redis going away and coming back, and a front
that restarts (a new service object over the same Redis)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from modules.jobs.redis_service import RedisJobService
from modules.jobs.redis_worker import RedisWorker
from modules.jobs.service import DONE, FAILED, RUNNING, JobSpec, QueueUnavailableError
from tests.jobs.stub_jobs import RunLog, steps_handler
from tests.redis_server import RedisServer, start_redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def redis_server(tmp_path) -> RedisServer:
    server = start_redis(tmp_path)
    yield server
    server.stop()


def start_worker_process(url: str, name: str, timeout: float = 1.0,
                         max_deliveries: int = 3) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "tests/jobs/stub_jobs.py", url, name, str(timeout), str(max_deliveries)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout.readline().strip() == "worker ready"
    return process


def runs(url: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.lrange("test:runs", 0, -1)
    finally:
        client.close()


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_a_killed_workers_job_completes_once_on_another(redis_server: RedisServer) -> None:
    url = redis_server.url
    service = RedisJobService(url)
    doomed = start_worker_process(url, "doomed")
    job_id = service.submit(JobSpec("steps", {"seed": 42, "steps": 100, "delay": 0.05}))
    wait_until(lambda: service.view(job_id).state == RUNNING)
    assert service.view(job_id).worker == "doomed"
    wait_until(lambda: (service.view(job_id).progress or {}).get("step", 0) >= 3)
    survivor = start_worker_process(url, "survivor")
    try:
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        killed_at = time.monotonic()
        view = service.wait(job_id, timeout=30)
        # the heartbeat expires after 1 s, the survivor looks every 0.5 s, the job takes 5 s
        assert time.monotonic() - killed_at < 1.0 + 0.5 + 5.0 + 3.0
        assert view.state == DONE and view.result["seed"] == 42
        assert view.worker == "survivor"
        time.sleep(1.5)   # a second claim would show up here
        assert runs(url) == ["42@doomed", "42@survivor"]
        assert service.dead_letters() == []
    finally:
        survivor.kill()
        survivor.wait()
        service.close()


def test_a_long_job_on_a_live_worker_is_not_taken_over(redis_server: RedisServer) -> None:
    url = redis_server.url
    service = RedisJobService(url)
    # the job runs 3 s, three times the heartbeat timeout; a second worker watches
    busy = RedisWorker(url, {"steps": steps_handler(RunLog())}, name="busy",
                       heartbeat_timeout=1.0).start()
    job_id = service.submit(JobSpec("steps", {"seed": 1, "steps": 30, "delay": 0.1}))
    wait_until(lambda: service.view(job_id).state == RUNNING)
    log = RunLog()
    idle = RedisWorker(url, {"steps": steps_handler(log)}, name="idle",
                       heartbeat_timeout=1.0).start()
    try:
        view = service.wait(job_id, timeout=30)
        assert view.state == DONE and view.worker == "busy"
        assert log.started == []
    finally:
        busy.stop()
        idle.stop()
        service.close()


def test_a_job_whose_workers_keep_dying_goes_to_the_dead_letter_list(
        redis_server: RedisServer) -> None:
    url = redis_server.url
    service = RedisJobService(url)
    job_id = service.submit(JobSpec("steps", {"seed": 5, "crash": True}))
    workers = []
    try:
        for index in range(3):   # max 2 deliveries: the third worker gives up on it
            workers.append(start_worker_process(url, f"w{index}", max_deliveries=2))
            if index < 2:
                wait_until(lambda: workers[-1].poll() is not None)
        view = service.wait(job_id, timeout=30)
        assert view.state == FAILED and "Given up after 2 deliveries" in view.error
        assert runs(url) == ["5@w0", "5@w1"]
        (letter,) = service.dead_letters()
        assert letter["id"] == job_id and letter["deliveries"] == 2
        assert JobSpec.from_json(letter["spec"]).payload["seed"] == 5
        # the queue goes on with other jobs
        after = service.submit(JobSpec("steps", {"seed": 6}))
        assert service.wait(after, timeout=20).state == DONE
    finally:
        for process in workers:
            process.kill()
            process.wait()
        service.close()


def test_jobs_go_to_the_worker_that_has_their_checkpoint(redis_server: RedisServer) -> None:
    url = redis_server.url
    service = RedisJobService(url)
    logs = {"a": RunLog(), "b": RunLog()}
    workers = [RedisWorker(url, {"steps": steps_handler(logs[name])}, name=f"has-{name}",
                           loaded_checkpoint=lambda name=name: f"model-{name}.safetensors",
                           heartbeat_timeout=1.0, affinity_wait_seconds=60).start()
               for name in ("a", "b")]
    try:
        time.sleep(0.3)  # both heartbeats are up
        ids = {}
        for seed in range(12):
            checkpoint = "model-a.safetensors" if seed % 3 else "model-b.safetensors"
            ids[seed] = service.submit(JobSpec("steps", {"seed": seed, "steps": 2},
                                               checkpoint=checkpoint))
        views = {seed: service.wait(job_id, timeout=30) for seed, job_id in ids.items()}
        assert all(view.state == DONE for view in views.values())
        assert sorted(logs["a"].started) == [seed for seed in range(12) if seed % 3]
        assert sorted(logs["b"].started) == [seed for seed in range(12) if not seed % 3]
        # a checkpoint nobody has loaded is taken by an idle worker
        other = service.submit(JobSpec("steps", {"seed": 99}, checkpoint="model-c.safetensors"))
        assert service.wait(other, timeout=20).state == DONE
    finally:
        for worker in workers:
            worker.stop()
        service.close()


def test_redis_down_is_a_clear_error_and_jobs_flow_when_it_is_back(
        redis_server: RedisServer) -> None:
    url = redis_server.url
    service = RedisJobService(url)
    worker = RedisWorker(url, {"steps": steps_handler(RunLog())}, heartbeat_timeout=1.0).start()
    try:
        queued = service.submit(JobSpec("steps", {"seed": 1}))
        assert service.wait(queued, timeout=20).state == DONE
        redis_server.stop()
        with pytest.raises(QueueUnavailableError) as raised:
            service.submit(JobSpec("steps", {"seed": 2}))
        assert f"127.0.0.1:{redis_server.port}" in str(raised.value)
        with pytest.raises(QueueUnavailableError):
            service.view(queued)
        redis_server.start()     # AOF: what was stored is back
        assert service.view(queued).result["seed"] == 1
        again = service.submit(JobSpec("steps", {"seed": 3}))
        assert service.wait(again, timeout=20).result["seed"] == 3
    finally:
        worker.stop()
        service.close()


def test_a_restarted_front_serves_the_jobs_queued_before(redis_server: RedisServer) -> None:
    url = redis_server.url
    front = RedisJobService(url)
    ids = [front.submit(JobSpec("steps", {"seed": seed, "steps": 2})) for seed in range(10)]
    front.close()
    restarted = RedisJobService(url)
    assert [restarted.view(job_id).position for job_id in ids] == list(range(1, 11))
    worker = RedisWorker(url, {"steps": steps_handler(RunLog())}, heartbeat_timeout=1.0).start()
    try:
        views = [restarted.wait(job_id, timeout=30) for job_id in ids]
        assert [view.result["seed"] for view in views] == list(range(10))
        assert restarted.job_ids() == ids
    finally:
        worker.stop()
        restarted.close()


def test_the_password_of_the_queue_url_is_never_shown() -> None:
    from modules.jobs.redis_store import redacted_url
    assert redacted_url("redis://:s3cret@10.0.0.5:6380/2") == "redis://***@10.0.0.5:6380/2"
    assert redacted_url("redis://app:s3cret@host/0") == "redis://app:***@host/0"
    assert redacted_url("redis://host:6379/0") == "redis://host:6379/0"
