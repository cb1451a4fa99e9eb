"""The API-only server as a user starts it: `launch.py --nowebui --api --ckpt FILE`, real uvicorn."""
from __future__ import annotations

import base64
import io
import json
import shutil
import time

import pytest
import requests
from PIL import Image

from tests.integration.conftest import KINDS
from tests.server_process import start_app_server, stop_app_server

INFO_KEYS = ["prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed",
             "all_seeds", "subseed", "all_subseeds", "subseed_strength", "width", "height",
             "sampler_name", "cfg_scale", "steps", "batch_size", "restore_faces",
             "face_restoration_model", "sd_model_name", "sd_model_hash", "sd_vae_name",
             "sd_vae_hash", "seed_resize_from_w", "seed_resize_from_h", "denoising_strength",
             "extra_generation_params", "index_of_first_image", "infotexts", "styles",
             "job_timestamp", "clip_skip", "is_using_inpainting_conditioning", "version"]


@pytest.fixture(scope="module")
def server(tiny_data_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("server-data")
    ckpt_dir = data / "models" / "Stable-diffusion"
    shutil.copytree(tiny_data_dir / "models" / "Stable-diffusion", ckpt_dir)
    (ckpt_dir / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": trunc")
    running = start_app_server(data, args=("--nowebui", "--api", "--ckpt",
                                           str(ckpt_dir / "tiny-sd1.safetensors"),
                                           "--some-extension-flag"))
    yield running.base_url, data
    stop_app_server(running)


def txt2img(base, **payload):
    payload.setdefault("steps", 3)
    payload.setdefault("width", 64)
    payload.setdefault("height", 64)
    return requests.post(base + "/sdapi/v1/txt2img", json=payload, timeout=600)


@pytest.mark.parametrize("kind", KINDS)
def test_txt2img_per_architecture(server, kind):
    base, _ = server
    payload = dict(prompt="a cat", seed=99, sampler_name="Euler a",
                   override_settings={"sd_model_checkpoint": f"tiny-{kind}"})
    first, second = txt2img(base, **payload), txt2img(base, **payload)
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) >= {"images", "parameters", "info"}
    assert isinstance(body["info"], str)
    info = json.loads(body["info"])
    assert list(info) == INFO_KEYS
    assert info["sd_model_name"] == f"tiny-{kind}"
    assert info["all_seeds"] == [99]
    png = base64.b64decode(body["images"][0])
    assert second.json()["images"][0] == body["images"][0], "same seed must give the same image"
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (64, 64)
        assert image.info["parameters"] == info["infotexts"][0]
    assert "Seed: 99" in info["infotexts"][0]
    assert body["parameters"]["prompt"] == "a cat"


def test_listings(server):
    base, _ = server
    models = requests.get(base + "/sdapi/v1/sd-models", timeout=30).json()
    titles = [m["title"] for m in models]
    assert any(t.startswith("tiny-sd1.safetensors") for t in titles)
    assert set(models[0]) >= {"title", "model_name", "hash", "sha256", "filename", "config"}
    samplers = requests.get(base + "/sdapi/v1/samplers", timeout=30).json()
    assert samplers[0]["name"] == "DPM++ 2M" and len(samplers) == 20
    schedulers = requests.get(base + "/sdapi/v1/schedulers", timeout=30).json()
    assert [s["name"] for s in schedulers][:3] == ["automatic", "uniform", "karras"]
    options = requests.get(base + "/sdapi/v1/options", timeout=30).json()
    assert options["samples_format"] == "png"
    assert options["sd_model_checkpoint"].startswith("tiny-sd1.safetensors")
    docs = requests.get(base + "/docs", timeout=30)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = requests.get(base + "/openapi.json", timeout=30).json()
    assert "/sdapi/v1/txt2img" in schema["paths"]


