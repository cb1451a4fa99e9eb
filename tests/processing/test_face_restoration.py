"""Face restoration (issue 15): tiny random-weight GFPGAN and CodeFormer networks built with
spandrel's own architectures, saved in models/GFPGAN and models/Codeformer, restore the face of
a real photograph (scikit-image's astronaut) through the Extras API and generation: the face is
found, aligned, restored by the network and pasted back; pixels away from it are untouched; an
image without a face comes back unchanged with a note; bad files and missing weights are clear
4xx messages."""
from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.engine.face_restore import aligned_face, alignment, detect_faces
from modules.engine.upscaler_models import load_image_model
from modules.processing.context import UnsupportedRequestError
from modules.processing.face_restoration import FaceRestorers
from tests.engine.tiny_checkpoints import write_tiny_checkpoint
from tests.processing.test_model_upscalers import encode

ROOT = Path(__file__).resolve().parents[2]


def random_gfpgan() -> dict[str, torch.Tensor]:
    """GFPGAN v1.4's architecture (spandrel's class, as spandrel reads it back), random weights."""
    from spandrel.architectures.GFPGAN import GFPGAN
    torch.manual_seed(0)
    network = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2,
                     decoder_load_path=None, fix_decoder=False, num_mlp=8, input_is_latent=True,
                     different_w=True, narrow=1, sft_half=True)
    return {key: value.contiguous() for key, value in network.state_dict().items()}


def random_codeformer() -> dict[str, torch.Tensor]:
    """A small CodeFormer (one transformer layer, a 32-entry codebook), random weights."""
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer
    torch.manual_seed(1)
    network = CodeFormer(dim_embd=64, n_head=8, n_layers=1, codebook_size=32, latent_size=256,
                         connect_list=["32", "64", "128", "256"],
                         fix_modules=["quantize", "generator"])
    return {key: value.contiguous() for key, value in network.state_dict().items()}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("faces")
    models = data / "models"
    for folder in ("GFPGAN", "Codeformer", "ESRGAN", "Stable-diffusion"):
        (models / folder).mkdir(parents=True)
    gfpgan = models / "GFPGAN" / "GFPGANv1.4.pth"
    torch.save({"params_ema": random_gfpgan()}, gfpgan)         # as GFPGAN's releases are
    save_file(random_codeformer(), str(models / "Codeformer" / "codeformer.safetensors"))
    os.link(gfpgan, models / "ESRGAN" / "GFPGANv1.4.pth")      # a face model among upscalers
    write_tiny_checkpoint(models / "Stable-diffusion" / "tiny.safetensors", "sd1")
    args, _ = parse_args(["--data-dir", str(data), "--nowebui"])
    ctx = build_app_context(args, ROOT)
    yield SimpleNamespace(client=TestClient(create_api_app(ctx)), ctx=ctx, data=data,
                          models=models)
    ctx.close()


