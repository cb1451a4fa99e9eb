"""Listing and model-side routes (sd-vae, hypernetworks, loras, face-restorers, realesrgan-models,
prompt-styles, embeddings, refresh-*, memory, unload-/reload-checkpoint, scripts, script-info,
extensions) in-process over a real app context in a temporary data folder."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.processing.upscalers import UpscalerInfo
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api(tmp_path):
    data = tmp_path / "data"
    (data / "models" / "Stable-diffusion").mkdir(parents=True)
    (data / "styles.csv").write_text(
        'name,prompt,negative_prompt\n"Cinematic","{prompt}, film grain","cartoon"\n'
        'Plain,,\n', encoding="utf-8")
    args, _ = parse_args(["--data-dir", str(data), "--skip-load-model-at-start", "--nowebui"])
    ctx = build_app_context(args, ROOT)
    yield SimpleNamespace(client=TestClient(create_api_app(ctx)), ctx=ctx, data=data)
    ctx.close()


def get_json(api, path: str):
    response = api.client.get(f"/sdapi/v1/{path}")
    assert response.status_code == 200, response.text
    return response.json()


def post_json(api, path: str):
    response = api.client.post(f"/sdapi/v1/{path}")
    assert response.status_code == 200, response.text
    return response.json()


def test_sd_vae_lists_files_after_refresh(api):
    assert get_json(api, "sd-vae") == []
    vae_dir = api.data / "models" / "VAE"
    vae_dir.mkdir(parents=True)
    save_file({"decoder.conv_in.weight": torch.zeros(1)}, str(vae_dir / "kl-f8.safetensors"))
    assert get_json(api, "sd-vae") == []            # listed once refreshed, as in A1111
    assert post_json(api, "refresh-vae") is None
    assert get_json(api, "sd-vae") == [{"model_name": "kl-f8.safetensors",
                                        "filename": str(vae_dir / "kl-f8.safetensors")}]


def test_hypernetworks_and_loras_from_their_folders(api):
    assert get_json(api, "hypernetworks") == [] and get_json(api, "loras") == []
    hn_dir = api.data / "models" / "hypernetworks" / "styles"
    hn_dir.mkdir(parents=True)
    (hn_dir / "anime10.pt").write_bytes(b"x")
    (hn_dir / "anime2.pt").write_bytes(b"x")
    (hn_dir / "notes.txt").write_text("not a network")
    assert get_json(api, "hypernetworks") == [
        {"name": "anime2", "path": str(hn_dir / "anime2.pt")},
        {"name": "anime10", "path": str(hn_dir / "anime10.pt")}]

    lora_dir = api.data / "models" / "Lora"
    lora_dir.mkdir(parents=True)
    tensors = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8)}
    save_file(tensors, str(lora_dir / "fox_v2.safetensors"),
              metadata={"ss_output_name": "fox", "ss_network_dim": "4",
                        "ss_tag_frequency": '{"img": {"fox": 3}}'})
    save_file(tensors, str(lora_dir / "plain.safetensors"))
    loras = get_json(api, "loras")
    assert loras == [
        {"name": "fox_v2", "alias": "fox", "path": str(lora_dir / "fox_v2.safetensors"),
         "metadata": {"ss_output_name": "fox", "ss_network_dim": "4",
                      "ss_tag_frequency": {"img": {"fox": 3}}}},
        {"name": "plain", "alias": "plain", "path": str(lora_dir / "plain.safetensors"),
         "metadata": {}}]
    assert post_json(api, "refresh-loras") is None


def test_face_restorers_realesrgan_styles_embeddings(api):
    assert get_json(api, "face-restorers") == []
    assert get_json(api, "realesrgan-models") == []
    api.ctx.upscalers.register(UpscalerInfo(
        "R-ESRGAN 4x+", lambda image, scale: image.resize((image.width * 4, image.height * 4)),
        scale=4, model_path="/models/RealESRGAN/RealESRGAN_x4plus.pth"))
    assert get_json(api, "realesrgan-models") == [
        {"name": "R-ESRGAN 4x+", "path": "/models/RealESRGAN/RealESRGAN_x4plus.pth", "scale": 4}]

    assert get_json(api, "prompt-styles") == [
        {"name": "Cinematic", "prompt": "{prompt}, film grain", "negative_prompt": "cartoon"},
        {"name": "Plain", "prompt": "", "negative_prompt": ""}]
    assert get_json(api, "embeddings") == {"loaded": {}, "skipped": {}}
    assert post_json(api, "refresh-embeddings") is None


def test_memory_reports_positive_numbers(api):
    body = get_json(api, "memory")
    assert set(body) == {"ram", "cuda"}
    ram = body["ram"]
    assert ram["total"] == psutil.virtual_memory().total
    assert 0 < ram["used"] < ram["total"] and ram["free"] == ram["total"] - ram["used"]
    if torch.cuda.is_available():
        assert set(body["cuda"]) == {"system", "active", "allocated", "reserved", "inactive",
                                     "events"}
        assert body["cuda"]["system"]["total"] > 0
    else:
        assert body["cuda"] == {"error": "unavailable"}


def test_scripts_and_script_info_list_the_built_in_scripts(api):
    scripts = get_json(api, "scripts")
    assert "prompt matrix" in scripts["txt2img"] and "prompt matrix" in scripts["img2img"]
    info = {(item["name"], item["is_img2img"]): item for item in get_json(api, "script-info")}
    matrix = info[("prompt matrix", False)]
    assert matrix["is_alwayson"] is False
    assert [arg["label"] for arg in matrix["args"]] == [
        "Put variable parts at start of prompt", "Use different seed for each picture",
        "Select prompt", "Select joining char", "Grid margins (px)"]
    assert matrix["args"][2]["choices"] == ["positive", "negative"]
    assert get_json(api, "extensions") == []      # A1111 lists git-backed extensions only


def test_unload_and_reload_checkpoint(api):
    write_tiny_checkpoint(api.data / "models" / "Stable-diffusion" / "tiny.safetensors", "sd1",
                          seed=1)
    api.ctx.checkpoints.refresh()
    manager = api.ctx.model_manager
    assert post_json(api, "reload-checkpoint") == {}     # nothing loaded, nothing to reload
    assert manager.current() is None

    manager.get("tiny.safetensors")
    assert post_json(api, "unload-checkpoint") == {}
    assert manager.current() is None                    # CPU plan: the model is released
    assert post_json(api, "unload-checkpoint") == {}    # a second unload is harmless
    assert post_json(api, "reload-checkpoint") == {}
    reloaded = manager.current()
    assert reloaded is not None and reloaded.info.name == "tiny.safetensors"
    assert next(reloaded.model.parameters()).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_unload_moves_weights_to_cpu_and_back_on_cuda(api):
    write_tiny_checkpoint(api.data / "models" / "Stable-diffusion" / "tiny.safetensors", "sd1",
                          seed=1)
    api.ctx.checkpoints.refresh()
    manager = api.ctx.model_manager
    loaded = manager.get("tiny.safetensors")
    assert next(loaded.model.parameters()).device.type == "cuda"
    post_json(api, "unload-checkpoint")
    assert manager.current() is loaded and next(loaded.model.parameters()).device.type == "cpu"
    post_json(api, "reload-checkpoint")
    assert manager.current() is loaded and next(loaded.model.parameters()).device.type == "cuda"
    post_json(api, "unload-checkpoint")
    manager.get("tiny.safetensors")                     # the next job brings it back too
    assert next(loaded.model.parameters()).device.type == "cuda"


def test_listing_routes_in_openapi(api):
    paths = api.client.get("/openapi.json").json()["paths"]
    for route in ("sd-vae", "hypernetworks", "face-restorers", "realesrgan-models",
                  "prompt-styles", "embeddings", "memory", "scripts", "script-info",
                  "extensions", "loras"):
        assert "get" in paths[f"/sdapi/v1/{route}"], route
    for route in ("refresh-embeddings", "refresh-vae", "refresh-loras", "unload-checkpoint",
                  "reload-checkpoint"):
        assert "post" in paths[f"/sdapi/v1/{route}"], route
