"""/sdapi/v2/jobs in-process: submit, positions, Server-Sent Events, cancel, results, retention.
Processing is the slow fake runner of test_api_inprocess, so queue positions are observable."""
from __future__ import annotations

import base64
import io
import json
import time
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.app import create_api_app
from modules.api.errors import install_error_handlers
from modules.api.routes_jobs import JobRetention, jobs_router
from tests.api.test_api_inprocess import FakeRunner, make_ctx

TIMEOUT = 20


class PreviewingRunner(FakeRunner):
    """FakeRunner that also publishes a live preview at step 2, like the processing layer's
    preview renderer does through the step listener."""

    def __call__(self, params, ctx):
        progress = ctx.progress

        def on_step(step: int, total: int, latent) -> None:
            if step == 2:
                progress.set_current_image(Image.new("RGB", (8, 8), (255, 0, 0)))

        progress.set_step_listener(on_step)
        return super().__call__(params, ctx)


@pytest.fixture
def api(tmp_path):
    ctx = make_ctx(["--nowebui", "--api"], tmp_path / "config.json")
    runner = PreviewingRunner(step_delay=0.04)
    client = TestClient(create_api_app(ctx, txt2img_runner=runner))
    yield SimpleNamespace(client=client, ctx=ctx, runner=runner)
    ctx.jobs.shutdown()


def submit(client, prompt: str, steps: int, **extra) -> dict:
    request = {"prompt": prompt, "steps": steps, "width": 16, "height": 16, "seed": 7, **extra}
    response = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "request": request})
    assert response.status_code == 202, response.text
    return response.json()