def test_bad_input_gets_a_clear_answer(server):
    base, _ = server
    for bad in ({"steps": 0}, {"width": -64}):
        response = txt2img(base, prompt="x", **bad)
        assert response.status_code == 422, response.text
        assert "detail" in response.json()
    response = requests.post(base + "/sdapi/v1/txt2img", data="{not json",
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 422


def test_corrupt_checkpoint_is_named_and_previous_model_stays(server):
    base, _ = server
    assert txt2img(base, prompt="x", seed=1).status_code == 200
    response = txt2img(base, prompt="x", seed=1,
                       override_settings={"sd_model_checkpoint": "broken"})
    assert 400 <= response.status_code < 600 and response.status_code != 200
    assert "broken.safetensors" in response.text
    again = txt2img(base, prompt="x", seed=1)
    assert again.status_code == 200, again.text


# GET routes of a1111-compat.md §2 and the keys each answer carries (real server, real files)
LIST_ROUTES = {
    "sd-models": {"title", "model_name", "hash", "sha256", "filename", "config"},
    "samplers": {"name", "aliases", "options"},
    "schedulers": {"name", "label", "aliases", "default_rho", "need_inner_model"},
    "upscalers": {"name", "model_name", "model_path", "model_url", "scale"},
    "latent-upscale-modes": {"name"},
    "sd-vae": None, "hypernetworks": None, "face-restorers": None, "realesrgan-models": None,
    "prompt-styles": None, "loras": None, "script-info": None, "extensions": None,
}


def test_every_listing_route_answers_with_a1111_shapes(server):
    base, _ = server
    for route, keys in LIST_ROUTES.items():
        body = requests.get(f"{base}/sdapi/v1/{route}", timeout=30).json()
        assert isinstance(body, list), (route, body)
        if keys is not None:
            assert body and all(set(item) >= keys for item in body), (route, body[:1])
    assert set(requests.get(base + "/sdapi/v1/embeddings", timeout=30).json()) == {"loaded",
                                                                                   "skipped"}
    scripts = requests.get(base + "/sdapi/v1/scripts", timeout=30).json()
    assert set(scripts) == {"txt2img", "img2img"} and "prompt matrix" in scripts["txt2img"]
    memory = requests.get(base + "/sdapi/v1/memory", timeout=30).json()
    assert memory["ram"]["total"] > memory["ram"]["free"] > 0
    flags = requests.get(base + "/sdapi/v1/cmd-flags", timeout=30).json()
    assert flags["nowebui"] is True and flags["api"] is True
    progress = requests.get(base + "/sdapi/v1/progress", timeout=30).json()
    assert set(progress) >= {"progress", "eta_relative", "state", "current_image", "textinfo"}
    assert requests.get(base + "/internal/pending-tasks", timeout=30).json() == {"size": 0,
                                                                                 "tasks": []}
    for route in ("refresh-checkpoints", "refresh-vae", "refresh-loras", "refresh-embeddings"):
        assert requests.post(f"{base}/sdapi/v1/{route}", timeout=30).status_code == 200, route


def test_png_info_and_extras_on_a_generated_image(server):
    base, _ = server
    generated = txt2img(base, prompt="info please", seed=5).json()
    info = requests.post(base + "/sdapi/v1/png-info", json={"image": generated["images"][0]},
                         timeout=30).json()
    assert info["parameters"]["Prompt"] == "info please" and info["parameters"]["Seed"] == "5"
    extras = requests.post(base + "/sdapi/v1/extra-single-image", timeout=60, json={
        "image": generated["images"][0], "upscaler_1": "Lanczos", "upscaling_resize": 2}).json()
    with Image.open(io.BytesIO(base64.b64decode(extras["image"]))) as image:
        assert image.size == (128, 128)
    assert "Lanczos" in extras["html_info"]


def test_v2_job_runs_on_the_real_model(server):
    base, _ = server
    submitted = requests.post(base + "/sdapi/v2/jobs", timeout=30, json={
        "type": "txt2img", "request": {"prompt": "queued", "seed": 11, "steps": 3, "width": 64,
                                       "height": 64}})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    deadline = time.time() + 300
    while time.time() < deadline:
        status = requests.get(f"{base}/sdapi/v2/jobs/{job_id}", timeout=30).json()
        if status["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.2)
    assert status["state"] == "done", status
    assert json.loads(status["result"]["info"])["all_seeds"] == [11]


def test_remaining_routes_answer_with_a1111_shapes(server):
    base, _ = server
    post = lambda route, body=None: requests.post(f"{base}{route}", json=body, timeout=120)
    image = txt2img(base, prompt="i2i", seed=2).json()["images"][0]
    i2i = post("/sdapi/v1/img2img", {"init_images": [image], "denoising_strength": 0.5,
                                     "steps": 3, "width": 64, "height": 64, "seed": 3})
    assert i2i.status_code == 200, i2i.text
    assert json.loads(i2i.json()["info"])["denoising_strength"] == 0.5
    assert i2i.json()["parameters"]["init_images"] is None
    batch = post("/sdapi/v1/extra-batch-images", {
        "imageList": [{"data": image, "name": "a"}, {"data": image, "name": "b"}],
        "upscaler_1": "Nearest", "upscaling_resize": 1.5}).json()
    assert len(batch["images"]) == 2 and isinstance(batch["html_info"], str)
    interrogate = post("/sdapi/v1/interrogate", {"image": image, "model": "clip"})
    assert interrogate.status_code == 404 and "detail" in interrogate.json()
    for route in ("/sdapi/v1/create/embedding", "/sdapi/v1/create/hypernetwork",
                  "/sdapi/v1/train/embedding", "/sdapi/v1/train/hypernetwork"):
        answer = post(route, {"name": "x"})
        assert answer.status_code == 200 and isinstance(answer.json()["info"], str), route
    assert post("/sdapi/v1/unload-checkpoint").json() == {}
    assert post("/sdapi/v1/reload-checkpoint").json() == {}
    assert post("/sdapi/v1/options", {"jpeg_quality": 81}).json() is None
    assert requests.get(base + "/sdapi/v1/options", timeout=30).json()["jpeg_quality"] == 81
    assert post("/sdapi/v1/interrupt").json() == {}
    assert post("/sdapi/v1/skip").json() is None
    # the model is usable again after unload / reload
    assert txt2img(base, prompt="i2i", seed=2).json()["images"][0] == image
    # server routes exist only with --api-server-stop
    assert post("/sdapi/v1/server-stop").status_code == 404
