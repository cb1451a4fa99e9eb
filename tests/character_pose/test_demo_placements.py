"""The service on a fresh clone's models: the demo checkpoint and the demo ControlNet (no
OpenPose or Depth model is installed, so the service falls back to the demo canny ControlNet).
A character re-posed to three placements keeps its colour and shape and moves where the control
map puts it, as the demo shape analyser reads the images."""
from __future__ import annotations

import base64
import io

import pytest
import requests
from PIL import Image

from modules.demo.shapes_dataset import held_out_scenes, render_scene
from tests.character_pose.test_service_server import API
from tests.demo.conftest import DEMO_CHECKPOINT
from tests.demo.controlnet_adherence import DEMO_CONTROLNET, control_scene, png_b64
from tests.demo.shape_analyser import analyse
from tests.server_process import start_app_server, stop_app_server

PLACEMENTS = ("left", "right", "center")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (DEMO_CHECKPOINT.is_file() and DEMO_CONTROLNET.is_file()):
        pytest.skip("the demo checkpoint or the demo ControlNet is absent")
    running = start_app_server(tmp_path_factory.mktemp("demo-service"), args=(
        "--nowebui", "--ckpt", str(DEMO_CHECKPOINT), "--controlnet-dir",
        str(DEMO_CONTROLNET.parent)))
    yield running
    stop_app_server(running)


def test_a_demo_character_keeps_its_look_and_moves_with_the_control_map(server):
    # a large shape: the analyser reads small ones less reliably
    scene = next(s for s in held_out_scenes(8) if s.main.size == "large")
    prompt = scene.caption(frozenset({"position"}))
    status = requests.get(server.base_url + f"{API}/status", timeout=60).json()
    assert status["blend"]["present"] is False and "modules.merger" in \
        status["blend"]["how_to_build"]
    assert status["depth"]["model"].startswith("control_demo-shapes_canny")
    made = requests.post(server.base_url + f"{API}/characters", timeout=300, json={
        "prompt": prompt, "seed": 31, "width": 64, "height": 64, "steps": 20,
        "sampler_name": "DPM++ 2M", "cfg_scale": 7})
    assert made.status_code == 200, made.text
    character = made.json()
    for placement in PLACEMENTS:
        reference = render_scene(control_scene(scene, placement), 64)
        answer = requests.post(
            server.base_url + f"{API}/characters/{character['id']}/pose", timeout=300,
            json={"control": "depth", "reference_image": png_b64(reference)})
        assert answer.status_code == 200, answer.text
        image = Image.open(io.BytesIO(base64.b64decode(answer.json()["image"])))
        seen = analyse(image)
        assert (seen.colour, seen.shape, seen.position) == \
            (scene.main.colour, scene.main.shape, placement), (prompt, placement, seen)
