"""The character-pose service through the real server (launch.py, uvicorn, API only, two
--api-auth users) on a tiny SD1 checkpoint and a tiny openpose ControlNet: characters keep their
seed and prompt, presets and poses from photos re-pose them, everything survives a restart, and
users only see their own characters."""
from __future__ import annotations

import base64
import io
import os
import time

import numpy as np
import pytest
import requests
import skimage
from PIL import Image, PngImagePlugin

from tests.engine.tiny_checkpoints import write_tiny_checkpoint, write_tiny_controlnet
from tests.server_process import start_app_server, stop_app_server

API = "/character-pose/v1"
ALICE, BOB = ("alice", "wonderland"), ("bob", "builder")
PHOTOS = os.path.join(os.path.dirname(skimage.__file__), "data")
CHARACTER = {"name": "tiny knight", "prompt": "a knight with a red cape", "seed": -1,
             "width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "cfg_scale": 7}


def photo_b64(name: str) -> str:
    with open(os.path.join(PHOTOS, name), "rb") as handle:
        return base64.b64encode(handle.read()).decode()


def pixels(data: bytes | str) -> np.ndarray:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


class Service:
    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.server = None

    def start(self):
        self.server = start_app_server(self.data_dir, args=(
            "--nowebui", "--api-auth", f"{ALICE[0]}:{ALICE[1]},{BOB[0]}:{BOB[1]}"))

    def stop(self):
        stop_app_server(self.server)

    def call(self, method: str, path: str, user=ALICE, **kwargs) -> requests.Response:
        return requests.request(method, self.server.base_url + path, auth=user, timeout=300,
                                **kwargs)


def write_models(data) -> None:
    """The tiny SD1 checkpoint and the tiny openpose ControlNet the service draws with."""
    for folder in ("Stable-diffusion", "ControlNet"):
        (data / "models" / folder).mkdir(parents=True)
    write_tiny_checkpoint(data / "models" / "Stable-diffusion" / "tiny.safetensors", "sd1",
                          seed=1)
    write_tiny_controlnet(data / "models" / "ControlNet" / "control_tiny_openpose.safetensors",
                          "sd1", seed=4)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    data = tmp_path_factory.mktemp("character-pose")
    write_models(data)
    running = Service(data)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def knight(service):
    answer = service.call("POST", f"{API}/characters", json=CHARACTER)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_character_keeps_its_resolved_seed_checkpoint_and_image(service, knight):
    assert knight["seed"] >= 0 and knight["parameters"]["seed"] == knight["seed"]
    assert knight["checkpoint"].startswith("tiny") and knight["checkpoint_hash"]
    assert f"Seed: {knight['seed']}" in knight["infotext"]
    image = service.call("GET", knight["image_url"])
    assert image.status_code == 200 and pixels(image.content).shape == (64, 64, 3)


def test_two_presets_give_two_images_with_the_characters_seed_and_prompt(service, knight):
    renders = []
    for pose in ("standing", "running"):
        answer = service.call("POST", f"{API}/characters/{knight['id']}/pose",
                              json={"pose_id": pose})
        assert answer.status_code == 200, answer.text
        renders.append(answer.json())
    for render in renders:
        assert f"Seed: {knight['seed']}" in render["infotext"]
        assert render["infotext"].startswith(CHARACTER["prompt"])
        assert "ControlNet 0:" in render["infotext"]
    assert not np.array_equal(pixels(renders[0]["image"]), pixels(renders[1]["image"]))
    again = service.call("POST", f"{API}/characters/{knight['id']}/pose",
                         json={"pose_id": "running"}).json()
    assert np.array_equal(pixels(again["image"]), pixels(renders[1]["image"]))
    history = service.call("GET", f"{API}/characters/{knight['id']}/history").json()
    assert [r["pose_id"] for r in history][-3:] == ["standing", "running", "running"]
    stored = service.call("GET", history[-1]["image_url"])
    assert np.array_equal(pixels(stored.content), pixels(again["image"]))


def test_a_pose_from_a_photo_of_a_person_is_added_and_used(service, knight):
    answer = service.call("POST", f"{API}/poses",
                          json={"name": "astronaut", "photo": photo_b64("astronaut.png")})
    assert answer.status_code == 200, answer.text
    pose = answer.json()
    body = pose["keypoints"]["people"][0]["pose_keypoints_2d"]
    assert sum(1 for c in body[2::3] if c > 0) >= 5 and not pose["builtin"]
    preview = service.call("GET", pose["preview_url"])
    assert preview.status_code == 200 and pixels(preview.content).max() > 0
    render = service.call("POST", f"{API}/characters/{knight['id']}/pose",
                          json={"pose_id": pose["id"]})
    assert render.status_code == 200, render.text
    # the photo is kept only when asked
    kept = service.call("POST", f"{API}/poses", json={
        "name": "kept", "photo": photo_b64("astronaut.png"), "keep_photo": True}).json()
    stored = service.data_dir / "character-pose" / "poses"
    assert sorted(p.stem for p in stored.iterdir()) == [kept["id"]]
    assert service.call("DELETE", f"{API}/poses/{kept['id']}").status_code == 200
    assert list(stored.iterdir()) == []


def test_bad_requests_are_clear_errors(service, knight):
    no_person = service.call("POST", f"{API}/poses", json={"photo": photo_b64("brick.png")})
    assert no_person.status_code == 422 and "no person found" in no_person.json()["detail"]
    unknown = service.call("POST", f"{API}/characters/nobody/pose", json={"pose_id": "running"})
    assert unknown.status_code == 404
    no_pose = service.call("POST", f"{API}/characters/{knight['id']}/pose",
                           json={"pose_id": "moonwalk"})
    assert no_pose.status_code == 404 and "moonwalk" in no_pose.json()["detail"]
    malformed = service.call("POST", f"{API}/characters/{knight['id']}/pose",
                             json={"keypoints": {"people": [{"pose_keypoints_2d": [1, 2]}]}})
    assert malformed.status_code == 422 and "malformed keypoints" in malformed.json()["detail"]
    builtin = service.call("DELETE", f"{API}/poses/standing")
    assert builtin.status_code == 403
    # a seed the store cannot keep (found by the OpenAPI fuzz test: it was a 500)
    huge = service.call("POST", f"{API}/characters", json={**CHARACTER, "seed": 2 ** 70})
    assert huge.status_code == 422 and "seed" in huge.text


def test_a_failed_generation_leaves_no_character(service):
    before = service.call("GET", f"{API}/characters").json()
    answer = service.call("POST", f"{API}/characters",
                          json={**CHARACTER, "prompt": "knight " * 5000})   # over the limit
    assert answer.status_code == 422 and "prompt" in answer.json()["detail"]
    assert service.call("GET", f"{API}/characters").json() == before


def test_users_see_only_their_own_characters(service, knight):
    assert service.call("GET", f"{API}/characters/{knight['id']}", user=BOB).status_code == 404
    assert all(c["id"] != knight["id"]
               for c in service.call("GET", f"{API}/characters", user=BOB).json())
    repose = service.call("POST", f"{API}/characters/{knight['id']}/pose", user=BOB,
                          json={"pose_id": "standing"})
    assert repose.status_code == 404
    assert service.call("GET", f"{API}/characters", user=("bob", "wrong")).status_code == 401


def test_docs_list_every_service_route_with_a_description(service):
    schema = service.call("GET", "/openapi.json").json()
    routes = {path: spec for path, spec in schema["paths"].items() if path.startswith(API)}
    assert {f"{API}/characters", f"{API}/characters/{{character_id}}/pose", f"{API}/poses",
            f"{API}/poses/{{pose_id}}/preview"} <= set(routes)
    for spec in routes.values():
        for operation in spec.values():
            assert operation.get("summary") and "Character pose" in operation["tags"]
            assert "Example: `curl " in operation.get("description", ""), operation["summary"]
    body = schema["components"]["schemas"]["ReposeRequest"]
    assert body["examples"][0]["pose_id"] == "running"


def test_characters_and_history_survive_a_restart(service, knight):
    before = service.call("GET", f"{API}/characters/{knight['id']}/history").json()
    service.stop()
    service.start()
    assert service.call("GET", f"{API}/characters/{knight['id']}").json()["seed"] == \
        knight["seed"]
    after = service.call("GET", f"{API}/characters/{knight['id']}/history").json()
    assert [r["id"] for r in after] == [r["id"] for r in before]
    assert service.call("GET", after[0]["image_url"]).status_code == 200


def test_a_batch_of_poses_is_one_job_followed_through_the_jobs_api(service, knight):
    before = len(service.call("GET", f"{API}/characters/{knight['id']}/history").json())
    queued = service.call("POST", f"{API}/characters/{knight['id']}/poses",
                          json={"pose_ids": ["standing", "waving", "running"]})
    assert queued.status_code == 202, queued.text
    job_url = queued.json()["status_url"]
    deadline = time.monotonic() + 300
    while (status := service.call("GET", job_url).json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status["state"] == "done", status
    images = status["result"]["images"]
    assert len(images) == 3
    single = service.call("POST", f"{API}/characters/{knight['id']}/pose",
                          json={"pose_id": "running"}).json()
    # the batch draws each pose exactly as a single re-pose does
    assert np.array_equal(pixels(images[2]), pixels(single["image"]))
    history = service.call("GET", f"{API}/characters/{knight['id']}/history").json()
    assert [r["pose_id"] for r in history[before:]] == ["standing", "waving", "running",
                                                        "running"]
    unknown = service.call("POST", f"{API}/characters/{knight['id']}/poses",
                           json={"pose_ids": ["standing", "moonwalk"]})
    assert unknown.status_code == 404


def test_a_character_from_an_image_with_parameters_redraws_like_the_original(service, knight):
    """The character's image carries its infotext (as the API's PNGs do): a character made
    from it has the same prompt, seed and size, and re-poses exactly like the original."""
    original = service.call("GET", knight["image_url"]).content
    copy = service.call("POST", f"{API}/characters/from-image",
                        json={"name": "copy", "image": base64.b64encode(original).decode()})
    assert copy.status_code == 200, copy.text
    character = copy.json()
    assert character["seed"] == knight["seed"] and character["id"] != knight["id"]
    assert character["parameters"]["prompt"] == CHARACTER["prompt"]
    assert (character["parameters"]["width"], character["parameters"]["height"]) == (64, 64)
    pose = {"pose_id": "pointing"}
    mine = service.call("POST", f"{API}/characters/{knight['id']}/pose", json=pose).json()
    theirs = service.call("POST", f"{API}/characters/{character['id']}/pose", json=pose).json()
    assert np.array_equal(pixels(mine["image"]), pixels(theirs["image"]))
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buffer, format="PNG")
    plain = service.call("POST", f"{API}/characters/from-image",
                         json={"image": base64.b64encode(buffer.getvalue()).decode()})
    assert plain.status_code == 422 and "no A1111 generation parameters" in plain.text
    buffer = io.BytesIO()
    huge_seed = PngImagePlugin.PngInfo()
    huge_seed.add_text("parameters", "a knight\nSteps: 2, Sampler: Euler, Seed: "
                                     "99999999999999999999999, Size: 64x64")
    Image.new("RGB", (64, 64)).save(buffer, format="PNG", pnginfo=huge_seed)
    refused = service.call("POST", f"{API}/characters/from-image",
                           json={"image": base64.b64encode(buffer.getvalue()).decode()})
    assert refused.status_code == 422 and "is outside -1" in refused.text


def test_keypoints_and_both_controls_and_a_named_checkpoint(service, knight):
    standing = service.call("GET", f"{API}/poses/standing").json()["keypoints"]
    by_keypoints = service.call("POST", f"{API}/characters/{knight['id']}/pose",
                                json={"keypoints": standing}).json()
    by_id = service.call("POST", f"{API}/characters/{knight['id']}/pose",
                         json={"pose_id": "standing"}).json()
    assert np.array_equal(pixels(by_keypoints["image"]), pixels(by_id["image"]))
    both = service.call("POST", f"{API}/characters/{knight['id']}/pose", json={
        "control": "both", "pose_id": "waving", "reference_image": photo_b64("astronaut.png"),
        "guidance_end": 0.5})
    assert both.status_code == 200, both.text
    info = both.json()["infotext"]
    assert "ControlNet 0:" in info and "ControlNet 1:" in info and "Guidance End: 0.5" in info
    assert set(both.json()["settings"]["controlnets"]) == {"openpose", "depth"}
    no_reference = service.call("POST", f"{API}/characters/{knight['id']}/pose",
                                json={"control": "depth"})
    assert no_reference.status_code == 422 and "reference_image" in no_reference.text
    named = service.call("POST", f"{API}/characters", json={**CHARACTER, "checkpoint": "tiny"})
    assert named.status_code == 200 and named.json()["checkpoint"].startswith("tiny")
    missing = service.call("POST", f"{API}/characters",
                           json={**CHARACTER, "checkpoint": "anime-blend-7-3"})
    assert missing.status_code == 404 and "tiny" in missing.json()["detail"]
