"""Prompts from file or textbox on a tiny checkpoint, through the API with script_name: one image
per line, each with that line's options, equal to the plain generation with those options."""
from __future__ import annotations

import json

import numpy as np

from modules.processing.processing_objects import Processed
from tests.builtin_scripts.conftest import REQUEST, decoded

LINES = "\n".join([
    "a red circle",
    '--prompt "a blue square" --negative_prompt "green" --steps 3 --seed 7 --width 48',
    "",
    "--prompt 'a star' --cfg_scale 4.5 --sampler_name 'DPM++ 2M'",
])


def test_one_job_per_line_with_its_options(client):
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "prompt": "", "script_name": "Prompts from file or textbox",
        "script_args": [False, False, "start", LINES]})
    images = decoded(answer)
    assert [image.size for image in images] == [(64, 64), (48, 64), (64, 64)]
    infotexts = [image.info["parameters"] for image in images]
    assert infotexts[0].startswith("a red circle\n")
    assert infotexts[1].startswith("a blue square\nNegative prompt: green\nSteps: 3,")
    assert "Seed: 7," in infotexts[1] and "Size: 48x64" in infotexts[1]
    assert "CFG scale: 4.5" in infotexts[2] and "Sampler: DPM++ 2M" in infotexts[2]
    info = json.loads(answer.json()["info"])
    assert info["all_prompts"] == ["a red circle", "a blue square", "a star"]
    plain = decoded(client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "prompt": "a blue square", "negative_prompt": "green", "steps": 3,
        "seed": 7, "width": 48}))
    assert np.array_equal(np.asarray(plain[0]), np.asarray(images[1]))


def test_the_request_prompt_joins_each_line_and_seeds_iterate(client):
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "prompt": "oil painting", "seed": 100,
        "script_name": "prompts from file or textbox",
        "script_args": [True, False, "end", "a cat\na dog"]})
    info = json.loads(answer.json()["info"])
    assert info["all_prompts"] == ["oil painting a cat", "oil painting a dog"]
    images = decoded(answer)
    assert "Seed: 100," in images[0].info["parameters"]
    assert "Seed: 101," in images[1].info["parameters"]


def test_a_bad_line_is_refused_naming_the_script(client):
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "script_name": "Prompts from file or textbox",
        "script_args": [False, False, "start", "--colour red"]})
    assert answer.status_code == 422        # a bad line is bad input, not a server error
    assert "Script 'Prompts from file or textbox' failed" in answer.json()["detail"]
    assert "unknown option --colour" in answer.json()["detail"]


def test_processed_takes_a1111s_constructor():
    from modules.processing import StableDiffusionProcessingTxt2Img
    p = StableDiffusionProcessingTxt2Img(prompt="x", seed=3, steps=4)
    result = Processed(p, ["image"], 3, "info text")
    assert (result.prompt, result.seed, result.steps, result.infotexts) == \
        ("x", 3, 4, ["info text"])
    assert json.loads(result.js())["all_seeds"] == [3]
