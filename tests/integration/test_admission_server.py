"""Admission checks and the queue limit against the real API-only server (launch.py, uvicorn):
oversized requests are refused at once without touching the model or the memory, and a burst of
200 requests at a queue limit of 20 gets 429 + Retry-After beyond it while every accepted job
completes once, with its own seed."""
from __future__ import annotations

import base64
import io
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.engine.tiny_checkpoints import write_tiny_checkpoint
from tests.oversized_requests import (NORMAL_TXT2IMG, detail_text, oversized_requests,
                                      raw_json_body)
from tests.server_process import start_app_server, stop_app_server

GIB = 1024 ** 3
BURST = 200
QUEUE_LIMIT = 20


def server_rss(server) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("admission-server")
    ckpt_dir = data / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / "tiny-sd1.safetensors", "sd1", seed=1)
    running = start_app_server(data, args=("--nowebui", "--max-queue-size", str(QUEUE_LIMIT)))
    yield running
    stop_app_server(running)


def test_oversized_requests_are_refused_at_once(server):
    base = server.base_url
    warm = requests.post(base + "/sdapi/v1/txt2img", json=NORMAL_TXT2IMG, timeout=300)
    assert warm.status_code == 200, warm.text
    rss_before = server_rss(server)
    for case in oversized_requests():
        body = raw_json_body(case.body_bytes) if case.body_bytes else None   # built untimed
        started = time.monotonic()
        if body is not None:
            answer = requests.post(base + case.path, data=body,
                                   headers={"Content-Type": "application/json"}, timeout=30)
        else:
            answer = requests.post(base + case.path, json=case.json, timeout=30)
        elapsed = time.monotonic() - started
        del body
        assert answer.status_code == case.status, (case.name, answer.status_code,
                                                   answer.text[:300])
        detail = detail_text(answer.json())
        for expected in case.says:
            assert expected in detail, (case.name, detail)
        assert elapsed < 2.0, f"{case.name} took {elapsed:.1f} s to refuse"
        after = requests.post(base + "/sdapi/v1/txt2img", json={**NORMAL_TXT2IMG, "seed": 77},
                              timeout=300)
        assert after.status_code == 200, (case.name, after.text[:300])
        grown = server_rss(server) - rss_before
        assert grown < 1 * GIB, f"server RSS grew {grown / GIB:.2f} GiB after {case.name}"


def _post(base: str, seed: int) -> tuple[int, requests.Response]:
    payload = {**NORMAL_TXT2IMG, "seed": seed, "steps": 12, "save_images": True,
               "prompt": f"burst {seed}"}
    return seed, requests.post(base + "/sdapi/v1/txt2img", json=payload, timeout=600)


def test_a_burst_beyond_the_queue_limit_gets_429_and_loses_nothing(server):
    base = server.base_url
    seeds = list(range(5000, 5000 + BURST))
    with ThreadPoolExecutor(max_workers=BURST) as pool:
        answers = list(pool.map(lambda seed: _post(base, seed), seeds))

    accepted = {seed: answer for seed, answer in answers if answer.status_code == 200}
    refused = [answer for _, answer in answers if answer.status_code == 429]
    assert len(accepted) + len(refused) == BURST, \
        sorted({answer.status_code for _, answer in answers})
    print(f"{len(accepted)} accepted, {len(refused)} refused")
    assert refused, "the queue never filled"
    assert len(accepted) >= QUEUE_LIMIT + 1
    for answer in refused:
        assert int(answer.headers["Retry-After"]) >= 1
        assert f"the limit is {QUEUE_LIMIT}" in answer.json()["detail"]
    for seed, answer in accepted.items():
        image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
        assert f"Seed: {seed}," in image.info["parameters"]
        assert answer.json()["parameters"]["seed"] == seed

    # each accepted job saved exactly one image, with its own seed; refused ones saved nothing
    saved = sorted((server.data_dir / "outputs" / "txt2img-images").rglob("*.png"))
    saved_seeds = [int(re.search(r"-(\d+)", path.stem).group(1)) for path in saved
                   if "burst" in Image.open(path).info.get("parameters", "")]
    assert sorted(saved_seeds) == sorted(accepted), "a job was lost or ran twice"
