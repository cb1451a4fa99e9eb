"""The procedural shapes dataset: determinism, captions, held-out split."""
from __future__ import annotations

import random

import numpy as np
import pytest

from modules.demo.shapes_dataset import (
    COLOURS, PALETTE, POSITIONS, SHAPES, SIZES, ShapesDataset, caption_dropout, held_out_scenes,
    held_out_triples, is_held_out, render_scene,
)


def _pixels(image) -> np.ndarray:
    return np.asarray(image)


def test_same_seed_gives_the_same_images_and_captions():
    first = ShapesDataset(seed=3, two_shape_prob=0.3)
    again = ShapesDataset(seed=3, two_shape_prob=0.3)
    for index in (0, 1, 17, 1000):
        assert first.caption(index) == again.caption(index)
        assert np.array_equal(_pixels(first.image(index)), _pixels(again.image(index)))


def test_samples_are_random_access_and_differ_between_seeds():
    dataset = ShapesDataset(seed=3)
    listed = [caption for _, caption, _ in dataset.samples(5, start=10)]
    assert listed == [dataset.caption(i) for i in range(10, 15)]
    other = ShapesDataset(seed=4)
    assert [other.caption(i) for i in range(20)] != [dataset.caption(i) for i in range(20)]


def test_caption_describes_the_main_shape_and_background():
    scene = ShapesDataset(seed=0).scene(0)
    caption = scene.caption()
    main = scene.main
    position_phrase = {"left": "on the left", "right": "on the right", "top": "at the top",
                       "bottom": "at the bottom", "center": "in the center"}[main.position]
    assert caption == (f"a {main.size} {main.colour} {main.shape} {position_phrase}, "
                       f"on a {scene.background} background")
    assert main.colour != scene.background


def test_image_shows_the_background_colour_and_the_shape_colour():
    dataset = ShapesDataset(seed=1)
    for index in range(20):
        scene, image = dataset.scene(index), _pixels(dataset.image(index))
        assert image.shape == (64, 64, 3)
        assert tuple(image[0, 0]) == PALETTE[scene.background]
        centre = scene.main.centre
        assert tuple(image[int(centre[1] * 64), int(centre[0] * 64)]) == PALETTE[scene.main.colour]


def test_the_vocabulary_covers_every_attribute():
    scenes = [ShapesDataset(seed=2, split="all").scene(i) for i in range(600)]
    assert {s.main.colour for s in scenes} == set(COLOURS)
    assert {s.background for s in scenes} == set(COLOURS)
    assert {s.main.shape for s in scenes} == set(SHAPES)
    assert {s.main.size for s in scenes} == set(SIZES)
    assert {s.main.position for s in scenes} == set(POSITIONS)


def test_two_shape_scenes_name_both_shapes():
    dataset = ShapesDataset(seed=5, two_shape_prob=1.0)
    scene = dataset.scene(0)
    assert len(scene.shapes) == 2
    assert " and a small " in scene.caption()
    assert len({scene.background, *(spec.colour for spec in scene.shapes)}) == 3


def test_training_never_sees_held_out_triples():
    triples = held_out_triples()
    assert 15 <= len(triples) <= 60      # about 12% of the 224 (colour, shape, background) triples
    train = ShapesDataset(seed=0, split="train")
    for index in range(500):
        main = train.scene(index).main
        assert not is_held_out(main.colour, main.shape, train.scene(index).background)
    held = held_out_scenes(60)
    assert len({s.caption() for s in held}) == 60
    assert all(is_held_out(s.main.colour, s.main.shape, s.background) for s in held)
    assert held == held_out_scenes(60)


def test_caption_dropout():
    scene = ShapesDataset(seed=0).scene(0)
    rng = random.Random(0)
    captions = [caption_dropout(scene, rng, part_drop_prob=0.5, empty_prob=0.1) for _ in range(400)]
    assert 20 <= captions.count("") <= 70
    assert scene.caption() in captions
    assert all(scene.main.shape in c for c in captions if c)
    assert f"a {scene.main.shape}" in captions    # every optional part dropped


@pytest.mark.parametrize("size", [64, 128])
def test_render_size(size):
    scene = ShapesDataset(seed=0).scene(3)
    assert render_scene(scene, size).size == (size, size)
