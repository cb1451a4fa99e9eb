"""The A1111 API in-process (FastAPI TestClient) over in-memory fakes of the model side: the real
routes, models, job queue, sampler tables and image encoding; processing is a fake that returns
tiny images, so no checkpoint is needed."""
from __future__ import annotations

import base64
import io
import json
import threading
import time
from dataclasses import dataclass, field
import functools
from pathlib import Path
import tempfile
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modules.app.checkpoints import VaeRegistry
from modules.app.option_defs import default_option_definitions
from modules.app.paths import Paths
from modules.processing.styles import StyleDatabase
from modules.processing.upscalers import UpscalerRegistry
from modules.app.context import AppContext
from modules.api.app import create_api_app
from modules.app.checkpoints import CheckpointInfo
from modules.app.cmd_args import parse_args
from modules.app.model_manager import NoCheckpointError
from modules.app.options import OptionInfo, Options
from modules.app.server_limits import ServerLimits
from modules.scripting.callbacks import CallbackRegistry
from modules.scripting.host import ScriptHost
from modules.processing.memory_guard import MemoryGuard
from modules.engine.sampling import SamplingInterrupted
from modules.jobs.queue import JobQueue
from modules.processing.context import UnsupportedRequestError
from modules.processing.params import GenerationParams, Processed

INFO_KEYS = list(Processed.INFO_KEYS)
TIMEOUT = 10


def small_options(config_path) -> Options:
    """The real settings registry, with the settings these tests look at made predictable."""
    definitions = {**default_option_definitions(),
        "sd_model_checkpoint": OptionInfo(default="model-a.safetensors [aaaaaaaaaa]"),
        "samples_format": OptionInfo(default="png", choices=["png", "jpg", "jpeg", "webp"]),
        "enable_pnginfo": OptionInfo(default=True),
        "jpeg_quality": OptionInfo(default=80),
        "CLIP_stop_at_last_layers": OptionInfo(default=1, validate=clip_skip_in_range),
        "live_previews_enable": OptionInfo(default=True),
        "live_previews_image_format": OptionInfo(default="png"),
        "api_useragent": OptionInfo(default="", restrict_api=True),
    }
    return Options(definitions, config_path)


def clip_skip_in_range(value: int) -> int:
    if not 1 <= value <= 12:
        raise ValueError(f"CLIP_stop_at_last_layers must be 1..12, got {value}")
    return value


class CheckpointInfos:
    def __init__(self, checkpoints: list[CheckpointInfo]) -> None:
        self.checkpoints = checkpoints
        self.refreshed = 0

    def list(self) -> list[CheckpointInfo]:
        return list(self.checkpoints)

    def titles(self) -> list[str]:
        return [info.title for info in self.checkpoints]

    def refresh(self) -> None:
        self.refreshed += 1

    def get_closest(self, alias: str) -> CheckpointInfo | None:
        for info in self.checkpoints:
            if alias in (info.title, info.name, info.model_name, info.shorthash, info.sha256):
                return info
        return None


class FakeModelManager:
    def __init__(self) -> None:
        self.loaded: CheckpointInfo | None = None
        self.load_threads: list[str] = []

    def current_checkpoint(self) -> CheckpointInfo | None:
        return self.loaded

    def active_checkpoint(self, wanted: str | None) -> CheckpointInfo | None:
        return next((info for info in CHECKPOINTS if info.title == wanted), self.loaded)

    def current(self) -> None:
        return None     # no real model: the memory guard has nothing to measure

    def no_checkpoint_message(self) -> str:
        return "Put a checkpoint into /models/Stable-diffusion"

    def get(self, title: str) -> CheckpointInfo:
        self.load_threads.append(threading.current_thread().name)
        self.loaded = CHECKPOINTS[0] if title == CHECKPOINTS[0].title else CHECKPOINTS[1]
        return self.loaded


