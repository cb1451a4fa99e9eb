"""Depth preprocessors on user-supplied weights: tiny Depth Anything files in the released key
layout load strictly into transformers' network; /controlnet/detect and a txt2img unit use them
from models/ControlNet-annotators; a missing file names the folder and the file."""
from __future__ import annotations

import base64
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import skimage.data
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.app import create_api_app
from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.engine.depth_anything import DepthModelError, convert_state_dict, \
    load_depth_anything
from modules.engine.dpt_midas import load_dpt_midas
from modules.engine.zoedepth import load_zoedepth
from tests.controlnet.tiny_annotators import depth_anything_state_dict, \
    dpt_hybrid_midas_state_dict, write_depth_anything, write_dpt_hybrid_midas, write_zoedepth, \
    zoedepth_state_dict
from tests.engine.tiny_checkpoints import write_tiny_checkpoint, write_tiny_controlnet

ROOT = Path(__file__).resolve().parents[2]


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


ASTRONAUT = png_b64(Image.fromarray(skimage.data.astronaut()).resize((96, 96)))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("controlnet-depth")
    for folder in ("Stable-diffusion", "ControlNet"):
        (data / "models" / folder).mkdir(parents=True)
    write_tiny_checkpoint(data / "models" / "Stable-diffusion" / "tiny.safetensors", "sd1", seed=1)
    write_tiny_controlnet(data / "models" / "ControlNet" / "control_sd15_depth.safetensors",
                          "sd1", seed=5)
    args, _ = parse_args(["--data-dir", str(data), "--nowebui"])
    ctx = build_app_context(args, ROOT)
    yield SimpleNamespace(client=TestClient(create_api_app(ctx)), ctx=ctx,
                          annotators=data / "models" / "ControlNet-annotators")
    ctx.close()


def detect(api, module: str, resolution: int = 64):
    return api.client.post("/controlnet/detect", json={
        "controlnet_module": module, "controlnet_input_images": [ASTRONAUT],
        "controlnet_processor_res": resolution})


def test_released_layout_loads_strictly_and_splits_the_fused_attention():
    original = depth_anything_state_dict(seed=3)
    model = load_depth_anything(original, version=2)      # raises on any missing / extra key
    layer = model.backbone.encoder.layer[5].attention
    qkv = original["pretrained.blocks.5.attn.qkv.weight"]
    assert layer.q_proj.weight.equal(qkv[:64]) and layer.v_proj.weight.equal(qkv[128:])
    # the deepest fusion block (refinenet4) runs first in transformers' order
    assert model.neck.fusion_stage.layers[0].projection.weight.equal(
        original["depth_head.scratch.refinenet4.out_conv.weight"])
    assert model.config.backbone_config.out_indices == [3, 6, 9, 12]     # V2 reads blocks 2,5,8,11
    assert load_depth_anything(original, version=1).config.backbone_config.out_indices == \
        [9, 10, 11, 12]                                                  # V1 the last four


def test_midas_dpt_hybrid_loads_strictly_into_transformers_dpt():
    original = dpt_hybrid_midas_state_dict(seed=2)
    model = load_dpt_midas(original)                    # raises on any missing / extra key
    qkv = original["pretrained.model.blocks.3.attn.qkv.weight"]
    attention = model.dpt.encoder.layer[3].attention.attention
    assert attention.key.weight.equal(qkv[64:128])
    assert model.dpt.embeddings.backbone.bit.encoder.stages[1].layers[1].conv2.weight.equal(
        original["pretrained.model.patch_embed.backbone.stages.1.blocks.1.conv2.weight"])
    assert model.neck.reassemble_stage.readout_projects[3][0].weight.equal(
        original["pretrained.act_postprocess4.0.project.0.weight"])
    assert model.config.backbone_out_indices == [0, 1, 8, 11]   # MiDaS' hooks
    assert model.config.image_size == 64                       # 4 x 4 patches of 16


def test_zoedepth_loads_strictly_with_its_beit_and_metric_head():
    original = zoedepth_state_dict(seed=5)
    model = load_zoedepth({"model": original})            # the release wraps it in "model"
    block = "core.core.pretrained.model.blocks.2.attn"
    attention = model.backbone.beit.layers[2].attention
    assert attention.k_proj.weight.equal(original[f"{block}.qkv.weight"][64:128])
    assert attention.q_proj.bias.equal(original[f"{block}.q_bias"])
    assert attention.k_proj.bias is None
    assert model.metric_head.attractors[1].conv2.weight.equal(
        original["attractors.1._net.2.weight"])
    assert model.config.num_attractors == [8, 4, 2, 1]
    assert model.config.backbone_config.out_features == ["stage1", "stage2", "stage3", "stage4"]


