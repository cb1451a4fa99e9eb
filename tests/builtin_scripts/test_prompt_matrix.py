"""Prompt matrix on a tiny checkpoint, through the API with script_name: 2^n images, each the
plain generation of its prompt with the same seed, and a labelled grid first."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tests.builtin_scripts.conftest import REQUEST, decoded

def test_every_combination_is_drawn_with_one_seed_and_a_grid_first(client):
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "prompt": "a cat | red | big", "script_name": "Prompt matrix",
        "script_args": [False, False, "positive", "comma", 0]})
    images = decoded(answer)
    info = json.loads(answer.json()["info"])
    assert info["all_prompts"] == ["a cat", "a cat, red", "a cat, big", "a cat, red, big"]
    assert info["all_seeds"] == [42] * 4 and info["index_of_first_image"] == 1
    grid, cells = images[0], images[1:]
    assert len(cells) == 4 and all(cell.size == (64, 64) for cell in cells)
    assert grid.width > 2 * 64 and grid.height > 2 * 64        # 2 x 2 cells plus labels
    plain = decoded(client.post("/sdapi/v1/txt2img", json={**REQUEST, "prompt": "a cat, big"}))
    assert np.array_equal(np.asarray(plain[0]), np.asarray(cells[2]))


def test_three_parts_at_the_start_with_different_seeds(client):
    answer = client.post("/sdapi/v1/txt2img", json={
        **REQUEST, "prompt": "cat|red|big|fluffy", "script_name": "prompt matrix",
        "script_args": [True, True, "positive", "space", 4]})
    images = decoded(answer)
    info = json.loads(answer.json()["info"])
    assert len(images) == 1 + 8
    assert info["all_prompts"][3] == "red big cat" and info["all_prompts"][7] == \
        "red big fluffy cat"
    assert info["all_seeds"] == list(range(42, 50))


def test_grid_labels_stand_over_their_columns_and_beside_their_rows():
    from modules.processing.grid_annotations import (GridAnnotation, draw_grid_annotations,
                                                     grid_with_margin)
    cells = [Image.new("RGB", (100, 80), (0, 128, 255)) for _ in range(4)]
    grid = grid_with_margin(cells, 2, 2, margin=6)
    assert grid.size == (206, 166)
    labelled = np.asarray(draw_grid_annotations(
        grid, 100, 80, [[GridAnnotation("left")], [GridAnnotation("right", False)]],
        [[GridAnnotation("top row")], [GridAnnotation("bottom row")]], margin=6))
    left_margin = labelled.shape[1] - 206
    top_margin = labelled.shape[0] - 166
    assert left_margin > 0 and top_margin > 0
    dark = labelled.sum(axis=2) < 300
    assert dark[:top_margin, left_margin:left_margin + 100].any()          # "left"
    assert not dark[:top_margin, left_margin + 106:].any()    # "right" is grey (inactive)
    assert dark[top_margin:top_margin + 80, :left_margin].any()            # "top row"
    assert (labelled[top_margin + 5, left_margin + 5] == [0, 128, 255]).all()