CHECKPOINTS = [
    CheckpointInfo("/models/Stable-diffusion/model-a.safetensors", "model-a.safetensors",
                   "model-a", "a" * 64, "aaaaaaaaaa"),
    CheckpointInfo("/models/Stable-diffusion/sub/model-b.safetensors", "sub/model-b.safetensors",
                   "sub_model-b", "b" * 64, "bbbbbbbbbb",
                   config="/models/Stable-diffusion/sub/model-b.yaml"),
]


@dataclass
class FakeRunner:
    """Stands in for run_txt2img: one small solid image per requested image, infotext built
    from the params it received, optional pacing through the progress callback."""
    step_delay: float = 0.0
    seen: list[tuple[GenerationParams, dict]] = field(default_factory=list)
    raise_error: Exception | None = None

    def __call__(self, params: GenerationParams, ctx: Any) -> Processed:
        self.seen.append((params, ctx.options.data_dict()))
        if self.raise_error is not None:
            raise self.raise_error
        progress = ctx.progress
        progress.begin(params.n_iter)
        for batch in range(params.n_iter):
            if batch:
                progress.next_job()
            try:
                for step in range(params.steps if self.step_delay else 0):
                    progress.on_sampling_step(step + 1, params.steps)
                    time.sleep(self.step_delay)
            except SamplingInterrupted:  # like processing: keep what was sampled, stop the loop
                if progress.interrupted:
                    break
        count = params.batch_size * params.n_iter
        seed = 1234 if params.seed == -1 else params.seed
        seeds = [seed + i for i in range(count)]
        width, height = (max(8, size - size % 8) for size in (params.width, params.height))
        infotexts = [f"{params.prompt}\nSteps: {params.steps}, Sampler: {params.sampler_name}, "
                     f"Seed: {s}, Size: {width}x{height}" for s in seeds]
        images = [Image.new("RGB", (width, height), (i * 40 % 256, 80, 160)) for i in range(count)]
        return Processed(
            images=images, prompt=params.prompt, all_prompts=[params.prompt] * count,
            negative_prompt=params.negative_prompt,
            all_negative_prompts=[params.negative_prompt] * count, seed=seed, all_seeds=seeds,
            subseed=5, all_subseeds=[5 + i for i in range(count)],
            subseed_strength=params.subseed_strength, width=width, height=height,
            sampler_name=params.sampler_name, cfg_scale=params.cfg_scale, steps=params.steps,
            batch_size=params.batch_size, restore_faces=False, face_restoration_model=None,
            sd_model_name="model-a", sd_model_hash="aaaaaaaaaa", sd_vae_name=None,
            sd_vae_hash=None, seed_resize_from_w=-1, seed_resize_from_h=-1,
            denoising_strength=params.denoising_strength,
            extra_generation_params={} if params.scheduler is None
            else {"Schedule type": params.scheduler},
            index_of_first_image=0, infotexts=infotexts, styles=[], job_timestamp="20240801120000",
            clip_skip=ctx.options.get("CLIP_stop_at_last_layers"),
            is_using_inpainting_conditioning=False, version="v1.10.1")


def make_ctx(argv: list[str], config_path=None) -> SimpleNamespace:
    args, _ = parse_args(argv)
    data_dir = Path(config_path).parent if config_path is not None else Path(tempfile.mkdtemp())
    args.data_dir = str(data_dir)
    paths = Paths.from_args(args, data_dir)
    ctx = SimpleNamespace(args=args, options=small_options(config_path),
                          checkpoints=CheckpointInfos(CHECKPOINTS),
                          model_manager=FakeModelManager(), jobs=JobQueue(),
                          upscalers=UpscalerRegistry(), paths=paths,
                          vaes=VaeRegistry(paths.vae_dir), styles=StyleDatabase(paths.styles_files))
    ctx.limits = ServerLimits(ctx.options, args)
    ctx.scripts = ScriptHost(CallbackRegistry())
    ctx.memory = MemoryGuard()
    ctx.processing_context = lambda progress: SimpleNamespace(options=ctx.options,
                                                              progress=progress)
    # the real switching logic (load on the job worker) over the fake model manager
    ctx.load_checkpoint = functools.partial(AppContext.load_checkpoint, ctx)
    for view in ("active_checkpoint", "shown_option", "shown_options", "admit_generation"):
        setattr(ctx, view, functools.partial(getattr(AppContext, view), ctx))
    return ctx


