"""Aesthetic gradients (issue 19), the built-in extension on the Script API: a tiny CLIP (OpenAI
layout, the interrogator's folder) and an aesthetic embedding made from real photographs with it.
Weight 0 draws exactly the plain image; a weight draws a different one; the loaded model is
untouched (the next plain image is equal); bad choices are clear 422s."""
from __future__ import annotations

import base64
import dataclasses
import io
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.engine.aesthetic_clip import (AestheticSettings, ClipTextTower, slerp,
                                           tuned_conditioning)
from tests.engine.tiny_checkpoints import tiny_model_config, write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 64          # open_clip rebuilds OpenAI-layout CLIPs with 64-wide heads
BODY = {"prompt": "a portrait of an astronaut, studio light", "negative_prompt": "blurry",
        "width": 64, "height": 64, "steps": 3, "seed": 11, "sampler_name": "Euler"}


def write_tiny_clip(path: Path) -> None:
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    torch.manual_seed(3)
    model = CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=1, width=64, patch_size=8,
                                                        image_size=32),
                 text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=WIDTH, heads=1,
                                      layers=2))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def write_wide_sd1(path: Path) -> None:
    """The tiny SD1 checkpoint with a 64-wide text encoder, the tiny CLIP's text width."""
    base = tiny_model_config("sd1")
    prefix, clip = base.text_encoders[0]
    config = dataclasses.replace(
        base, unet=dataclasses.replace(base.unet, context_dim=WIDTH),
        text_encoders=((prefix, dataclasses.replace(clip, width=WIDTH, intermediate=2 * WIDTH)),))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tiny_checkpoint(path, "sd1", config=config)


def photos(folder: Path) -> Path:
    from skimage import data
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")
    Image.fromarray(data.camera()).save(folder / "camera.jpg")       # greyscale
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("aesthetic")
    write_wide_sd1(data / "models" / "Stable-diffusion" / "tiny-wide.safetensors")
    write_tiny_clip(data / "models" / "interrogate" / "tiny-clip.safetensors")
    args, _ = parse_args(["--data-dir", str(data), "--nowebui"])
    ctx = build_app_context(args, ROOT)
    client = TestClient(create_api_app(ctx))
    aesthetic = sys.modules["_scripts.aesthetic-gradients.aesthetic"]   # loaded with the app
    message = aesthetic.create_embedding("photos", str(photos(data / "photos")), 2)
    yield SimpleNamespace(client=client, ctx=ctx, data=data, message=message,
                          extension=aesthetic)
    ctx.close()


def aesthetic_args(weight=0.9, steps=3, lr="0.01", use_slerp=False, name="photos", text="",
                   angle=0.1, negative=False) -> dict:
    return {"Aesthetic embeddings": {"args": [weight, steps, lr, use_slerp, name, text, angle,
                                              negative]}}


def generate(api, **fields) -> tuple[np.ndarray, str]:
    answer = api.client.post("/sdapi/v1/txt2img", json={**BODY, **fields})
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    return np.asarray(image.convert("RGB"), dtype=np.int16), answer.json()["info"]


def test_the_embedding_is_the_mean_clip_feature_of_the_readable_photos(api):
    assert "from 4 images" in api.message and "1 unreadable" in api.message
    saved = api.data / "models" / "aesthetic_embeddings" / "photos.pt"
    embedding = torch.load(saved, weights_only=True)
    ranker = api.ctx.interrogators.clip_model()
    folder = api.data / "photos"
    with torch.no_grad():
        pictures = [ranker.preprocess(Image.open(folder / name).convert("RGB"))
                    for name in ("astronaut.png", "camera.jpg", "chelsea.png", "coffee.png")]
        expected = ranker.model.encode_image(torch.stack(pictures)).mean(0, keepdim=True)
    assert embedding.shape == (1, 16)
    assert torch.allclose(embedding, expected, atol=1e-5)
    infos = {(item["name"], item["is_img2img"]): item
             for item in api.client.get("/sdapi/v1/script-info").json()}
    listed = infos[("aesthetic embeddings", False)]
    assert listed["is_alwayson"] and len(listed["args"]) == 8
    assert ("aesthetic embeddings", True) in infos
    listed_names = api.client.get("/sdapi/v1/scripts").json()
    assert "aesthetic embeddings" in listed_names["txt2img"]     # always-on ones too, as A1111
    assert "aesthetic embeddings" in listed_names["img2img"]