def decode(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


def photo(name: str) -> Image.Image:
    from skimage import data
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def extras(api, image: Image.Image, **fields) -> dict:
    response = api.client.post("/sdapi/v1/extra-single-image", json={
        "image": encode(image), "upscaler_1": "None", **fields})
    assert response.status_code == 200, response.text
    return response.json()


def far_from_face(shape: tuple[int, ...], box: tuple[float, ...], margin: float) -> np.ndarray:
    """Pixels further than `margin` face sizes from the face box."""
    left, top, width, height = box
    ys, xs = np.mgrid[:shape[0], :shape[1]]
    return ((xs < left - margin * width) | (xs > left + (1 + margin) * width)
            | (ys < top - margin * height) | (ys > top + (1 + margin) * height))


def test_restorers_are_listed_and_not_taken_for_upscalers(api):
    listed = api.client.get("/sdapi/v1/face-restorers").json()
    assert listed == [
        {"name": "CodeFormer", "cmd_dir": str(api.models / "Codeformer")},
        {"name": "GFPGAN", "cmd_dir": str(api.models / "GFPGAN")}]
    upscalers = [item["name"] for item in api.client.get("/sdapi/v1/upscalers").json()]
    assert "GFPGANv1.4" not in upscalers


def test_gfpgan_restores_the_astronauts_face_and_leaves_the_rest(api):
    source = photo("astronaut")
    original = np.asarray(source)
    body = extras(api, source, gfpgan_visibility=1.0)
    restored = decode(body["image"])
    assert restored.shape == original.shape
    assert "GFPGAN visibility: 1.0" in body["html_info"]

    [face] = detect_faces(original)
    changed = np.abs(restored.astype(int) - original).max(axis=-1) > 0
    assert not changed[far_from_face(original.shape, face.box, 0.6)].any()
    left, top, width, height = (int(v) for v in face.box)
    assert changed[top:top + height, left:left + width].mean() > 0.9

    # the face is the network's output on the aligned face, warped back: compare at the nose
    matrix = alignment(face.points)
    network = load_image_model(api.models / "GFPGAN" / "GFPGANv1.4.pth").model
    pixels = torch.from_numpy(aligned_face(original, matrix)).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.inference_mode():
        output = network(pixels.float(), return_rgb=False, randomize_noise=False)[0]
    expected = ((output[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
    back = cv2.warpAffine(expected, cv2.invertAffineTransform(matrix), original.shape[1::-1])
    nose_x, nose_y = (int(round(v)) for v in face.points[2])
    assert np.abs(restored[nose_y, nose_x].astype(float) - back[nose_y, nose_x]).max() <= 2

    again = decode(extras(api, source, gfpgan_visibility=1.0)["image"])
    assert np.array_equal(again, restored)                       # the same face, the same way


def test_codeformer_weight_and_visibility(api):
    source = photo("astronaut")
    original = np.asarray(source).astype(float)
    strong = extras(api, source, codeformer_visibility=1.0, codeformer_weight=0.0)
    faithful = extras(api, source, codeformer_visibility=1.0, codeformer_weight=1.0)
    assert "CodeFormer visibility: 1.0, CodeFormer weight: 1.0" in faithful["html_info"]
    assert not np.array_equal(decode(strong["image"]), decode(faithful["image"]))
    half = decode(extras(api, source, codeformer_visibility=0.5,
                         codeformer_weight=1.0)["image"]).astype(float)
    blended = (original + decode(faithful["image"])) / 2
    assert np.abs(half - blended).max() <= 1


def test_an_image_without_a_face_comes_back_unchanged_with_a_note(api):
    source = photo("coffee")
    body = extras(api, source, gfpgan_visibility=1.0)
    assert np.array_equal(decode(body["image"]), np.asarray(source))
    assert "GFPGAN: no face found in the image; it is unchanged" in body["html_info"]


def test_upscale_before_or_after_restoring_faces(api):
    source = photo("astronaut").resize((256, 256), Image.Resampling.LANCZOS)
    faces_first = extras(api, source, upscaler_1="Nearest", upscaling_resize=2,
                         gfpgan_visibility=1.0)
    upscale_first = extras(api, source, upscaler_1="Nearest", upscaling_resize=2,
                           gfpgan_visibility=1.0, upscale_first=True)
    assert faces_first["html_info"] == ("<p>GFPGAN visibility: 1.0, Postprocess upscale by: 2.0, "
                                        "Postprocess upscaler: Nearest</p>")
    assert upscale_first["html_info"].startswith("<p>Postprocess upscale by: 2.0")
    first, second = decode(faces_first["image"]), decode(upscale_first["image"])
    assert first.shape == second.shape == (512, 512, 3)
    # restored at 256 then doubled by nearest: every 2x2 block is one pixel; not so the other
    assert np.array_equal(first[::2, ::2], first[1::2, 1::2])
    assert not np.array_equal(second[::2, ::2], second[1::2, 1::2])


def test_generation_uses_the_restorer_the_setting_names(api):
    with api.ctx.options.override({"face_restoration_model": "GFPGAN"}):
        response = api.client.post("/sdapi/v1/txt2img", json={
            "prompt": "a portrait", "steps": 2, "width": 64, "height": 64, "seed": 5,
            "restore_faces": True})
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert "Face restoration: GFPGAN" in info["infotexts"][0]
    # a 64x64 image of a random tiny model has no face: it is kept, and the user is told
    assert "no face found" in info["comments"]

    kept = api.ctx.face_restorers
    api.ctx.face_restorers = FaceRestorers([("GFPGAN", api.models / "GFPGAN"),
                                            ("CodeFormer", api.data / "no-codeformer")])
    try:
        with api.ctx.options.override({"face_restoration_model": "CodeFormer"}):
            response = api.client.post("/sdapi/v1/txt2img", json={
                "prompt": "a portrait", "steps": 2, "width": 64, "height": 64,
                "restore_faces": True})
        assert response.status_code == 400
        assert "Face restorer 'CodeFormer' is not installed (installed: GFPGAN)" in response.text
    finally:
        api.ctx.face_restorers = kept


def test_bad_restorer_files_and_missing_weights_are_clear_errors(api, tmp_path):
    broken = tmp_path / "GFPGAN"
    broken.mkdir()
    (broken / "GFPGANv1.4.pth").write_bytes(b"PK\x03\x04 torn download")
    wrong = tmp_path / "Codeformer"
    wrong.mkdir()
    os.link(api.models / "GFPGAN" / "GFPGANv1.4.pth", wrong / "codeformer.pth")
    restorers = FaceRestorers([("GFPGAN", broken), ("CodeFormer", wrong)])
    with pytest.raises(UnsupportedRequestError, match="cannot be loaded from GFPGANv1.4.pth"):
        restorers.get("GFPGAN")
    with pytest.raises(UnsupportedRequestError, match="codeformer.pth holds a GFPGAN model"):
        restorers.get("CodeFormer")

    kept = api.ctx.face_restorers
    api.ctx.face_restorers = restorers
    try:
        response = api.client.post("/sdapi/v1/extra-single-image", json={
            "image": encode(photo("astronaut")), "gfpgan_visibility": 1.0})
        assert response.status_code == 400
        assert "cannot be loaded from GFPGANv1.4.pth" in response.text
        api.ctx.face_restorers = FaceRestorers([("GFPGAN", tmp_path / "none"),
                                                ("CodeFormer", tmp_path / "nothing")])
        response = api.client.post("/sdapi/v1/extra-single-image", json={
            "image": encode(photo("astronaut")), "codeformer_visibility": 1.0})
        assert response.status_code == 400
        assert "no face restorer is installed" in response.text
        assert str(tmp_path / "nothing") in response.json()["detail"]
    finally:
        api.ctx.face_restorers = kept