@pytest.fixture
def api(tmp_path):
    ctx = make_ctx(["--nowebui", "--api"], tmp_path / "config.json")
    runner = FakeRunner()
    client = TestClient(create_api_app(ctx, txt2img_runner=runner))
    yield SimpleNamespace(client=client, ctx=ctx, runner=runner)
    ctx.jobs.shutdown()


def decode_png(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
    image.load()
    return image


def assert_envelope(response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error", "detail", "body", "errors"]
    assert body["error"] == error
    return body


# -- txt2img --------------------------------------------------------------------------------------
def test_txt2img_response_shape_images_and_info(api):
    payload = {"prompt": "a photo of a cat", "negative_prompt": "blurry", "steps": 20,
               "sampler_name": "Euler a", "cfg_scale": 7, "width": 64, "height": 48, "seed": 1234,
               "batch_size": 2, "some_unknown_key": 1}
    response = api.client.post("/sdapi/v1/txt2img", json=payload)
    assert response.status_code == 200, response.text
    assert float(response.headers["X-Process-Time"]) >= 0
    body = response.json()
    assert list(body) == ["images", "parameters", "info"]
    info = json.loads(body["info"])
    assert list(info) == INFO_KEYS
    assert info["all_seeds"] == [1234, 1235] and info["sampler_name"] == "Euler a"
    assert len(body["images"]) == 2
    for index, text in enumerate(body["images"]):
        image = decode_png(text)
        assert image.format == "PNG" and image.size == (64, 48)
        assert image.info["parameters"] == info["infotexts"][index]
    assert "Seed: 1235" in decode_png(body["images"][1]).info["parameters"]
    assert "some_unknown_key" not in body["parameters"]
    # what processing received
    sent, _ = api.runner.seen[-1]
    assert sent.is_api and sent.do_not_save_samples and sent.do_not_save_grid
    assert (sent.width, sent.height, sent.batch_size) == (64, 48, 2)


# a1111-compat.md §12.1: the request and the `parameters` A1111 echoes for it
EXAMPLE_REQUEST = {"prompt": "a photo of a cat", "negative_prompt": "blurry", "steps": 20,
                   "sampler_name": "Euler a", "cfg_scale": 7, "width": 512, "height": 512,
                   "seed": 1234}
EXAMPLE_PARAMETERS = {
    "prompt": "a photo of a cat", "negative_prompt": "blurry", "styles": None, "seed": 1234,
    "subseed": -1, "subseed_strength": 0, "seed_resize_from_h": -1, "seed_resize_from_w": -1,
    "sampler_name": "Euler a", "scheduler": None, "batch_size": 1, "n_iter": 1, "steps": 20,
    "cfg_scale": 7.0, "width": 512, "height": 512, "restore_faces": None, "tiling": None,
    "do_not_save_samples": False, "do_not_save_grid": False, "eta": None,
    "denoising_strength": 0.75, "s_min_uncond": None, "s_churn": None, "s_tmax": None,
    "s_tmin": None, "s_noise": None, "override_settings": None,
    "override_settings_restore_afterwards": True, "refiner_checkpoint": None,
    "refiner_switch_at": None, "disable_extra_networks": False, "firstpass_image": None,
    "comments": None, "enable_hr": False, "firstphase_width": 0, "firstphase_height": 0,
    "hr_scale": 2.0, "hr_upscaler": None, "hr_second_pass_steps": 0, "hr_resize_x": 0,
    "hr_resize_y": 0, "hr_checkpoint_name": None, "hr_sampler_name": None, "hr_scheduler": None,
    "hr_prompt": "", "hr_negative_prompt": "", "force_task_id": None, "sampler_index": "Euler",
    "script_name": None, "script_args": [], "send_images": True, "save_images": False,
    "alwayson_scripts": {}, "infotext": None}


def test_txt2img_parameters_echo_matches_a1111(api):
    body = api.client.post("/sdapi/v1/txt2img", json=EXAMPLE_REQUEST).json()
    assert list(body["parameters"].items()) == list(EXAMPLE_PARAMETERS.items())
    assert isinstance(body["parameters"]["cfg_scale"], float)
    schema = api.client.get("/openapi.json").json()["components"]["schemas"]
    request_schema = next(value for key, value in schema.items() if "Txt2Img" in key)
    assert list(request_schema["properties"]) == list(EXAMPLE_PARAMETERS)


def test_txt2img_defaults_sampler_fallbacks_and_send_images(api):
    response = api.client.post("/sdapi/v1/txt2img", json={"prompt": "x", "send_images": False})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["images"] == []
    info = json.loads(body["info"])
    assert info["sampler_name"] == "Euler" and info["steps"] == 50  # API defaults (§10.3)
    assert (info["width"], info["height"], info["cfg_scale"]) == (512, 512, 7.0)

    unknown = api.client.post("/sdapi/v1/txt2img", json={"sampler_name": "No Such Sampler",
                                                           "steps": 2, "width": 8, "height": 8})
    assert json.loads(unknown.json()["info"])["sampler_name"] == "DPM++ 2M"
    assert unknown.json()["parameters"]["sampler_name"] == "No Such Sampler"  # echo of request

    legacy = api.client.post("/sdapi/v1/txt2img", json={"sampler_name": "Euler a Karras",
                                                          "steps": 2, "width": 8, "height": 8})
    sent, _ = api.runner.seen[-1]
    assert (sent.sampler_name, sent.scheduler) == ("Euler a", "Karras")
    extra = json.loads(legacy.json()["info"])["extra_generation_params"]
    assert extra == {"Schedule type": "Karras"}

    api.client.post("/sdapi/v1/txt2img", json={"sampler_name": "DPM++ 2M Karras", "steps": 2,
                                               "width": 8, "height": 8})
    sent, _ = api.runner.seen[-1]
    assert (sent.sampler_name, sent.scheduler) == ("DPM++ 2M", None)


@pytest.mark.parametrize("bad, message", [
    ({"steps": 0}, "steps must be at least 1"),
    ({"width": -64}, "width and height must be at least 1"),
    ({"height": 0}, "width and height must be at least 1"),
    ({"batch_size": 0}, "batch_size and n_iter must be at least 1"),
    ({"n_iter": -1}, "batch_size and n_iter must be at least 1"),
    ({"steps": "many"}, "valid integer"),
])
def test_txt2img_validation_422(api, bad, message):
    response = api.client.post("/sdapi/v1/txt2img", json={"prompt": "x", **bad})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(message in item["msg"] for item in detail), detail
    assert api.runner.seen == []


def test_txt2img_non_finite_cfg_and_malformed_json(api):
    response = api.client.post("/sdapi/v1/txt2img", content='{"cfg_scale": NaN}',
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "cfg_scale must be a finite number" in response.text
    response = api.client.post("/sdapi/v1/txt2img", content="{not json",
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_override_settings_apply_inside_job_and_restore(api):
    response = api.client.post("/sdapi/v1/txt2img", json={
        "steps": 1, "width": 8, "height": 8,
        "override_settings": {"CLIP_stop_at_last_layers": 2, "sd_model_checkpoint": "sub_model-b",
                              "not_a_setting": 1}})
    assert response.status_code == 200, response.text
    _, options_seen = api.runner.seen[-1]
    assert options_seen["CLIP_stop_at_last_layers"] == 2
    assert options_seen["sd_model_checkpoint"] == CHECKPOINTS[1].title
    assert json.loads(response.json()["info"])["clip_skip"] == 2
    assert api.ctx.options.get("CLIP_stop_at_last_layers") == 1  # restored afterwards
    api.client.post("/sdapi/v1/txt2img", json={
        "steps": 1, "width": 8, "height": 8, "override_settings_restore_afterwards": False,
        "override_settings": {"CLIP_stop_at_last_layers": 3,
                              "sd_model_checkpoint": "no such model"}})
    _, options_seen = api.runner.seen[-1]
    assert options_seen["sd_model_checkpoint"] == CHECKPOINTS[0].title  # unknown one dropped
    assert api.ctx.options.get("CLIP_stop_at_last_layers") == 3
    bad = api.client.post("/sdapi/v1/txt2img", json={
        "steps": 1, "override_settings": {"CLIP_stop_at_last_layers": "two"}})
    body = assert_envelope(bad, 422, "HTTPException")
    assert "CLIP_stop_at_last_layers" in body["detail"]


def test_errors_use_the_envelope(api):
    api.runner.raise_error = NoCheckpointError(
        "No Stable Diffusion checkpoint found. Put a .safetensors checkpoint into "
        "/data/models/Stable-diffusion")
    response = api.client.post("/sdapi/v1/txt2img", json={"steps": 1})
    body = assert_envelope(response, 503, "NoCheckpointError")
    assert "/data/models/Stable-diffusion" in body["detail"]
    assert "/data/models/Stable-diffusion" in body["errors"]

    api.runner.raise_error = UnsupportedRequestError("Hires fix (enable_hr) is not available")
    body = assert_envelope(api.client.post("/sdapi/v1/txt2img", json={"enable_hr": True}), 400,
                           "UnsupportedRequestError")
    assert body["detail"] == "Hires fix (enable_hr) is not available"
    api.runner.raise_error = RuntimeError("the VAE produced NaNs")
    body = assert_envelope(api.client.post("/sdapi/v1/txt2img", json={"steps": 1}), 500,
                           "RuntimeError")
    assert body["errors"] == "the VAE produced NaNs"

    body = assert_envelope(api.client.get("/sdapi/v1/artists"), 404, "HTTPException")
    assert body["detail"] == "Not Found"
    body = assert_envelope(api.client.post("/sdapi/v1/txt2img",
                                           json={"script_name": "X/Y/Z plot"}), 422, "HTTPException")
    assert body["detail"] == "Script 'X/Y/Z plot' not found"
    body = assert_envelope(api.client.post("/sdapi/v1/txt2img", json={
        "alwayson_scripts": {"ControlNet": {"args": []}}}), 422, "HTTPException")
    assert body["detail"] == "always on script ControlNet not found"
    # the queue survives failed jobs
    api.runner.raise_error = None
    assert api.client.post("/sdapi/v1/txt2img", json={"steps": 1, "width": 8,
                                                      "height": 8}).status_code == 200


# -- listings, options, flags ---------------------------------------------------------------------
def test_listings(api):
    models = api.client.get("/sdapi/v1/sd-models").json()
    assert models == [
        {"title": "model-a.safetensors [aaaaaaaaaa]", "model_name": "model-a",
         "hash": "aaaaaaaaaa", "sha256": "a" * 64,
         "filename": "/models/Stable-diffusion/model-a.safetensors", "config": None},
        {"title": "sub/model-b.safetensors [bbbbbbbbbb]", "model_name": "sub_model-b",
         "hash": "bbbbbbbbbb", "sha256": "b" * 64,
         "filename": "/models/Stable-diffusion/sub/model-b.safetensors",
         "config": "/models/Stable-diffusion/sub/model-b.yaml"},
    ]
    samplers = api.client.get("/sdapi/v1/samplers").json()
    assert [s["name"] for s in samplers][:3] == ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE"]
    assert len(samplers) == 20 and samplers[0]["aliases"] == ["k_dpmpp_2m"]
    assert samplers[0]["options"]["scheduler"] == "karras"
    assert all(isinstance(v, str) for s in samplers for v in s["options"].values())
    schedulers = api.client.get("/sdapi/v1/schedulers").json()
    assert [s["name"] for s in schedulers][:3] == ["automatic", "uniform", "karras"]
    karras = schedulers[2]
    assert (karras["label"], karras["default_rho"]) == ("Karras", 7.0)
    assert karras["need_inner_model"] is False
    assert set(schedulers[0]) == {"name", "label", "aliases", "default_rho", "need_inner_model"}
    assert api.client.post("/sdapi/v1/refresh-checkpoints").json() is None
    assert api.ctx.checkpoints.refreshed == 1


def test_options_get_and_post(api):
    options = api.client.get("/sdapi/v1/options").json()
    assert options["samples_format"] == "png" and options["CLIP_stop_at_last_layers"] == 1
    response = api.client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2,
                                                          "samples_format": "jpg"})
    assert response.status_code == 200 and response.json() is None
    assert api.ctx.options.get("CLIP_stop_at_last_layers") == 2
    saved = json.loads(api.ctx.options.config_path.read_text())
    assert saved["CLIP_stop_at_last_layers"] == 2 and saved["samples_format"] == "jpg"
    # API-restricted settings are silently left alone (§4.7)
    assert api.client.post("/sdapi/v1/options", json={"api_useragent": "x"}).json() is None
    assert api.ctx.options.get("api_useragent") == ""

    body = assert_envelope(api.client.post("/sdapi/v1/options", json={"nope": 1}), 400, "HTTPException")
    assert "nope" in body["detail"]
    body = assert_envelope(api.client.post("/sdapi/v1/options",
                                           json={"sd_model_checkpoint": "missing.ckpt"}),
                           400, "HTTPException")
    assert body["detail"] == "model 'missing.ckpt' not found"
    # an invalid value rolls back what was set before it
    response = api.client.post("/sdapi/v1/options", json={"samples_format": "webp",
                                                          "CLIP_stop_at_last_layers": 99})
    body = assert_envelope(response, 422, "HTTPException")
    assert "CLIP_stop_at_last_layers" in body["detail"]
    assert api.ctx.options.get("samples_format") == "jpg"

    # switching the checkpoint loads it on the job worker, then records its title
    response = api.client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "bbbbbbbbbb"})
    assert response.status_code == 200, response.text
    assert api.ctx.options.get("sd_model_checkpoint") == CHECKPOINTS[1].title
    assert api.ctx.model_manager.loaded is CHECKPOINTS[1]
    assert api.ctx.model_manager.load_threads == ["job-worker"]


