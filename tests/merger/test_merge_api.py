"""POST /sdapi/v1/merge-checkpoints in-process over a real app context: the product's 7:3 blend,
listed at once and generating, the shipped recipe giving the same bytes from the command line,
and the refusals (unknown model 404, bad name 422, mixed architectures 422, existing file 409)."""
from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from tests.engine.tiny_checkpoints import write_tiny_checkpoint
from tests.merger.conftest import merged_keys
from tests.merger.test_merge_files import run_merger_cli
from tests.ref_models import write_sparse_checkpoint

ROOT = Path(__file__).resolve().parents[2]
BLEND_RECIPE = ROOT / "recipes" / "anime-blend-7-3.json"


def start_api(data: Path) -> SimpleNamespace:
    args, _ = parse_args(["--data-dir", str(data), "--skip-load-model-at-start", "--nowebui"])
    ctx = build_app_context(args, ROOT)
    return SimpleNamespace(client=TestClient(create_api_app(ctx)), ctx=ctx, data=data)


@pytest.fixture
def api(tmp_path):
    data = tmp_path / "data"
    ckpt_dir = data / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / "anime-base.safetensors", "sd1", seed=1)
    write_tiny_checkpoint(ckpt_dir / "second.safetensors", "sd1", seed=2)
    started = start_api(data)
    started.dir = ckpt_dir
    yield started
    started.ctx.close()


def merge(api, **fields):
    return api.client.post("/sdapi/v1/merge-checkpoints", json=fields)


def test_the_shipped_7_3_blend_is_listed_at_once_and_generates(api):
    recipe = json.loads(BLEND_RECIPE.read_text())
    recipe.pop("comment", None)
    response = merge(api, **recipe)
    assert response.status_code == 200, response.text
    merged = response.json()
    assert merged["model_name"] == "anime-blend-7-3.safetensors"
    assert merged["title"] == f"anime-blend-7-3.safetensors [{merged['hash']}]"
    assert merged["info"] == f"Checkpoint saved to {api.dir / 'anime-blend-7-3.safetensors'}"

    out = api.ctx.merger.checkpoints  # the registry the API lists from, refreshed by the merge
    assert merged["title"] in out.titles()
    listed = api.client.get("/sdapi/v1/sd-models").json()
    assert merged["title"] in [model["title"] for model in listed]

    from safetensors.torch import load_file
    blend, a, b = (load_file(str(api.dir / name)) for name in
                   ("anime-blend-7-3.safetensors", "anime-base.safetensors", "second.safetensors"))
    for key in merged_keys(a, b):
        assert blend[key].dtype == torch.float16
        torch.testing.assert_close(blend[key], (0.7 * a[key] + 0.3 * b[key]).half())

    generated = api.client.post("/sdapi/v1/txt2img", json={
        "prompt": "a red circle", "width": 64, "height": 64, "steps": 2, "seed": 5,
        "override_settings": {"sd_model_checkpoint": merged["title"]}})
    assert generated.status_code == 200, generated.text
    image = Image.open(io.BytesIO(base64.b64decode(generated.json()["images"][0])))
    assert image.size == (64, 64)
    assert "Model: anime-blend-7-3" in json.loads(generated.json()["info"])["infotexts"][0]


def test_the_api_merge_and_the_recipe_file_give_identical_bytes(api, tmp_path):
    response = merge(api, **{k: v for k, v in json.loads(BLEND_RECIPE.read_text()).items()
                            if k != "comment"})
    assert response.status_code == 200, response.text
    from_api = (api.dir / "anime-blend-7-3.safetensors").read_bytes()

    other = tmp_path / "other"          # a second install with the same two files
    (other / "models" / "Stable-diffusion").mkdir(parents=True)
    for name in ("anime-base.safetensors", "second.safetensors"):
        shutil.copy(api.dir / name, other / "models" / "Stable-diffusion" / name)
    done = run_merger_cli([str(BLEND_RECIPE), "--data-dir", str(other)])
    assert done.returncode == 0, done.stderr
    assert (other / "models" / "Stable-diffusion" / "anime-blend-7-3.safetensors").read_bytes() \
        == from_api


def test_an_unknown_model_is_404_naming_it(api):
    response = merge(api, primary_model_name="anime-base.safetensors",
                     secondary_model_name="missing-model.safetensors")
    assert response.status_code == 404
    assert "missing-model.safetensors" in response.json()["detail"]


@pytest.mark.parametrize("name", ["../outside", "folder/blend", "..\\up", "a..b"])
def test_output_names_with_separators_or_dot_dot_are_422(api, name):
    response = merge(api, primary_model_name="anime-base", secondary_model_name="second",
                     custom_name=name)
    assert response.status_code == 422
    assert "custom_name" in response.json()["detail"]
    assert sorted(p.name for p in api.dir.iterdir()) == ["anime-base.safetensors",
                                                        "second.safetensors"]


def test_sd1_with_sdxl_is_refused_with_both_architectures(api):
    write_tiny_checkpoint(api.dir / "xl-model.safetensors", "sdxl", seed=3)
    response = merge(api, primary_model_name="anime-base", secondary_model_name="xl-model")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "(SD1.x)" in detail and "(SDXL)" in detail


def test_an_existing_output_is_409_and_untouched(api):
    first = merge(api, primary_model_name="anime-base", secondary_model_name="second",
                  custom_name="blend")
    assert first.status_code == 200
    before = (api.dir / "blend.safetensors").read_bytes()
    again = merge(api, primary_model_name="anime-base", secondary_model_name="second",
                  custom_name="blend", multiplier=0.9)
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]
    assert (api.dir / "blend.safetensors").read_bytes() == before


def test_bad_fields_are_422(api):
    assert merge(api, primary_model_name="anime-base", interp_method="Average").status_code == 422
    response = merge(api, primary_model_name="anime-base", secondary_model_name="second",
                     discard_weights="([unclosed")
    assert response.status_code == 422
    assert "Discard weights is not a valid regular expression" in response.json()["detail"]
    response = merge(api, primary_model_name="anime-base", interp_method="Add difference",
                     secondary_model_name="second")
    assert response.status_code == 422 and "tertiary" in response.json()["detail"]


def test_interrupting_a_full_size_merge_leaves_no_file(api):
    for name in ("big-a.safetensors", "big-b.safetensors"):
        write_sparse_checkpoint("sd15", api.dir / name)
    answer = {}
    merging = threading.Thread(target=lambda: answer.update(response=merge(
        api, primary_model_name="big-a", secondary_model_name="big-b", custom_name="big-blend",
        add_merge_recipe=False)))
    merging.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:      # wait until tensors are being written
        state = api.client.get("/sdapi/v1/progress").json()["state"]
        if state["job"] == "merge" and state["sampling_step"] >= 5:
            break
        time.sleep(0.05)
    assert state["sampling_steps"] > 1000    # one step per tensor of SD1.5
    assert api.client.post("/sdapi/v1/interrupt").status_code == 200
    merging.join(timeout=120)
    response = answer["response"]
    assert response.status_code == 409
    assert "interrupted; no checkpoint was written" in response.json()["detail"]
    assert sorted(p.name for p in api.dir.iterdir()) == [
        "anime-base.safetensors", "big-a.safetensors", "big-b.safetensors", "second.safetensors"]
