"""Several machines, on one: a real redis-server, a front (`launch.py --nowebui --queue`) and three
`launch.py --worker` processes on tiny checkpoints. Jobs from v1 and v2 run once each with their
own seeds, go to the worker that has their checkpoint, stream resumable events through the front,
and a Redis outage is a 503 that clears when Redis is back."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from tests.redis_server import RedisServer, start_redis
from tests.server_process import ROOT, AppServer, start_app_server, stop_app_server

WORKERS = {"w1": "tiny-sd1", "w2": "tiny-sd1", "w3": "tiny-b"}


def data_dir_with_checkpoints(base: Path, source: Path) -> Path:
    ckpt_dir = base / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    shutil.copy(source / "models" / "Stable-diffusion" / "tiny-sd1.safetensors", ckpt_dir)
    shutil.copy(source / "models" / "Stable-diffusion" / "tiny-sd1.safetensors",
                ckpt_dir / "tiny-b.safetensors")
    return base


def start_worker(data: Path, url: str, name: str, checkpoint: str) -> subprocess.Popen:
    log = open(data / "worker.log", "w", encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "launch.py", "--skip-prepare-environment", "--data-dir", str(data),
         "--worker", "--queue", url, "--worker-name", name, "--worker-heartbeat", "3",
         "--ckpt", str(data / "models" / "Stable-diffusion" / f"{checkpoint}.safetensors")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def cluster(tiny_data_dir, tmp_path_factory):
    redis_server = start_redis(tmp_path_factory.mktemp("redis"))
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    workers = {}
    front = None
    try:
        for name, checkpoint in WORKERS.items():
            data = data_dir_with_checkpoints(tmp_path_factory.mktemp(name), tiny_data_dir)
            workers[name] = start_worker(data, redis_server.url, name, checkpoint)
        front_data = data_dir_with_checkpoints(tmp_path_factory.mktemp("front"), tiny_data_dir)
        front = start_app_server(front_data, args=(
            "--nowebui", "--queue", redis_server.url, "--ckpt",
            str(front_data / "models" / "Stable-diffusion" / "tiny-sd1.safetensors")))
        deadline = time.monotonic() + 180
        while True:   # each worker's heartbeat names its loaded checkpoint
            beats = [client.get(f"sd:worker:{name}") for name in WORKERS]
            if all(beat and json.loads(beat)["checkpoint"] for beat in beats):
                break
            for name, process in workers.items():
                assert process.poll() is None, f"worker {name} exited"
            assert time.monotonic() < deadline, "the workers did not load their checkpoints"
            time.sleep(0.3)
        cluster = Cluster(front.base_url, client, redis_server, workers, front)
        yield cluster
        front = cluster.front
    finally:
        if front is not None:
            stop_app_server(front)
        for process in workers.values():
            process.terminate()
        for process in workers.values():
            process.wait(timeout=30)
        client.close()
        redis_server.stop()


@dataclass
class Cluster:
    base: str                                   # the front's URL
    client: redis.Redis
    server: RedisServer
    workers: dict[str, subprocess.Popen]
    front: AppServer

    def restart_front(self) -> None:
        data = self.front.data_dir
        stop_app_server(self.front)
        self.front = start_app_server(data, args=(
            "--nowebui", "--queue", self.server.url, "--ckpt",
            str(data / "models" / "Stable-diffusion" / "tiny-sd1.safetensors")))
        self.base = self.front.base_url


def finished_status(base: str, job_id: str, timeout: float = 300) -> dict:
    """The v2 status of a job once it has ended."""
    deadline = time.monotonic() + timeout
    while True:
        status = requests.get(f"{base}/sdapi/v2/jobs/{job_id}", timeout=30).json()
        if status["state"] not in ("queued", "running"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def request_for(seed: int, **extra) -> dict:
    return {"prompt": f"a cat {seed}", "seed": seed, "steps": 3, "width": 64, "height": 64,
            "sampler_name": "Euler", **extra}


def test_jobs_for_a_checkpoint_go_to_the_worker_that_has_it(cluster):
    """First, while every worker still has its start-up checkpoint."""
    base, client = cluster.base, cluster.client
    ids = []
    for seed in range(300, 306):
        answer = requests.post(base + "/sdapi/v2/jobs", timeout=30, json={
            "type": "txt2img", "request": request_for(
                seed, override_settings={"sd_model_checkpoint": "tiny-b"})})
        ids.append(answer.json()["id"])
    for job_id in ids:
        status = finished_status(base, job_id)
        assert json.loads(status["result"]["info"])["sd_model_name"] == "tiny-b"
        assert client.hget(f"sd:job:{job_id}", "worker") == "w3"


def test_thirty_jobs_from_v1_and_v2_each_run_once(cluster):
    base, client = cluster.base, cluster.client

    def v1(seed: int) -> dict:
        response = requests.post(base + "/sdapi/v1/txt2img", timeout=300, json=request_for(
            seed, force_task_id=f"task(v1-{seed})"))
        assert response.status_code == 200, response.text
        return json.loads(response.json()["info"])

    v2_ids = {}
    for seed in range(200, 215):
        answer = requests.post(base + "/sdapi/v2/jobs", timeout=30,
                               json={"type": "txt2img", "request": request_for(seed)})
        assert answer.status_code == 202, answer.text
        v2_ids[seed] = answer.json()["id"]
    with ThreadPoolExecutor(max_workers=15) as pool:
        infos = list(pool.map(v1, range(100, 115)))
    assert [info["seed"] for info in infos] == list(range(100, 115))
    assert all(info["sd_model_name"] == "tiny-sd1" for info in infos)
    for seed, job_id in v2_ids.items():
        status = finished_status(base, job_id)
        assert status["state"] == "done", status
        assert json.loads(status["result"]["info"])["seed"] == seed
    ids = [f"task(v1-{seed})" for seed in range(100, 115)] + list(v2_ids.values())
    deliveries = [client.hget(f"sd:job:{job_id}", "deliveries") for job_id in ids]
    assert deliveries == ["1"] * 30
    # the pool shared the work (w3, with tiny-b loaded, helps once jobs have waited 10 s)
    ran_on = {client.hget(f"sd:job:{job_id}", "worker") for job_id in ids}
    assert {"w1", "w2"} <= ran_on


def read_events(url: str, last_event_id: str | None = None) -> list[tuple[str, str, dict]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events, event_id, name = [], None, None
    with requests.get(url, headers=headers, stream=True, timeout=300) as response:
        assert response.status_code == 200
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((event_id, name, json.loads(line[6:])))
                event_id = None
    return events


def test_events_through_the_front_resume_after_last_event_id(cluster):
    base = cluster.base
    answer = requests.post(base + "/sdapi/v2/jobs", timeout=30,
                           json={"type": "txt2img", "request": request_for(400, steps=8)})
    job_id = answer.json()["id"]
    events = read_events(f"{base}/sdapi/v2/jobs/{job_id}/events")
    names = [name for _, name, _ in events]
    assert names[-1] == "done" and "progress" in names
    steps = [data["step"] for _, name, data in events if name == "progress"]
    assert steps == sorted(steps) and steps[-1] == 8
    assert json.loads(events[-1][2]["result"]["info"])["seed"] == 400
    with_ids = [event for event in events if event[0]]
    middle = len(with_ids) // 2
    resumed = read_events(f"{base}/sdapi/v2/jobs/{job_id}/events", with_ids[middle][0])
    assert [event for event in resumed if event[0]] == with_ids[middle + 1:]


def test_settings_set_on_the_front_apply_on_every_worker(cluster):
    base, client = cluster.base, cluster.client
    assert requests.post(base + "/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2},
                         timeout=30).status_code == 200
    try:
        ids = [requests.post(base + "/sdapi/v2/jobs", timeout=30, json={
            "type": "txt2img", "request": request_for(seed)}).json()["id"]
            for seed in range(600, 606)]
        workers = set()
        for job_id in ids:
            status = finished_status(base, job_id)
            assert "Clip skip: 2" in json.loads(status["result"]["info"])["infotexts"][0]
            workers.add(client.hget(f"sd:job:{job_id}", "worker"))
        assert len(workers) >= 2
    finally:
        requests.post(base + "/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 1},
                      timeout=30)


def wait_running(client, job_id: str, step: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        progress = client.hget(f"sd:job:{job_id}", "progress")
        if progress and json.loads(progress)["step"] >= step:
            return
        assert time.monotonic() < deadline, "the job did not get going"
        time.sleep(0.05)


def test_cancel_of_a_running_job_stops_it_for_good(cluster):
    base, client = cluster.base, cluster.client
    job_id = requests.post(base + "/sdapi/v2/jobs", timeout=30, json={
        "type": "txt2img", "request": request_for(700, steps=500)}).json()["id"]
    wait_running(client, job_id, 3)
    cancelled = requests.delete(f"{base}/sdapi/v2/jobs/{job_id}", timeout=60)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    step = json.loads(client.hget(f"sd:job:{job_id}", "progress") or '{"step": 0}')["step"]
    assert step < 500
    time.sleep(4)   # longer than the heartbeat timeout: nothing hands it out again
    assert client.hget(f"sd:job:{job_id}", "deliveries") == "1"
    assert requests.get(f"{base}/sdapi/v2/jobs/{job_id}", timeout=30).json()["state"] == \
        "cancelled"


def test_a_worker_killed_mid_job_leaves_it_to_another(cluster):
    base, client = cluster.base, cluster.client
    processes = cluster.workers
    job_id = requests.post(base + "/sdapi/v2/jobs", timeout=30, json={
        "type": "txt2img", "request": request_for(800, steps=500)}).json()["id"]
    wait_running(client, job_id, 3)
    victim = client.hget(f"sd:job:{job_id}", "worker")
    processes[victim].kill()
    processes[victim].wait()
    status = finished_status(base, job_id)
    assert status["state"] == "done"
    assert json.loads(status["result"]["info"])["seed"] == 800
    assert client.hget(f"sd:job:{job_id}", "worker") != victim
    assert client.hget(f"sd:job:{job_id}", "deliveries") == "2"


def test_a_restarted_front_keeps_its_queued_jobs(cluster):
    ids = [requests.post(cluster.base + "/sdapi/v2/jobs", timeout=30, json={
        "type": "txt2img", "request": request_for(seed, steps=20)}).json()["id"]
        for seed in range(900, 910)]
    cluster.restart_front()
    for seed, job_id in zip(range(900, 910), ids):
        status = finished_status(cluster.base, job_id)
        assert status["state"] == "done"
        assert json.loads(status["result"]["info"])["seed"] == seed


def test_redis_down_is_a_503_and_jobs_flow_when_it_is_back(cluster):
    base, redis_server = cluster.base, cluster.server
    redis_server.stop()
    try:
        refused = requests.post(base + "/sdapi/v1/txt2img", json=request_for(500), timeout=60)
        assert refused.status_code == 503
        assert "cannot be reached" in refused.json()["detail"]
        progress = requests.get(base + "/sdapi/v2/jobs", timeout=60)
        assert progress.status_code == 503
    finally:
        redis_server.start()
    deadline = time.monotonic() + 60
    while True:   # the workers notice within a second or two
        answer = requests.post(base + "/sdapi/v1/txt2img", json=request_for(501), timeout=300)
        if answer.status_code == 200:
            break
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.5)
    assert json.loads(answer.json()["info"])["seed"] == 501


def test_a_front_whose_queue_cannot_be_reached_says_so(tmp_path):
    from tests.server_process import free_port
    url = f"redis://:pa55word@127.0.0.1:{free_port()}/0"
    finished = subprocess.run(
        [sys.executable, "launch.py", "--skip-prepare-environment", "--data-dir", str(tmp_path),
         "--nowebui", "--port", str(free_port()), "--queue", url],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 1
    output = finished.stdout + finished.stderr
    assert "cannot be reached" in output and "pa55word" not in output
