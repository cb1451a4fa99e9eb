"""X/Y/Z plot on a tiny checkpoint through the API with script_name: a grid of the right size
with labels, one image per cell equal to the plain generation with that cell's values, the
webuiapi client's argument layout, and clear refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.builtin_scripts.conftest import REQUEST, decoded

STEPS, CFG_SCALE, PROMPT_SR, SAMPLER, SIZE, NOTHING = 4, 6, 7, 9, 41, 0


def xyz_args(x_type, x_values, y_type=NOTHING, y_values="", *, legend=True, lone=True,
             sub_grids=False, vary_seeds=(False, False, False), margin=0, dropdowns=([], [], []),
             z_type=NOTHING, z_values=""):
    return [x_type, x_values, dropdowns[0], y_type, y_values, dropdowns[1], z_type, z_values,
            dropdowns[2], legend, lone, sub_grids, False, *vary_seeds, margin, False]


def as_array(image):
    return np.asarray(image.convert("RGB"))


def test_the_axis_list_keeps_a1111s_indices(client):
    info = client.get("/sdapi/v1/script-info").json()
    xyz = next(s for s in info if s["name"] == "x/y/z plot" and not s["is_img2img"])
    x_type = xyz["args"][0]
    assert x_type["label"] == "X type"
    labels = x_type["choices"]
    assert [labels[i] for i in (NOTHING, 1, STEPS, CFG_SCALE, PROMPT_SR, SAMPLER, SIZE)] == \
        ["Nothing", "Seed", "Steps", "CFG Scale", "Prompt S/R", "Sampler", "Size"]
    assert labels[11] == "Checkpoint name" and labels[24] == "Clip skip"
    assert "Image CFG Scale" not in labels              # an img2img axis
    assert len(xyz["args"]) == 18


def test_steps_by_cfg_grid_has_one_plain_image_per_cell(client):
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "prompt": "a red ball", "script_name": "X/Y/Z plot",
        "script_args": xyz_args(STEPS, "1-2", CFG_SCALE, "3, 9")})
    images = decoded(answer)
    info = json.loads(answer.json()["info"])
    grid, cells = images[0], images[1:]
    assert len(cells) == 4 and info["index_of_first_image"] == 1
    assert grid.width > 2 * 64 and grid.height > 2 * 64          # cells plus both legends
    assert info["all_seeds"] == [42] * 4
    assert "X Type: Steps" in info["infotexts"][0] and "Y Type: CFG Scale" in info["infotexts"][0]
    assert 'Y Values: "3, 9"' in info["infotexts"][0] and "Script: X/Y/Z plot" in \
        info["infotexts"][0]
    # cell (x=1, y=0) is steps 2, CFG 3; cell (x=0, y=1) is steps 1, CFG 9
    for cell, steps, cfg in ((cells[1], 2, 3.0), (cells[2], 1, 9.0)):
        plain = decoded(client.post("/sdapi/v1/txt2img", json={
            **REQUEST, "prompt": "a red ball", "steps": steps, "cfg_scale": cfg}))[0]
        assert np.array_equal(as_array(plain), as_array(cell))
    assert "Steps: 2" in info["infotexts"][2] and "CFG scale: 3" in info["infotexts"][2]
    assert not np.array_equal(as_array(cells[0]), as_array(cells[3]))


def test_without_legend_the_grid_is_exactly_the_cells(client):
    images = decoded(client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "script_name": "x/y/z plot",
        "script_args": xyz_args(SIZE, "64x64, 64x64, 64x64", legend=False, lone=False,
                                margin=4)}))
    assert len(images) == 1 and images[0].size == (3 * 64 + 2 * 4, 64)


def test_prompt_search_replace_and_varied_seeds(client):
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "prompt": "a cat in the snow", "script_name": "X/Y/Z plot",
        "script_args": xyz_args(PROMPT_SR, "cat, dog, fox", vary_seeds=(True, False, False))})
    info = json.loads(answer.json()["info"])
    assert len(decoded(answer)) == 1 + 3
    assert info["all_prompts"] == ["a cat in the snow", "a dog in the snow", "a fox in the snow"]
    assert info["all_seeds"] == [42, 43, 44]


def test_a_z_axis_gives_one_sub_grid_per_value(client):
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "script_name": "X/Y/Z plot",
        "script_args": xyz_args(STEPS, "1,2", z_type=CFG_SCALE, z_values="2,5", legend=False,
                                lone=False, sub_grids=True)})
    images = decoded(answer)
    assert [image.size for image in images] == [(256, 64), (128, 64), (128, 64)]


def test_the_webuiapi_layout_with_text_booleans_and_sampler_names(client):
    """webuiapi's README: 14 arguments (A1111 1.6), booleans as "True"/"False", the dropdown
    values as an empty string and the values as text."""
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "script_name": "X/Y/Z Plot",
        "script_args": [STEPS, "1,2", "", SAMPLER, "Euler a, Euler", "", NOTHING, "", "",
                        "True", "False", "False", "False", 0]})
    images = decoded(answer)
    info = json.loads(answer.json()["info"])
    assert len(images) == 1                                  # include_lone_images "False"
    assert "Y Values: \"Euler a, Euler\"" in info["infotexts"][0]


@pytest.mark.parametrize("args, message", [
    (xyz_args(SAMPLER, "Euler, Nonexistent"), "Unknown sampler: Nonexistent"),
    (xyz_args(STEPS, "one, two"), "Steps: 'one' is not a number or a range"),
    (xyz_args(99, "1"), "X type 99 is not an axis index"),
    (xyz_args(STEPS, "1-100000 [100000]"), "The grid would be too large"),
    (xyz_args(STEPS, "1, 100000"), "steps 100000 is above the server's limit"),
])
def test_bad_values_are_refused_naming_the_script(client, args, message):
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "script_name": "X/Y/Z plot", "script_args": args})
    assert answer.status_code == 422, answer.text
    assert "Script 'X/Y/Z plot' failed" in answer.text and message in answer.text
    assert decoded(client.post("/sdapi/v1/txt2img", json=REQUEST))      # the next one works


def test_a_settings_axis_applies_the_setting_per_cell_and_restores_it(client):
    """Clip skip is a setting (override_settings in the cell's p), not a request field."""
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "prompt": "a blue house", "script_name": "X/Y/Z plot",
        "script_args": xyz_args(24, "1, 2")})
    cells = decoded(answer)[1:]
    plain = decoded(client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "prompt": "a blue house",
        "override_settings": {"CLIP_stop_at_last_layers": 2}}))[0]
    assert np.array_equal(as_array(plain), as_array(cells[1]))
    assert not np.array_equal(as_array(cells[0]), as_array(cells[1]))
    assert "Clip skip: 2" in json.loads(answer.json()["info"])["infotexts"][2]
    assert client.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1