def test_cmd_flags_redacts_credentials():
    ctx = make_ctx(["--nowebui", "--api-auth", "alice:s3cret-pass", "--gradio-auth", "bob:hunter2"])
    client = TestClient(create_api_app(ctx, txt2img_runner=FakeRunner()))
    try:
        response = client.get("/sdapi/v1/cmd-flags", auth=("alice", "s3cret-pass"))
        assert response.status_code == 200
        flags = response.json()
        assert flags["nowebui"] is True and flags["port"] is None
        assert "s3cret" not in response.text and "hunter2" not in response.text
        assert flags["api_auth"] != "alice:s3cret-pass"
    finally:
        ctx.jobs.shutdown()


# -- auth -----------------------------------------------------------------------------------------
def test_api_auth():
    ctx = make_ctx(["--api-auth", "alice:pa:ss,bob:other"])
    client = TestClient(create_api_app(ctx, txt2img_runner=FakeRunner()))
    try:
        for path in ("/sdapi/v1/samplers", "/sdapi/v1/options", "/sdapi/v1/progress"):
            response = client.get(path)
            body = assert_envelope(response, 401, "HTTPException")
            assert body["detail"] == "Incorrect username or password"
            assert body["errors"] == "401: Incorrect username or password"
            assert response.headers["WWW-Authenticate"] == "Basic"
        assert client.get("/sdapi/v1/samplers", auth=("alice", "wrong")).status_code == 401
        assert client.get("/sdapi/v1/samplers", auth=("bob", "pa:ss")).status_code == 401
        assert client.post("/sdapi/v1/txt2img", json={"steps": 1}).status_code == 401
        assert client.get("/sdapi/v1/samplers", auth=("alice", "pa:ss")).status_code == 200
        assert client.get("/sdapi/v1/sd-models", auth=("bob", "other")).status_code == 200
        ok = client.post("/sdapi/v1/txt2img", json={"steps": 1, "width": 8, "height": 8},
                         auth=("bob", "other"))
        assert ok.status_code == 200 and len(ok.json()["images"]) == 1
        # unlike A1111, --api-auth covers /internal too (issue 4: every route)
        assert client.get("/internal/ping").status_code == 401
        assert client.get("/internal/ping", auth=("bob", "other")).json() == {}
    finally:
        ctx.jobs.shutdown()


