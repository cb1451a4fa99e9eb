"""A stand-in pipeline for the queue tests: a job of `steps` sampling steps that sleeps per step
and reports each one through JobProgress exactly as the real pipeline does (so interrupt, skip and
cancel act between steps). Run as a script it is a Redis worker process:
`python tests/jobs/stub_jobs.py REDIS_URL NAME [HEARTBEAT_TIMEOUT] [MAX_DELIVERIES]`."""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from modules.engine.sampling import SamplingInterrupted  # noqa: E402
from modules.jobs.progress import JobProgress  # noqa: E402
from modules.jobs.service import JobError, JobHandler  # noqa: E402


class RunLog:
    """Which job payloads started, in order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started: list[Any] = []

    def __call__(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self.started.append(payload.get("seed"))

    def count(self, seed: Any) -> int:
        with self._lock:
            return self.started.count(seed)


def steps_handler(record: Callable[[dict[str, Any]], None] = lambda payload: None) -> JobHandler:
    def handle(payload: dict[str, Any], progress: JobProgress) -> dict[str, Any]:
        record(payload)
        if payload.get("crash"):
            os._exit(3)  # a worker killed mid-job (by the OOM killer, say)
        if payload.get("fail"):
            raise JobError(payload["fail"], 422)
        steps, delay = int(payload.get("steps", 3)), float(payload.get("delay", 0.02))
        progress.begin(1)
        done = 0
        finished_at: list[float] = []      # time.monotonic() of each finished step
        try:
            for step in range(steps):
                time.sleep(delay)
                progress.on_sampling_step(step + 1, steps)
                done = step + 1
                finished_at.append(time.monotonic())
        except SamplingInterrupted as stop:
            return {"seed": payload.get("seed"), "steps_done": done, "stopped": str(stop),
                    "finished_at": finished_at}
        return {"seed": payload.get("seed"), "steps_done": done, "worker": payload.get("_worker")}

    return handle


def main(argv: list[str]) -> None:
    import redis

    from modules.jobs.redis_worker import RedisWorker

    url, name = argv[0], argv[1]
    timeout = float(argv[2]) if len(argv) > 2 else 1.0
    max_deliveries = int(argv[3]) if len(argv) > 3 else 3
    client = redis.Redis.from_url(url, decode_responses=True)

    def record(payload: dict[str, Any]) -> None:
        client.rpush("test:runs", f"{payload.get('seed')}@{name}")

    worker = RedisWorker(url, {"steps": steps_handler(record)}, name=name,
                         heartbeat_timeout=timeout, max_deliveries=max_deliveries)
    worker.start()
    print("worker ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
