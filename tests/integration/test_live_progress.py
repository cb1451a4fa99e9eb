"""Live progress on real tiny checkpoints: monotone progress to 1.0, previews with every method,
interrupt / skip at A1111's bar, the progress endpoints, and the face-restoration hook."""
from __future__ import annotations

import base64
import io
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.app import create_api_app
from modules.processing.context import UnsupportedRequestError
from modules.processing.params import GenerationParams
from modules.processing.pipeline import run_generation
from modules.processing.previews import vae_approx_dir
from modules.processing.txt2img import Txt2ImgMode
from tests.engine.test_taesd import write_tiny_taesd

TIMEOUT = 300
SETTINGS = {"sd_model_checkpoint": "tiny-sd1", "samples_save": False, "grid_save": False,
            "return_grid": False, "live_previews_enable": True, "show_progress_every_n_steps": 2,
            "show_progress_type": "Approx cheap", "show_progress_grid": True}


def _submit(app_ctx, settings: dict | None = None, mode=None, **fields):
    params = GenerationParams(prompt="live", seed=5, width=64, height=64, sampler_name="Euler",
                              **fields)
    overrides = {**SETTINGS, **(settings or {})}

    def run(progress):
        with app_ctx.options.override(overrides):
            return run_generation(params, app_ctx.processing_context(progress),
                                  mode or Txt2ImgMode())

    return app_ctx.jobs.submit("txt2img", run)


def _wait_until(condition, job, timeout: float = TIMEOUT) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert not job.finished, "the job ended before the condition held"
        assert time.time() < deadline, "timed out"
        time.sleep(0.002)


def test_progress_rises_monotonically_to_one_with_previews_mid_job(app_ctx):
    samples: list[tuple[float, bool]] = []
    job = _submit(app_ctx, steps=16, n_iter=2)

    def poll():
        while not job.finished:
            progress = job.progress
            samples.append((progress.progress_fraction(), progress.current_image is not None))
            time.sleep(0.003)

    poller = threading.Thread(target=poll)
    poller.start()
    processed = job.wait(TIMEOUT)
    poller.join(TIMEOUT)
    fractions = [fraction for fraction, _ in samples]
    assert len(processed.images) == 2
    assert fractions == sorted(fractions)
    assert any(0 < f < 1 for f in fractions)
    assert any(has_preview and f < 0.9 for f, has_preview in samples)   # a preview mid-job
    assert job.progress.progress_fraction() == 1.0
    assert job.progress.state_dict()["sampling_step"] == 16
    # every 2 steps of 16, in both batches; the cheap preview is latent-sized
    assert job.progress.id_live_preview == 16
    assert job.progress.current_image.size == (8, 8)


@pytest.fixture
def taesd_in_models(app_ctx):
    """A tiny SD TAESD decoder whose output is pure blue, in <models>/VAE-approx."""
    path = write_tiny_taesd(vae_approx_dir(app_ctx.paths) / "taesd_decoder.safetensors",
                            output_bias=(0.0, 0.0, 1.0))
    yield path
    path.unlink()


@pytest.mark.parametrize("method, checkpoint, size", [
    ("Approx cheap", "tiny-sd1", (8, 8)), ("Approx NN", "tiny-sd1", (8, 8)),
    ("Approx cheap", "tiny-sdxl", (8, 8)), ("Full", "tiny-sd1", (64, 64)),
    ("TAESD", "tiny-sd1", (64, 64))])
def test_each_preview_method_renders_during_the_job(app_ctx, taesd_in_models, method,
                                                     checkpoint, size):
    job = _submit(app_ctx, {"show_progress_type": method, "show_progress_every_n_steps": 1,
                            "sd_model_checkpoint": checkpoint}, steps=3)
    processed = job.wait(TIMEOUT)
    preview = job.progress.current_image
    assert job.progress.id_live_preview == 3 and preview.size == size
    if method == "TAESD":
        assert preview.getpixel((10, 20)) == (0, 0, 255)
    if method == "Full":
        # Euler's last x0 estimate is the final latent: the last full preview is the result
        difference = np.abs(np.asarray(preview, dtype=int) - np.asarray(processed.images[0],
                                                                       dtype=int))
        assert difference.max() <= 2


def test_interrupt_ends_a_50_step_job_within_two_steps(app_ctx):
    job = _submit(app_ctx, steps=50, n_iter=2)
    _wait_until(lambda: job.progress.sampling_step >= 3, job)
    step_at_interrupt = job.progress.sampling_step
    app_ctx.jobs.interrupt_current()
    processed = job.wait(TIMEOUT)
    assert job.progress.sampling_step <= step_at_interrupt + 2
    assert job.progress.job_no == 0            # the second batch never started
    assert len(processed.images) == 1 and processed.images[0].size == (64, 64)
    assert "Seed: 5," in processed.infotexts[0]