def test_weight_zero_draws_exactly_the_plain_image(api):
    plain, _ = generate(api)
    zero, info = generate(api, alwayson_scripts=aesthetic_args(weight=0))
    assert np.array_equal(plain, zero)
    assert "Aesthetic embedding: photos" in info


def test_a_weight_changes_the_image_and_leaves_the_model_as_it_was(api):
    plain, _ = generate(api)
    tuned, info = generate(api, alwayson_scripts=aesthetic_args(weight=0.9))
    assert np.abs(plain - tuned).mean() > 0.5
    for key in ("Aesthetic LR: 0.01", "Aesthetic weight: 0.9", "Aesthetic steps: 3",
                "Aesthetic slerp: False"):
        assert key in info
    again, _ = generate(api)
    assert np.array_equal(plain, again)
    repeat, _ = generate(api, alwayson_scripts=aesthetic_args(weight=0.9))
    assert np.array_equal(tuned, repeat)


def test_slerp_and_the_text_change_the_result(api):
    linear, _ = generate(api, alwayson_scripts=aesthetic_args())
    spherical, _ = generate(api, alwayson_scripts=aesthetic_args(use_slerp=True))
    with_text, _ = generate(api, alwayson_scripts=aesthetic_args(text="a cat", angle=0.5))
    negative, _ = generate(api, alwayson_scripts=aesthetic_args(text="a cat", angle=0.5,
                                                                negative=True))
    assert not np.array_equal(linear, spherical)
    assert not np.array_equal(linear, with_text)
    assert not np.array_equal(with_text, negative)


def test_bad_choices_are_clear_422s(api):
    answer = api.client.post("/sdapi/v1/txt2img", json={
        **BODY, "alwayson_scripts": aesthetic_args(name="nowhere")})
    assert answer.status_code == 422 and "no aesthetic embedding named 'nowhere'" in answer.text
    answer = api.client.post("/sdapi/v1/txt2img", json={
        **BODY, "alwayson_scripts": aesthetic_args(lr="fast")})
    assert answer.status_code == 422 and "not a number" in answer.text
    outside = api.extension.create_embedding("x", "/etc", 4)
    assert outside.startswith("Error:") and "outside the allowed folders" in outside
    bad_name = api.extension.create_embedding("../up", str(api.data / "photos"), 4)
    assert (api.data / "models" / "aesthetic_embeddings" / "up.pt").exists()   # kept inside
    assert "Error" not in bad_name


def test_training_moves_the_text_features_towards_the_embedding(api):
    ranker = api.ctx.interrogators.clip_model()
    tokens = ranker.tokenizer(["a portrait of an astronaut"])
    target = torch.nn.functional.normalize(torch.randn(1, 16, generator=torch.Generator()
                                                       .manual_seed(0)), dim=-1)

    def similarity(tower: ClipTextTower) -> float:
        with torch.no_grad():
            features = torch.nn.functional.normalize(tower.features(tokens), dim=-1)
        return float(features @ target.T)

    before = similarity(ClipTextTower(ranker.model))
    settings = AestheticSettings(weight=1.0, steps=8, learning_rate=0.01)
    tuned = tuned_conditioning(ranker.model, tokens, target, settings)
    assert tuned.shape == (1, 77, WIDTH)
    # the same training, measured on its tower
    tower = ClipTextTower(ranker.model)
    optimizer = torch.optim.Adam([p for n, p in tower.named_parameters()
                                  if n != "text_projection"], lr=0.01)
    for _ in range(8):
        features = torch.nn.functional.normalize(tower.features(tokens), dim=-1)
        loss = -(features @ target.T).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert similarity(tower) > before
    assert torch.allclose(tower.conditioning(tokens, 1).detach(), tuned, atol=1e-5)


def test_slerp_keeps_its_ends():
    low, high = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.allclose(slerp(low, high, 0.0), low, atol=1e-5)
    assert torch.allclose(slerp(low, high, 1.0), high, atol=1e-5)
