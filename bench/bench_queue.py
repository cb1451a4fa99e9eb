"""Benchmark: the Redis queue's scaling and its cost per job, with a stand-in pipeline.

    venv/bin/python bench/bench_queue.py [--jobs 30] [--steps 10] [--step-ms 20]
                                         [--latency-jobs 200]

A real redis-server is started on a loopback port. Workers are separate processes
(`tests/jobs/stub_jobs.py`: a job sleeps `step-ms` per step and reports each step, like the real
pipeline). Reported:
- throughput of 1, 2 and 3 workers on `jobs` jobs queued at once, and the speed-up over one
  worker (near-linear is 2.0 and 3.0: the stand-in does not compete for the CPU);
- the per-job overhead of the Redis path: submit-to-result latency of a zero-step job, one at a
  time, through Redis with one worker minus the same through the in-process queue (target
  <= 20 ms).
Not a test.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modules.jobs.local_service import InProcessJobService  # noqa: E402
from modules.jobs.queue import JobQueue  # noqa: E402
from modules.jobs.redis_service import RedisJobService  # noqa: E402
from modules.jobs.service import DONE, JobService, JobSpec  # noqa: E402
from tests.jobs.stub_jobs import steps_handler  # noqa: E402
from tests.redis_server import start_redis  # noqa: E402


def start_workers(url: str, count: int) -> list[subprocess.Popen]:
    workers = []
    for index in range(count):
        process = subprocess.Popen(
            [sys.executable, "tests/jobs/stub_jobs.py", url, f"bench-{index}", "5"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert process.stdout.readline().strip() == "worker ready"
        workers.append(process)
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for process in workers:
        process.kill()
        process.wait()


def throughput(service: JobService, jobs: int, steps: int, step_ms: float) -> float:
    started = time.perf_counter()
    ids = [service.submit(JobSpec("steps", {"seed": seed, "steps": steps,
                                            "delay": step_ms / 1000}))
           for seed in range(jobs)]
    for job_id in ids:
        assert service.wait(job_id, timeout=600).state == DONE
    return jobs / (time.perf_counter() - started)


def latencies(service: JobService, count: int) -> list[float]:
    times = []
    for seed in range(count):
        started = time.perf_counter()
        view = service.wait(service.submit(JobSpec("steps", {"seed": seed, "steps": 0})),
                            timeout=60)
        times.append(time.perf_counter() - started)
        assert view.state == DONE
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--latency-jobs", type=int, default=200)
    args = parser.parse_args()
    seconds_per_job = args.steps * args.step_ms / 1000
    print(f"stand-in job: {args.steps} steps x {args.step_ms:g} ms = {seconds_per_job:.2f} s")

    with tempfile.TemporaryDirectory() as folder:
        server = start_redis(Path(folder))
        try:
            rates = {}
            for count in (1, 2, 3):
                server.flush()
                service = RedisJobService(server.url)
                workers = start_workers(server.url, count)
                try:
                    throughput(service, 3, 1, 1)           # warm: groups, connections
                    rates[count] = throughput(service, args.jobs, args.steps, args.step_ms)
                finally:
                    stop_workers(workers)
                    service.close()
                print(f"{count} worker(s): {rates[count]:.2f} jobs/s "
                      f"(x{rates[count] / rates[1]:.2f} of one worker; ideal "
                      f"{count / seconds_per_job:.2f} jobs/s)")

            server.flush()
            service = RedisJobService(server.url)
            workers = start_workers(server.url, 1)
            try:
                latencies(service, 10)
                redis_times = latencies(service, args.latency_jobs)
            finally:
                stop_workers(workers)
                service.close()
        finally:
            server.stop()

    queue = JobQueue()
    local = InProcessJobService(queue, {"steps": steps_handler()})
    latencies(local, 10)
    local_times = latencies(local, args.latency_jobs)
    queue.shutdown()
    redis_ms = statistics.median(redis_times) * 1000
    local_ms = statistics.median(local_times) * 1000
    print(f"zero-step job, submit to result (median of {args.latency_jobs}): Redis "
          f"{redis_ms:.2f} ms, in-process {local_ms:.2f} ms; Redis path overhead "
          f"{redis_ms - local_ms:.2f} ms per job (target <= 20 ms); p95 Redis "
          f"{statistics.quantiles(redis_times, n=20)[-1] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
