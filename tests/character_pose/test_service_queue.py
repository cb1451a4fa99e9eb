"""The character-pose service in front of a Redis queue: the API-only front (`--queue`) draws
characters and re-poses them on a separate worker process (`launch.py --worker`), through the
same HTTP API it uses on one machine; a pose batch is drawn on the worker and its images are
stored by the front."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import redis
import requests

from tests.character_pose.test_service_server import API, CHARACTER, pixels, write_models
from tests.redis_server import start_redis
from tests.server_process import ROOT, start_app_server, stop_app_server


@pytest.fixture(scope="module")
def queued_service(tmp_path_factory):
    redis_server = start_redis(tmp_path_factory.mktemp("redis"))
    worker_data = tmp_path_factory.mktemp("worker")
    write_models(worker_data)
    log = open(worker_data / "worker.log", "w", encoding="utf-8")
    worker = subprocess.Popen(
        [sys.executable, "launch.py", "--skip-prepare-environment", "--data-dir",
         str(worker_data), "--worker", "--queue", redis_server.url, "--worker-name", "gpu-1"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    front_data = tmp_path_factory.mktemp("front")
    write_models(front_data)
    front = start_app_server(front_data, args=("--nowebui", "--queue", redis_server.url))
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield front.base_url, client
    finally:
        client.close()
        stop_app_server(front)
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
        redis_server.stop()


def test_characters_are_drawn_and_reposed_on_the_worker(queued_service):
    base, client = queued_service
    made = requests.post(base + f"{API}/characters", json=CHARACTER, timeout=300)
    assert made.status_code == 200, made.text
    knight = made.json()
    assert f"Seed: {knight['seed']}" in knight["infotext"]
    renders = [requests.post(base + f"{API}/characters/{knight['id']}/pose",
                             json={"pose_id": "running"}, timeout=300).json()
               for _ in range(2)]
    for render in renders:
        assert "ControlNet 0:" in render["infotext"]
        assert f"Seed: {knight['seed']}" in render["infotext"]
    assert np.array_equal(pixels(renders[0]["image"]), pixels(renders[1]["image"]))
    ran_on = {client.hget(f"sd:job:{job_id}", "worker") for job_id in client.zrange("sd:index",
                                                                                   0, -1)}
    assert ran_on == {"gpu-1"}
    history = requests.get(base + f"{API}/characters/{knight['id']}/history", timeout=30).json()
    assert [r["pose_id"] for r in history][-2:] == ["running", "running"]



def test_a_batch_runs_on_the_worker_and_its_images_land_in_the_history(queued_service):
    base, client = queued_service
    knight = requests.post(base + f"{API}/characters", json=CHARACTER, timeout=300).json()
    queued = requests.post(base + f"{API}/characters/{knight['id']}/poses",
                           json={"pose_ids": ["standing", "waving"]}, timeout=30)
    assert queued.status_code == 202, queued.text
    deadline = time.monotonic() + 300
    while (status := requests.get(base + queued.json()["status_url"], timeout=30).json()
           )["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status["state"] == "done", status
    assert client.hget(f"sd:job:{status['id']}", "worker") == "gpu-1"
    images = status["result"]["images"]
    single = requests.post(base + f"{API}/characters/{knight['id']}/pose",
                           json={"pose_id": "waving"}, timeout=300).json()
    assert np.array_equal(pixels(images[1]), pixels(single["image"]))
    deadline = time.monotonic() + 30
    while True:     # the front stores the batch's images once it has seen the job end
        history = requests.get(base + f"{API}/characters/{knight['id']}/history",
                               timeout=30).json()
        if len(history) == 3:
            break
        assert time.monotonic() < deadline, history
        time.sleep(0.2)
    assert sorted(r["pose_id"] for r in history) == ["standing", "waving", "waving"]
    stored = requests.get(base + history[0]["image_url"], timeout=30)
    assert stored.status_code == 200