# -- progress, interrupt, skip, internal routes ---------------------------------------------------
def test_idle_progress_and_controls(api):
    body = api.client.get("/sdapi/v1/progress").json()
    assert body["progress"] == 0 and body["eta_relative"] == 0
    assert body["state"]["job_count"] == 0 and body["current_task"] is None
    assert set(body["state"]) == {"skipped", "interrupted", "stopping_generation", "job",
                                  "job_count", "job_timestamp", "job_no", "sampling_step",
                                  "sampling_steps"}
    assert api.client.post("/sdapi/v1/interrupt").json() == {}
    assert api.client.post("/sdapi/v1/skip").json() is None
    assert api.client.get("/internal/ping").json() == {}
    assert api.client.get("/internal/pending-tasks").json() == {"size": 0, "tasks": []}
    # API-only mode has no /internal/progress (§1.1)
    assert api.client.post("/internal/progress", json={"id_task": "x"}).status_code in (404, 405)
    assert api.client.get("/docs").status_code == 200
    assert "/sdapi/v1/txt2img" in api.client.get("/openapi.json").json()["paths"]


def test_progress_while_a_job_runs_then_interrupt():
    ctx = make_ctx(["--api"])
    runner = FakeRunner(step_delay=0.02)
    client = TestClient(create_api_app(ctx, ui_mode=True, txt2img_runner=runner))
    results: dict[str, Any] = {}

    def generate():
        results["response"] = client.post("/sdapi/v1/txt2img", json={
            "steps": 400, "width": 8, "height": 8, "n_iter": 2,
            "force_task_id": "task(txt2img-ABCDEFG)"})

    worker = threading.Thread(target=generate)
    worker.start()
    try:
        deadline = time.time() + TIMEOUT
        body = client.get("/sdapi/v1/progress").json()
        while body["state"]["sampling_step"] < 3 and time.time() < deadline:
            time.sleep(0.02)
            body = client.get("/sdapi/v1/progress").json()
        assert body["current_task"] == "task(txt2img-ABCDEFG)"
        assert body["state"]["job_count"] == 2 and body["state"]["sampling_steps"] == 400
        assert 0.01 < body["progress"] < 0.5 and body["eta_relative"] > 0

        queued = ctx.jobs.submit("txt2img", lambda progress: "later")
        pending = client.get("/internal/pending-tasks").json()
        assert pending == {"size": 1, "tasks": [queued.id]}
        waiting = client.post("/internal/progress", json={"id_task": queued.id}).json()
        assert waiting["active"] is False and waiting["queued"] is True
        assert waiting["textinfo"] == "In queue: 1/1" and waiting["id_live_preview"] == -1
        ctx.jobs.current().progress.set_current_image(Image.new("RGB", (8, 8), "red"))
        active = client.post("/internal/progress", json={"id_task": "task(txt2img-ABCDEFG)"}).json()
        assert active["active"] is True and 0 < active["progress"] < 0.5
        assert active["live_preview"].startswith("data:image/png;base64,")
        assert active["id_live_preview"] == 1
        preview = client.get("/sdapi/v1/progress").json()["current_image"]
        assert decode_png(preview).size == (8, 8)
        assert client.get("/sdapi/v1/progress",
                          params={"skip_current_image": True}).json()["current_image"] is None

        assert client.post("/sdapi/v1/interrupt").json() == {}
        worker.join(TIMEOUT)
        assert not worker.is_alive()
        # interrupted jobs still answer with what they have (§11.3)
        assert results["response"].status_code == 200, results["response"].text
        assert ctx.jobs.get("task(txt2img-ABCDEFG)").progress.interrupted
        assert queued.wait(TIMEOUT) == "later"
        done = client.post("/internal/progress", json={"id_task": "task(txt2img-ABCDEFG)"}).json()
        assert done["completed"] is True and done["active"] is False
    finally:
        ctx.jobs.shutdown()
        worker.join(TIMEOUT)


