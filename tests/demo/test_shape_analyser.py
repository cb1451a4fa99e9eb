"""The adherence analyser must read the dataset's own images right (ground truth)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from modules.demo.shapes_dataset import PALETTE, ShapesDataset
from tests.demo.shape_analyser import analyse, colour_shares, nearest_colour

COUNT = 300


def _accuracy(dataset: ShapesDataset, transform=lambda image: image) -> dict[str, float]:
    hits = {"background": 0, "colour": 0, "shape": 0, "size": 0, "position": 0}
    for image, _, scene in dataset.samples(COUNT):
        found = analyse(transform(image))
        hits["background"] += found.background == scene.background
        for field in ("colour", "shape", "size", "position"):
            hits[field] += getattr(found, field) == getattr(scene.main, field)
    return {field: count / COUNT for field, count in hits.items()}


def test_reads_ground_truth_single_shapes():
    accuracy = _accuracy(ShapesDataset(seed=11, split="all"))
    assert accuracy["background"] == 1.0
    assert accuracy["colour"] == 1.0
    assert accuracy["position"] >= 0.99
    assert accuracy["size"] >= 0.98
    assert accuracy["shape"] >= 0.97


def test_reads_blurred_and_noisy_images():
    """Generated images are softer than the renders: colour and background must survive."""
    rng = np.random.default_rng(0)

    def degrade(image: Image.Image) -> Image.Image:
        blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(1.2)), dtype=np.float32)
        noisy = blurred + rng.normal(0, 12, blurred.shape)
        return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))

    accuracy = _accuracy(ShapesDataset(seed=12, split="all"), degrade)
    assert accuracy["background"] == 1.0
    assert accuracy["colour"] >= 0.98
    assert accuracy["position"] >= 0.95


def test_two_shape_scenes_show_both_colours():
    dataset = ShapesDataset(seed=13, two_shape_prob=1.0)
    for image, _, scene in dataset.samples(50):
        found = analyse(image)
        assert found.background == scene.background
        assert found.colour in {spec.colour for spec in scene.shapes}
        shares = found.colour_shares
        assert all(shares[spec.colour] > 0.01 for spec in scene.shapes)


def test_flat_image_has_no_object():
    found = analyse(Image.new("RGB", (64, 64), PALETTE["blue"]))
    assert (found.background, found.colour, found.shape) == ("blue", None, None)
    assert colour_shares(Image.new("RGB", (64, 64), PALETTE["blue"]))["blue"] == 1.0


def test_nearest_colour():
    assert nearest_colour((250, 10, 10)) == "red"
    assert nearest_colour((200, 200, 60)) == "yellow"
    assert nearest_colour((5, 5, 5)) == "black"