def test_skip_in_three_batches_returns_the_other_images(app_ctx):
    job = _submit(app_ctx, steps=30, n_iter=3)
    _wait_until(lambda: job.progress.job_no == 1 and job.progress.sampling_step >= 2, job)
    app_ctx.jobs.skip_current()
    processed = job.wait(TIMEOUT)
    assert len(processed.images) == 2
    assert ["Seed: 5," in processed.infotexts[0], "Seed: 7," in processed.infotexts[1]] == \
        [True, True]
    assert job.progress.progress_fraction() == 1.0


class InterruptAfterFirstBatch(Txt2ImgMode):
    """Interrupt arrives between batches: after the first one is finished."""

    def __init__(self) -> None:
        self.sampled_batches: list[int] = []

    def sample(self, run, batch):
        self.sampled_batches.append(batch.index)
        return super().sample(run, batch)

    def finish_images(self, run, batch, images):
        run.progress.interrupt()
        return images


def test_interrupt_between_batches_keeps_the_finished_batch(app_ctx):
    mode = InterruptAfterFirstBatch()
    processed = _submit(app_ctx, mode=mode, steps=3, n_iter=3).wait(TIMEOUT)
    assert mode.sampled_batches == [0]
    assert len(processed.images) == 1 and processed.all_seeds == [5, 6, 7]


def test_interrupting_a_queued_job_returns_no_images_without_sampling(app_ctx):
    started, release = threading.Event(), threading.Event()
    blocker = app_ctx.jobs.submit("txt2img", lambda progress: started.set() or release.wait(60))
    assert started.wait(TIMEOUT)
    queued = _submit(app_ctx, steps=20, n_iter=2)
    assert app_ctx.jobs.interrupt(queued.id)
    release.set()
    blocker.wait(TIMEOUT)
    processed = queued.wait(TIMEOUT)
    assert processed.images == [] and queued.progress.sampling_step == 0
    assert queued.progress.current_image is None


def _decode_png(encoded: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert image.format == "PNG"
    return image


def test_progress_endpoints_show_the_live_preview(app_ctx):
    client = TestClient(create_api_app(app_ctx, ui_mode=True))
    task_id = "task(txt2img-LIVE001)"
    results: dict = {}

    def generate():
        results["response"] = client.post("/sdapi/v1/txt2img", json={
            "prompt": "live", "seed": 9, "steps": 200, "width": 64, "height": 64,
            "sampler_name": "Euler", "force_task_id": task_id, "override_settings": SETTINGS})

    worker = threading.Thread(target=generate)
    worker.start()
    try:
        deadline = time.time() + TIMEOUT
        body = client.get("/sdapi/v1/progress").json()
        while body.get("current_image") is None and time.time() < deadline:
            time.sleep(0.01)
            body = client.get("/sdapi/v1/progress").json()
        assert body["current_task"] == task_id and 0.01 < body["progress"] < 1
        assert _decode_png(body["current_image"]).size == (8, 8)
        assert client.get("/sdapi/v1/progress",
                          params={"skip_current_image": True}).json()["current_image"] is None

        first = client.post("/internal/progress", json={"id_task": task_id}).json()
        assert first["active"] is True
        assert first["live_preview"].startswith("data:image/png;base64,")
        again = client.post("/internal/progress",
                            json={"id_task": task_id,
                                  "id_live_preview": first["id_live_preview"]}).json()
        # the same preview is not sent twice; a newer one comes with a newer id
        assert (again["live_preview"] is None) == \
            (again["id_live_preview"] == first["id_live_preview"])
        assert again["id_live_preview"] >= first["id_live_preview"]
    finally:
        client.post("/sdapi/v1/interrupt")
        worker.join(TIMEOUT)
    response = results["response"]
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 1


def test_restore_faces_without_a_restorer_is_a_400_before_sampling(app_ctx):
    client = TestClient(create_api_app(app_ctx))
    response = client.post("/sdapi/v1/txt2img", json={
        "prompt": "face", "steps": 2, "width": 64, "height": 64, "restore_faces": True,
        "override_settings": {"sd_model_checkpoint": "tiny-sd1"}})
    assert response.status_code == 400
    assert "no face restorer is installed" in response.text
    assert "models/Codeformer" in response.text and "codeformer-v0.1.0.pth" in response.text


def test_face_restoration_setting_applies_when_the_field_is_null(app_ctx):
    job = _submit(app_ctx, {"face_restoration": True}, steps=2)
    with pytest.raises(UnsupportedRequestError, match="no face restorer is installed"):
        job.wait(TIMEOUT)
    assert job.progress.sampling_step == 0
    # an explicit false in the request wins over the setting
    processed = _submit(app_ctx, {"face_restoration": True}, steps=1,
                        restore_faces=False).wait(TIMEOUT)
    assert len(processed.images) == 1 and not processed.restore_faces
