"""The committed test extension (tests/extensions/sd-seed-tagger, written the way community
extensions are) in API-only mode, in-process over a tiny checkpoint: its always-on script changes
prompts, images and infotext; its selectable script does the job; its setting, preload flag,
route and callbacks work; a script that raises is named in the answer and the next request works.
"""
from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from tests.engine.tiny_checkpoints import write_tiny_checkpoint
from tests.server_process import ROOT

EXTENSION = Path(__file__).resolve().parents[1] / "extensions" / "sd-seed-tagger"
REQUEST = {"prompt": "a red circle", "steps": 3, "width": 64, "height": 64, "seed": 1234,
           "batch_size": 2, "sampler_name": "Euler"}


def install_test_extension(data_dir: Path) -> Path:
    target = data_dir / "extensions" / EXTENSION.name
    shutil.copytree(EXTENSION, target, ignore=shutil.ignore_patterns("installed.txt"))
    ckpt_dir = data_dir / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_tiny_checkpoint(ckpt_dir / "tiny-sd1.safetensors", "sd1", seed=1)
    return target


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("extension-api")
    install_test_extension(data)
    args, unknown = parse_args(["--data-dir", str(data), "--nowebui", "--skip-load-model-at-start",
                                "--seed-tagger-greeting", "hi there"])
    assert unknown == []            # the extension's preload.py added its flag
    ctx = build_app_context(args, ROOT)
    client = TestClient(create_api_app(ctx))
    yield client, ctx
    ctx.close()


def images_of(answer) -> list[Image.Image]:
    assert answer.status_code == 200, answer.text
    return [Image.open(io.BytesIO(base64.b64decode(item))) for item in answer.json()["images"]]


def test_the_extension_is_listed_with_its_scripts_and_arguments(api):
    client, ctx = api
    names = [(extension.name, extension.is_builtin) for extension in ctx.scripts.extensions]
    assert ("sd-seed-tagger", False) in names
    assert all(builtin for name, builtin in names if name != "sd-seed-tagger")
    # the app's built-in scripts first, then the extension's
    scripts = client.get("/sdapi/v1/scripts").json()
    assert scripts["txt2img"][-1] == "mirror" and scripts["img2img"][-1] == "mirror"
    assert "prompt matrix" in scripts["txt2img"]
    info = {(item["name"], item["is_img2img"]): item
            for item in client.get("/sdapi/v1/script-info").json()}
    tagger = info[("seed tagger", False)]
    assert tagger["is_alwayson"] is True
    assert [arg["label"] for arg in tagger["args"]] == ["Tag prompts with their seeds",
                                                         "Fail in postprocess_image"]
    assert info[("mirror", True)]["args"][0]["value"] is True


def test_the_always_on_script_rewrites_prompts_with_seeds_and_adds_to_the_infotext(api):
    client, _ = api
    plain = images_of(client.post("/sdapi/v1/txt2img", json=REQUEST))
    tagged_answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "alwayson_scripts": {"seed tagger": {"args": [True]}}})
    tagged = images_of(tagged_answer)
    info = json.loads(tagged_answer.json()["info"])
    assert info["all_prompts"] == ["a red circle, seed 1234", "a red circle, seed 1235"]
    assert info["all_seeds"] == [1234, 1235]
    assert tagged[1].info["parameters"].startswith("a red circle, seed 1235\n")
    assert "Seed tagger: seed" in tagged[0].info["parameters"]
    # the prompt changed, so the pictures did (same seeds)
    assert not np.array_equal(np.asarray(plain[0]), np.asarray(tagged[0]))
    # its setting (added in on_ui_settings) is a real setting
    assert client.post("/sdapi/v1/options", json={"seed_tagger_word": "number"}).status_code == 200
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "batch_size": 1, "alwayson_scripts": {"Seed tagger": {"args": [True]}}})
    assert json.loads(answer.json()["info"])["all_prompts"] == ["a red circle, number 1234"]
    client.post("/sdapi/v1/options", json={"seed_tagger_word": "seed"})


def test_the_selectable_script_does_the_whole_job(api):
    client, _ = api
    plain = images_of(client.post("/sdapi/v1/txt2img", json=REQUEST))
    mirrored = images_of(client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "script_name": "Mirror", "script_args": [True]}))
    assert len(mirrored) == 2
    for original, flipped in zip(plain, mirrored):
        assert np.array_equal(np.asarray(ImageOps.mirror(original)), np.asarray(flipped))
    unflipped = images_of(client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "script_name": "mirror", "script_args": [False]}))
    assert np.array_equal(np.asarray(plain[0]), np.asarray(unflipped[0]))


def test_its_route_callbacks_and_preload_flag(api):
    client, _ = api
    before = client.get("/seed-tagger/status").json()
    assert before["greeting"] == "hi there" and before["ui"] is False
    client.post("/sdapi/v1/txt2img", json={**REQUEST, "save_images": True})
    after = client.get("/seed-tagger/status").json()
    new = after["saved"][len(before["saved"]):]          # on_image_saved: each image, the grid
    assert [Path(path).name for path in new] == ["00000-1234.png", "00001-1235.png",
                                                 "grid-0000.png"]
    assert all(Path(path).is_file() for path in new)
    # on_cfg_denoiser: once per sampler call (Euler: one per step)
    assert after["denoiser_calls"] - before["denoiser_calls"] == 3


def test_a_script_that_raises_is_named_and_the_next_request_works(api):
    client, ctx = api
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "alwayson_scripts": {"Seed tagger": {"args": [False, True]}}})
    assert answer.status_code == 200
    comments = json.loads(answer.json()["info"])["comments"]
    assert "Script 'Seed tagger' failed in postprocess_image(): ValueError: asked to fail" in \
        comments
    assert len(answer.json()["images"]) == 2
    assert images_of(client.post("/sdapi/v1/txt2img", json=REQUEST))
    assert ctx.jobs.pending_ids() == []
    refused = client.post("/sdapi/v1/txt2img", json={**REQUEST, "script_name": "Nope"})
    assert refused.status_code == 422 and refused.json()["detail"] == "Script 'Nope' not found"


def test_a_git_checkout_is_listed_in_the_extensions_route(tmp_path):
    import subprocess
    extension = install_test_extension(tmp_path)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "HOME": str(tmp_path)}
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "first"],
                    ["remote", "add", "origin", "https://example.com/sd-seed-tagger.git"]):
        subprocess.run(["git", "-C", str(extension), *command], check=True, env=env)
    args, _ = parse_args(["--data-dir", str(tmp_path), "--nowebui", "--skip-load-model-at-start"])
    ctx = build_app_context(args, ROOT)
    try:
        [item] = TestClient(create_api_app(ctx)).get("/sdapi/v1/extensions").json()
    finally:
        ctx.close()
    assert item["name"] == "sd-seed-tagger" and item["enabled"] is True
    assert item["remote"] == "https://example.com/sd-seed-tagger.git" and item["branch"] == "main"
    assert len(item["commit_hash"]) == 40 and item["version"] == item["commit_hash"][:8]
    assert item["commit_date"] > 1_700_000_000
