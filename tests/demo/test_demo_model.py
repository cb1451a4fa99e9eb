"""What the trained demo checkpoint must do through the real application path (job queue,
processing, engine): follow held-out captions, and respond to CFG, negative prompts, emphasis,
prompt editing, inpainting, img2img and hires fix the way a real model does.

Skipped when models/Stable-diffusion/demo-shapes.safetensors is absent."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.demo.shapes_dataset import Scene, ShapeSpec, render_scene
from tests.demo.adherence import rates, run_trials
from tests.demo.conftest import img2img, txt2img
from tests.demo.shape_analyser import analyse

pytestmark = pytest.mark.slow

ADHERENCE_COUNT = 50
SEMANTIC_COUNT = 16


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


@pytest.fixture(scope="module")
def cfg7_trials(demo_ctx):
    return run_trials(lambda **fields: txt2img(demo_ctx, **fields), ADHERENCE_COUNT)


def test_follows_held_out_captions(cfg7_trials):
    measured = rates(cfg7_trials)
    print(f"adherence over {len(cfg7_trials)} held-out captions: {measured}")
    assert measured["colour"] >= 0.8
    assert measured["background"] >= 0.9


@pytest.fixture(scope="module")
def cfg1_trials(demo_ctx):
    return run_trials(lambda **fields: txt2img(demo_ctx, **fields), SEMANTIC_COUNT, cfg_scale=1.0)


def test_cfg_scale_changes_the_images_not_the_colours(cfg7_trials, cfg1_trials):
    for guided, unguided in zip(cfg7_trials, cfg1_trials):
        assert np.abs(_pixels(guided.image) - _pixels(unguided.image)).mean() > 1.0
    with_guidance, without = rates(cfg7_trials[:SEMANTIC_COUNT]), rates(cfg1_trials)
    print(f"CFG 7: {with_guidance}  CFG 1: {without}")
    assert with_guidance["colour"] >= without["colour"] - 0.1
    assert with_guidance["background"] >= without["background"] - 0.1


def test_cfg_7_follows_captions_better_than_cfg_1(cfg7_trials, cfg1_trials):
    """Measured on the shipped model (first 16 held-out captions): the gain is in shape and
    position; colours are followed without guidance too (over 50 captions: colour 0.96 at CFG 1,
    0.94 at CFG 7; shape 0.42 vs 0.50)."""
    with_guidance, without = rates(cfg7_trials[:SEMANTIC_COUNT]), rates(cfg1_trials)
    assert sum(with_guidance.values()) > sum(without.values())


def test_negative_prompt_naming_the_colour_removes_it(demo_ctx):
    """The prompt names no shape colour, so each seed picks one; naming that colour in the
    negative prompt must make it go away."""
    prompt = "a large circle in the center, on a white background"
    removed = 0
    for seed in range(SEMANTIC_COUNT):
        free = analyse(txt2img(demo_ctx, prompt=prompt, seed=seed).images[0])
        if free.colour is None:
            removed += 1
            continue
        negated = analyse(txt2img(demo_ctx, prompt=prompt, negative_prompt=free.colour,
                                  seed=seed).images[0])
        before, after = free.colour_shares[free.colour], negated.colour_shares[free.colour]
        print(f"seed {seed}: {free.colour} -> {negated.colour} ({before:.2f} -> {after:.2f})")
        removed += negated.colour != free.colour and \
            negated.colour_shares[free.colour] < free.colour_shares[free.colour]
    assert removed >= 0.75 * SEMANTIC_COUNT


def test_emphasis_moves_the_red_share(demo_ctx):
    def red_share(weight: float) -> float:
        prompt = f"a large (red:{weight}) circle in the center, on a blue background"
        return float(np.mean([analyse(txt2img(demo_ctx, prompt=prompt, seed=seed).images[0])
                              .colour_shares["red"] for seed in range(8)]))

    # the red circle stays red at every weight; the weight moves how much of the image is red
    strong, plain, weak = red_share(1.4), red_share(1.0), red_share(0.6)
    print(f"red share: (red:1.4) {strong:.3f}, red {plain:.3f}, (red:0.6) {weak:.3f}")
    assert strong > plain > weak


def test_prompt_editing_differs_from_both_ends(demo_ctx):
    def image(colour_word: str) -> np.ndarray:
        prompt = f"a large {colour_word} square in the center, on a white background"
        return _pixels(txt2img(demo_ctx, prompt=prompt, seed=7).images[0])

    edited, red, blue = image("[red:blue:0.5]"), image("red"), image("blue")
    assert np.abs(edited - red).mean() > 2.0
    assert np.abs(edited - blue).mean() > 2.0


def _scene(colour: str, background: str, shape: str = "circle", position: str = "center",
           size: str = "large") -> Scene:
    centres = {"center": (0.5, 0.5), "left": (0.3, 0.5), "right": (0.7, 0.5)}
    radius = 0.23 if size == "large" else 0.125
    return Scene(background, (ShapeSpec(shape, colour, size, position, centres[position], radius),))


def test_inpainting_changes_pixels_inside_the_mask_only(demo_ctx):
    init = render_scene(_scene("red", "blue"))
    box = (14, 14, 50, 50)                       # covers the circle
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
    result = img2img(demo_ctx, init_images=[init], mask=mask, mask_blur=0, inpainting_fill=1,
                     inpaint_full_res=False, denoising_strength=0.9, seed=3,
                     prompt="a large green circle in the center, on a blue background")
    output, original = _pixels(result.images[0]), _pixels(init)
    inside = np.zeros((64, 64), dtype=bool)
    inside[box[1]:box[3], box[0]:box[2]] = True
    assert np.array_equal(output[~inside], original[~inside])
    before, after = analyse(init), analyse(result.images[0])
    print(f"inpaint: {before.colour} -> {after.colour}, green share "
          f"{before.colour_shares['green']:.2f} -> {after.colour_shares['green']:.2f}")
    assert after.colour_shares["green"] > before.colour_shares["green"] + 0.05
    assert after.colour_shares["red"] < before.colour_shares["red"]


@pytest.mark.parametrize("scene", [_scene("yellow", "purple", "square", "left"),
                                   _scene("white", "green", "triangle", "right", "small")])
def test_img2img_at_low_denoising_keeps_the_layout(demo_ctx, scene):
    init = render_scene(scene)
    result = img2img(demo_ctx, init_images=[init], denoising_strength=0.3, seed=5,
                     prompt=scene.caption())
    found = analyse(result.images[0])
    assert (found.background, found.colour, found.position) == \
        (scene.background, scene.main.colour, scene.main.position)


def test_hires_fix_2x_keeps_the_object(demo_ctx):
    prompt = "a large red circle on the left, on a yellow background"
    plain = analyse(txt2img(demo_ctx, prompt=prompt, seed=11).images[0])
    processed = txt2img(demo_ctx, prompt=prompt, seed=11, enable_hr=True, hr_scale=2.0,
                        hr_upscaler="Lanczos", denoising_strength=0.4)
    assert processed.images[0].size == (128, 128)
    upscaled = analyse(processed.images[0])
    assert (upscaled.background, upscaled.colour, upscaled.position) == \
        (plain.background, plain.colour, plain.position)
