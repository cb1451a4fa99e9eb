"""Admission checks in-process (FastAPI TestClient over the real app context and a tiny
checkpoint): every request far above a server limit is refused at once with a message naming the
field, the value, the limit and the setting; nothing is queued; the next normal request works and
memory does not grow."""
from __future__ import annotations

import base64
import io
import json
import re
import time

import psutil
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from tests.oversized_requests import (NORMAL_TXT2IMG, detail_text, huge_png,
                                      oversized_requests, raw_json_body, small_png_b64)
from tests.server_process import ROOT
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

GIB = 1024 ** 3


def make_context(data_dir, *extra_args: str):
    ckpt_dir = data_dir / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if not (ckpt_dir / "tiny-sd1.safetensors").exists():
        write_tiny_checkpoint(ckpt_dir / "tiny-sd1.safetensors", "sd1", seed=1)
    args, _ = parse_args(["--data-dir", str(data_dir), "--skip-load-model-at-start", *extra_args])
    return build_app_context(args, ROOT)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("admission"))
    ctx.options.set("samples_save", False)
    client = TestClient(create_api_app(ctx))
    yield client, ctx
    ctx.close()


def send(client: TestClient, case, body: bytes | None):
    if body is not None:
        return client.post(case.path, content=body, headers={"Content-Type": "application/json"})
    return client.post(case.path, json=case.json)


def test_each_oversized_request_is_refused_at_once_and_the_next_one_works(api):
    client, ctx = api
    process = psutil.Process()
    warm = client.post("/sdapi/v1/txt2img", json=NORMAL_TXT2IMG)
    assert warm.status_code == 200, warm.text
    rss_before = process.memory_info().rss
    for case in oversized_requests():
        submitted_before = len(ctx.jobs.recent_finished_ids())
        body = raw_json_body(case.body_bytes) if case.body_bytes else None   # built untimed
        started = time.monotonic()
        answer = send(client, case, body)
        elapsed = time.monotonic() - started
        del body
        assert answer.status_code == case.status, (case.name, answer.status_code, answer.text[:300])
        detail = detail_text(answer.json())
        for expected in case.says:
            assert expected in detail, (case.name, detail)
        assert elapsed < 2.0, f"{case.name} took {elapsed:.1f} s to refuse"
        assert len(ctx.jobs.recent_finished_ids()) == submitted_before, f"{case.name} was queued"
        assert ctx.jobs.pending_ids() == []
        after = client.post("/sdapi/v1/txt2img", json={**NORMAL_TXT2IMG, "seed": 12})
        assert after.status_code == 200, (case.name, after.text)
        assert after.json()["parameters"]["seed"] == 12
        grown = process.memory_info().rss - rss_before
        assert grown < 1 * GIB, f"RSS grew {grown / GIB:.2f} GiB after {case.name}"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_an_image_between_the_limit_and_pils_own_guard_is_refused_from_its_header(api):
    """100 megapixels: below PIL's decompression-bomb error, above the 64 MP default."""
    client, _ = api
    image = base64.b64encode(huge_png(10000, 10000)).decode()
    answer = client.post("/sdapi/v1/img2img", json={**NORMAL_TXT2IMG, "init_images": [image]})
    assert answer.status_code == 422
    assert "init_images[0] 10000x10000 (100.0 megapixels)" in answer.json()["detail"]
    answer = client.post("/sdapi/v1/extra-batch-images", json={
        "imageList": [{"data": small_png_b64(), "name": "a"}, {"data": image, "name": "b"}],
        "upscaling_resize": 2, "upscaler_1": "Lanczos"})
    assert answer.status_code == 422 and "imageList[1]" in answer.json()["detail"]