# -- UI mode: the API beside Gradio ---------------------------------------------------------------
def test_ui_mode_mounts_gradio_beside_the_api():
    from modules.ui.app import create_ui_app
    ctx = make_ctx(["--api"])
    try:
        with TestClient(create_ui_app(ctx, txt2img_runner=FakeRunner())) as client:
            page = client.get("/")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            components = client.get("/config").json()["components"]
            values = {c["props"].get("label"): c["props"].get("value") for c in components
                      if c.get("props", {}).get("label")}
            assert (values["Sampling method"], values["Schedule type"]) == ("DPM++ 2M", "Automatic")
            assert (values["Sampling steps"], values["CFG Scale"]) == (20, 7.0)
            assert (values["Width"], values["Height"], values["Seed"]) == (512, 512, -1)
            assert {"Prompt", "Negative prompt", "Batch count", "Batch size",
                    "Output"} <= set(values)
            buttons = {c["props"].get("value") for c in components if c.get("type") == "button"}
            assert {"Generate", "\U0001f3b2", "\u267b\ufe0f"} <= buttons
            assert client.get("/sdapi/v1/samplers").status_code == 200
            waiting = client.post("/internal/progress", json={"id_task": "task(x-1234567)"})
            assert waiting.json()["textinfo"] == "Waiting..."
    finally:
        ctx.jobs.shutdown()
    ctx = make_ctx([])   # UI without --api: no /sdapi routes (§1.1)
    try:
        with TestClient(create_ui_app(ctx, txt2img_runner=FakeRunner())) as client:
            assert client.get("/sdapi/v1/samplers").status_code == 404
            assert client.get("/internal/ping").json() == {}
    finally:
        ctx.jobs.shutdown()


def test_ui_generate_runs_a_job_and_shows_errors():
    from modules.ui.common import last_seed_from_info
    from modules.ui.txt2img_tab import generate_txt2img, ui_params
    ctx = make_ctx([])
    try:
        params = ui_params("a <cat>", "", "Euler a", "Karras", 4.0, 7.0, 64.0, 32.0, 77.0, 2.0, 1.0)
        assert (params.steps, params.width, params.n_iter, params.seed) == (4, 64, 2, 77)
        images, info, info_html, error_html = generate_txt2img(ctx, FakeRunner(), params)
        assert [image.size for image in images] == [(64, 32), (64, 32)]
        assert json.loads(info)["all_seeds"] == [77, 78] and error_html == ""
        assert "a &lt;cat&gt;<br>Steps: 4" in info_html
        assert last_seed_from_info(info, -1) == 77 and last_seed_from_info("", 5) == 5

        folder = "/data/models/Stable-diffusion"
        broken = FakeRunner(raise_error=NoCheckpointError(f"Put a checkpoint into {folder}"))
        images, info, _, error_html = generate_txt2img(ctx, broken, params)
        assert images == [] and info == ""
        assert folder in error_html and "NoCheckpointError" in error_html
    finally:
        ctx.jobs.shutdown()