def test_a_file_of_another_kind_is_a_clear_error():
    original = depth_anything_state_dict()
    original["model.diffusion_model.out.0.weight"] = original.pop("pretrained.norm.weight")
    with pytest.raises(DepthModelError, match="model.diffusion_model.out.0.weight"):
        convert_state_dict(original)
    del original["model.diffusion_model.out.0.weight"]
    with pytest.raises(DepthModelError, match="do not fit"):
        load_depth_anything(original, version=2)


def test_depth_modules_are_listed_under_the_depth_control_type(api):
    modules = api.client.get("/controlnet/module_list").json()["module_list"]
    assert {"depth_midas", "depth_zoe", "depth_anything_v2", "depth_anything"} <= set(modules)
    types = api.client.get("/controlnet/control_types").json()["control_types"]
    assert "depth_anything_v2" in types["Depth"]["module_list"]


def test_missing_weights_name_the_folder_and_the_file(api):
    answer = detect(api, "depth_anything")
    assert answer.status_code == 422
    message = answer.json()["detail"]
    assert "depth_anything_vitl14.pth" in message
    assert str(api.annotators / "depth_anything") in message


def test_detect_returns_a_grey_depth_map_from_the_users_weights(api):
    write_depth_anything(api.annotators / "depth_anything_v2" / "depth_anything_v2_vits.pth",
                         seed=1)
    answer = detect(api, "depth_anything_v2")
    assert answer.status_code == 200, answer.text
    first = decode(answer.json()["images"][0])
    assert first.shape == (64, 64, 3)                  # the preprocessor resolution
    assert (first[..., 0] == first[..., 1]).all() and (first[..., 1] == first[..., 2]).all()
    assert first.min() == 0 and first.max() == 255     # stretched to the full range
    # the default file name takes precedence once present: other weights, another map
    write_depth_anything(
        api.annotators / "depth_anything_v2" / "depth_anything_v2_vitl.safetensors", seed=2)
    second = decode(detect(api, "depth_anything_v2").json()["images"][0])
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("module", ["depth_midas", "depth"])   # "depth": ControlNet 1.0's name
def test_midas_runs_from_sd_webui_controlnets_file_name(api, module):
    write_dpt_hybrid_midas(api.annotators / "midas" / "dpt_hybrid-midas-501f0c75.pt", seed=3)
    answer = detect(api, module, resolution=72)
    assert answer.status_code == 200, answer.text
    depth = decode(answer.json()["images"][0])
    assert depth.shape == (72, 72, 3) and depth.min() == 0 and depth.max() == 255


def test_zoedepth_runs_from_sd_webui_controlnets_file_name(api):
    write_zoedepth(api.annotators / "zoedepth" / "ZoeD_M12_N.pt", seed=6)
    answer = detect(api, "depth_zoe", resolution=64)
    assert answer.status_code == 200, answer.text
    depth = decode(answer.json()["images"][0])
    assert depth.shape == (64, 64, 3) and (depth[..., 0] == depth[..., 1]).all()
    # sd-webui-controlnet's stretch: the nearest 2% are white, the farthest 15% black
    assert (depth[..., 0] == 255).mean() >= 0.02 and (depth[..., 0] == 0).mean() >= 0.15


def test_txt2img_unit_with_a_depth_module_returns_the_depth_map(api):
    write_depth_anything(api.annotators / "depth_anything" / "depth_anything_vits14.pth", seed=4)
    model = next(name for name in api.client.get("/controlnet/model_list").json()["model_list"]
                 if name.startswith("control_sd15_depth"))
    answer = api.client.post("/sdapi/v1/txt2img", json={
        "prompt": "an astronaut", "width": 64, "height": 64, "steps": 2, "seed": 3,
        "alwayson_scripts": {"controlnet": {"args": [{
            "enabled": True, "module": "depth_anything", "model": model, "image": ASTRONAUT,
            "processor_res": 64}]}}})
    assert answer.status_code == 200, answer.text
    images = answer.json()["images"]
    assert len(images) == 2                            # the image and the detected map
    depth = decode(images[1])
    assert depth.shape == (64, 64, 3) and (depth[..., 0] == depth[..., 2]).all()
    assert depth.max() == 255
    assert "Module: depth_anything" in answer.json()["info"]