def wait_for_state(client, job_id: str, states: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        status = client.get(f"/sdapi/v2/jobs/{job_id}").json()
        if status["state"] in states:
            return status
        time.sleep(0.02)
    raise AssertionError(f"{job_id} never reached {states}")


def read_events(client, job_id: str, last_event_id: str | None = None,
                with_ids: bool = False) -> list[tuple]:
    events = []
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with client.stream("GET", f"/sdapi/v2/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = event_id = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = line[len("id: "):]
            elif line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
                events.append((event_id, name, data) if with_ids else (name, data))
                event_id = None
    return events


def test_three_jobs_positions_events_cancel_and_results(api):
    client = api.client
    first = submit(client, "first", steps=25)
    assert set(first) >= {"id", "state", "position"} and first["id"].startswith("task(txt2img-")
    wait_for_state(client, first["id"], ("running",))
    second = submit(client, "second", steps=3, seed=200)
    third = submit(client, "third", steps=3)
    assert (second["state"], second["position"]) == ("queued", 1)
    assert (third["state"], third["position"]) == ("queued", 2)
    running = client.get(f"/sdapi/v2/jobs/{first['id']}").json()
    assert running["state"] == "running" and running["position"] == 0
    assert running["progress"]["total"] == 25 and running["result"] is None

    cancelled = client.delete(f"/sdapi/v2/jobs/{third['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert client.get(f"/sdapi/v2/jobs/{third['id']}").json()["state"] == "cancelled"

    events = read_events(client, first["id"])
    names = [name for name, _ in events]
    assert names[0] == "state" and names[-1] == "done"
    progress = [data for name, data in events if name == "progress"]
    assert len(progress) >= 3
    fractions = [event["fraction"] for event in progress]
    assert fractions == sorted(fractions) and fractions[-1] > fractions[0]
    previews = [event["preview"] for event in progress if event["preview"]]
    assert len(previews) == 1 and previews[0].startswith("data:image/png;base64,")
    done = events[-1][1]
    assert done["state"] == "done" and len(done["result"]["images"]) == 1

    second_done = wait_for_state(client, second["id"], ("done", "failed", "cancelled"))
    first_done = client.get(f"/sdapi/v2/jobs/{first['id']}").json()
    for status, prompt, seed in ((first_done, "first", 7), (second_done, "second", 200)):
        assert status["state"] == "done" and status["position"] is None
        result = status["result"]
        assert list(result) == ["images", "parameters", "info"]
        assert result["parameters"]["prompt"] == prompt
        info = json.loads(result["info"])
        assert info["prompt"] == prompt and info["seed"] == seed
        image = Image.open(io.BytesIO(base64.b64decode(result["images"][0])))
        assert image.size == (16, 16) and f"Seed: {seed}" in image.info["parameters"]
    # the cancelled job never reached processing
    assert [params.prompt for params, _ in api.runner.seen] == ["first", "second"]
    listed = client.get("/sdapi/v2/jobs").json()
    assert [item["id"] for item in listed] == [first["id"], second["id"], third["id"]]


def test_cancel_running_job_discards_its_result(api):
    job = submit(api.client, "long", steps=200)
    wait_for_state(api.client, job["id"], ("running",))
    response = api.client.delete(f"/sdapi/v2/jobs/{job['id']}")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    status = api.client.get(f"/sdapi/v2/jobs/{job['id']}").json()
    assert status["state"] == "cancelled" and status["result"] is None
    assert len(api.runner.seen) == 1   # it did start
    again = api.client.delete(f"/sdapi/v2/jobs/{job['id']}")
    assert again.status_code == 200 and again.json()["state"] == "cancelled"
    events = read_events(api.client, job["id"])
    # a client that connects late gets the whole log: queued, running, ..., cancelled
    names = [name for name, _ in events]
    assert names[:2] == ["state", "state"] and names[-1] == "cancelled"
    assert [data["state"] for _, data in events[:2]] == ["queued", "running"]


def test_events_resume_after_last_event_id(api):
    job = submit(api.client, "resumable", steps=6)
    wait_for_state(api.client, job["id"], ("done",))
    events = read_events(api.client, job["id"], with_ids=True)
    assert all(event_id for event_id, _, _ in events)
    assert [name for _, name, _ in events][-1] == "done"
    middle = len(events) // 2
    resumed = read_events(api.client, job["id"], last_event_id=events[middle][0], with_ids=True)
    assert resumed == events[middle + 1:]


def test_failed_job_reports_error_and_finished_job_cannot_be_cancelled(api):
    api.runner.raise_error = RuntimeError("the GPU caught fire")
    job = submit(api.client, "boom", steps=2)
    status = wait_for_state(api.client, job["id"], ("failed", "done"))
    assert status["state"] == "failed" and status["error"] == "the GPU caught fire"
    refused = api.client.delete(f"/sdapi/v2/jobs/{job['id']}")
    assert refused.status_code == 409 and "already failed" in refused.json()["detail"]


def test_submission_validation_and_unknown_ids(api):
    bad_steps = api.client.post("/sdapi/v2/jobs", json={"type": "txt2img",
                                                        "request": {"steps": 0}})
    assert bad_steps.status_code == 422
    assert "steps must be at least 1" in json.dumps(bad_steps.json())
    bad_type = api.client.post("/sdapi/v2/jobs", json={"type": "upscale", "request": {}})
    assert bad_type.status_code == 422
    no_image = api.client.post("/sdapi/v2/jobs", json={"type": "img2img", "request": {}})
    assert no_image.status_code == 404 and no_image.json()["detail"] == "Init image not found"
    for method, path in (("get", "/sdapi/v2/jobs/task(txt2img-NOPE123)"),
                         ("delete", "/sdapi/v2/jobs/task(txt2img-NOPE123)"),
                         ("get", "/sdapi/v2/jobs/task(txt2img-NOPE123)/events")):
        response = getattr(api.client, method)(path)
        assert response.status_code == 404
        assert response.json()["detail"] == "Job not found or expired"
    assert api.runner.seen == []


def test_force_task_id_names_the_job_and_duplicates_are_refused(api):
    job = submit(api.client, "named", steps=2, force_task_id="task(my-own-id)")
    assert job["id"] == "task(my-own-id)"
    assert wait_for_state(api.client, job["id"], ("done",))["result"]["info"]
    duplicate = api.client.post("/sdapi/v2/jobs", json={
        "type": "txt2img", "request": {"steps": 1, "force_task_id": "task(my-own-id)"}})
    assert duplicate.status_code == 409


def test_finished_jobs_expire_by_count_and_age(tmp_path):
    ctx = make_ctx(["--nowebui", "--api"], tmp_path / "config.json")
    offset = [0.0]
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(jobs_router(ctx, txt2img_runner=FakeRunner(),
                                   retention=JobRetention(max_age_seconds=60, max_count=2),
                                   clock=lambda: time.monotonic() + offset[0]))
    client = TestClient(app)
    try:
        ids = []
        for index in range(3):
            job = submit(client, f"job {index}", steps=1)
            wait_for_state(client, job["id"], ("done",))
            ids.append(job["id"])
        assert client.get(f"/sdapi/v2/jobs/{ids[0]}").status_code == 404   # over the count
        assert all(client.get(f"/sdapi/v2/jobs/{i}").status_code == 200 for i in ids[1:])
        offset[0] = 61.0
        expired = client.get(f"/sdapi/v2/jobs/{ids[2]}")
        assert expired.status_code == 404 and expired.json()["detail"] == "Job not found or expired"
    finally:
        ctx.jobs.shutdown()


def test_jobs_are_documented_in_openapi(api):
    schema = api.client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/sdapi/v2/jobs"]) == {"get", "post"}
    assert set(paths["/sdapi/v2/jobs/{job_id}"]) == {"get", "delete"}
    events = paths["/sdapi/v2/jobs/{job_id}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    post = paths["/sdapi/v2/jobs"]["post"]
    assert post["tags"] == ["jobs"] and post["summary"] and "202" in post["responses"]
    status_props = schema["components"]["schemas"]["JobStatus"]["properties"]
    assert {"id", "state", "position", "progress", "result", "error"} <= set(status_props)


def test_a_full_queue_answers_429_with_retry_after_for_v2_and_v1(tmp_path):
    from modules.jobs.queue import JobQueue

    ctx = make_ctx(["--nowebui", "--api"], tmp_path / "config.json")
    ctx.jobs.shutdown()
    ctx.options.set("limit_queue_size", 2)
    ctx.jobs = JobQueue(max_waiting=lambda: int(ctx.limits.value("limit_queue_size")))
    client = TestClient(create_api_app(ctx, txt2img_runner=FakeRunner(step_delay=0.05)))
    try:
        running = submit(client, "long", 60)
        wait_for_state(client, running["id"], ("running",))
        waiting = [submit(client, f"waiting {index}", 2) for index in range(2)]
        assert [job["position"] for job in waiting] == [1, 2]
        refused = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "request": {
            "prompt": "one too many", "steps": 2, "width": 16, "height": 16}})
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "The queue is full (2 jobs waiting, the limit is 2)" in refused.json()["detail"]
        v1 = client.post("/sdapi/v1/txt2img", json={"prompt": "v1 too", "steps": 2})
        assert v1.status_code == 429 and "Retry-After" in v1.headers
        assert len(client.get("/sdapi/v2/jobs").json()) == 3    # nothing else was queued
        for job in (running, *waiting):
            client.delete(f"/sdapi/v2/jobs/{job['id']}")
    finally:
        ctx.jobs.shutdown()
