"""Ten concurrent POST /sdapi/v1/txt2img calls from threads: every one returns with its own seed,
none is lost, and the single worker runs them one at a time."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from modules.api.app import create_api_app
from tests.api.test_api_inprocess import FakeRunner, make_ctx


class CountingRunner(FakeRunner):
    """Records how many generations overlap (the device has one owner: at most 1)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def __call__(self, params, ctx):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            return super().__call__(params, ctx)
        finally:
            with self.lock:
                self.active -= 1


def test_ten_concurrent_txt2img_calls_each_get_their_own_seed(tmp_path):
    ctx = make_ctx(["--nowebui", "--api"], tmp_path / "config.json")
    runner = CountingRunner(step_delay=0.01)
    seeds = list(range(100, 110))
    try:
        with TestClient(create_api_app(ctx, txt2img_runner=runner)) as client:
            def call(seed: int) -> tuple[int, dict]:
                response = client.post("/sdapi/v1/txt2img", json={
                    "prompt": f"image {seed}", "seed": seed, "steps": 3, "width": 8,
                    "height": 8})
                return response.status_code, response.json()

            with ThreadPoolExecutor(max_workers=10) as pool:
                results = list(pool.map(call, seeds))
    finally:
        ctx.jobs.shutdown()
    for seed, (status, body) in zip(seeds, results):
        assert status == 200, body
        info = json.loads(body["info"])
        assert info["seed"] == seed and info["all_seeds"] == [seed]
        assert info["prompt"] == f"image {seed}" and len(body["images"]) == 1
    assert sorted(params.seed for params, _ in runner.seen) == seeds   # none lost or repeated
    assert runner.max_active == 1
    assert len(ctx.jobs.recent_finished_ids()) == 10