def test_hires_target_and_extras_output_sizes_are_checked(api):
    client, _ = api
    answer = client.post("/sdapi/v1/txt2img", json={
        **NORMAL_TXT2IMG, "width": 2048, "height": 2048, "enable_hr": True, "hr_scale": 4})
    assert answer.status_code == 422
    assert "hires width 8192" in answer.json()["detail"]
    answer = client.post("/sdapi/v1/extra-single-image", json={
        "image": small_png_b64((4096, 16)), "upscaling_resize": 8, "upscaler_1": "Lanczos"})
    assert answer.status_code == 422
    assert "upscaled size 32768x128" in answer.json()["detail"]
    # an ordinary hires request goes through the same checks and runs
    answer = client.post("/sdapi/v1/txt2img", json={
        **NORMAL_TXT2IMG, "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent"})
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    assert image.size == (96, 96)


def test_a_v2_job_is_refused_before_it_is_queued(api):
    client, ctx = api
    answer = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "request": {
        **NORMAL_TXT2IMG, "steps": 10000000}})
    assert answer.status_code == 422 and "steps 10000000" in answer.json()["detail"]
    assert ctx.jobs.pending_ids() == []


def test_limits_are_settings_the_api_cannot_raise_and_flags_tighten_them(tmp_path):
    ctx = make_context(tmp_path, "--max-steps", "20")
    try:
        client = TestClient(create_api_app(ctx))
        answer = client.post("/sdapi/v1/txt2img", json={**NORMAL_TXT2IMG, "steps": 30})
        assert answer.status_code == 422
        assert "--max-steps 20 on the command line" in answer.json()["detail"]
        # a client cannot raise a limit through the API (it is left alone, as A1111 does with
        # the settings it restricts)
        client.post("/sdapi/v1/options", json={"limit_steps": 100000, "limit_image_side": 1e9})
        assert ctx.options.get("limit_steps") == 500
        assert ctx.options.get("limit_image_side") == 4096
        # the owner lowers one in Settings (here: the options object the Settings tab writes)
        ctx.options.set("limit_image_side", 1024)
        answer = client.post("/sdapi/v1/txt2img", json={**NORMAL_TXT2IMG, "width": 1536})
        assert answer.status_code == 422
        assert "setting 'limit_image_side' in Settings → Server limits" in answer.json()["detail"]
    finally:
        ctx.close()


def test_a_job_the_machine_cannot_hold_is_refused_before_it_is_queued(api):
    """Within every size limit, but 32 images of 4096x4096 at once need far more memory than
    this machine has (the loaded model's footprint, against what is free)."""
    client, ctx = api
    assert client.post("/sdapi/v1/txt2img", json=NORMAL_TXT2IMG).status_code == 200  # loaded
    started = time.monotonic()
    answer = client.post("/sdapi/v1/txt2img", json={
        **NORMAL_TXT2IMG, "width": 4096, "height": 4096, "batch_size": 32})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert re.search(r"Not enough memory for sampling 32 image\(s\) of 4096x4096: it needs "
                     r"about [\d.]+ GB, [\d.]+ GB are free", detail), detail
    assert time.monotonic() - started < 2.0 and ctx.jobs.pending_ids() == []


def test_a_job_past_the_time_limit_returns_what_it_has_and_says_why(api):
    client, ctx = api
    ctx.options.set("limit_job_seconds", 1)
    try:
        started = time.monotonic()
        answer = client.post("/sdapi/v1/txt2img", json={
            **NORMAL_TXT2IMG, "steps": 500, "width": 256, "height": 256, "n_iter": 3})
        elapsed = time.monotonic() - started
    finally:
        ctx.options.set("limit_job_seconds", 0)
    assert answer.status_code == 200, answer.text
    info = json.loads(answer.json()["info"])
    assert "time limit of 1 s" in info["comments"] and "limit_job_seconds" in info["comments"]
    assert len(answer.json()["images"]) <= 1 and elapsed < 30
    # the next job runs normally, without the comment
    answer = client.post("/sdapi/v1/txt2img", json=NORMAL_TXT2IMG)
    assert "comments" not in json.loads(answer.json()["info"])
