"""The img2img tab driven through its functions: real tiny checkpoint, sub-tab inputs, batch from
a folder, errors shown in the tab, and the whole UI built with both tabs wired."""
from __future__ import annotations

import html
import json

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.processing.images import read_info_from_image
from modules.ui.img2img_tab import IMG2IMG, IMG2IMG_INPUT_NAMES, INPAINT, INPAINT_SKETCH, \
    INPAINT_UPLOAD, SKETCH, BATCH, brush_mask, generate_img2img_live, init_image_and_mask

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {"sd_model_checkpoint": "tiny-sd1", "samples_save": False, "grid_save": False,
           "return_grid": False}



@pytest.fixture(scope="module")
def ctx(tiny_ctx):
    """These tests generate: the context with the tiny SD1 checkpoint."""
    return tiny_ctx


def gradient_image(width: int = 64, height: int = 64) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(255, 0, height, dtype=np.float32)[:, None, None]
    pixels = np.concatenate([np.broadcast_to(x, (height, width, 1)),
                             np.broadcast_to(y, (height, width, 1)),
                             np.full((height, width, 1), 90, np.float32)], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def square_layer(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """A brush layer: transparent, with an opaque white square painted at `box`."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), box)
    return layer


def ui_values(**overrides) -> dict:
    values = {name: None for name in IMG2IMG_INPUT_NAMES}
    values.update(mode=IMG2IMG, prompt="a cat", negative_prompt="", sampler_name="Euler",
                  scheduler="Automatic", steps=4, cfg_scale=7.0, image_cfg_scale=1.5,
                  denoising_strength=0.75, width=64, height=64, seed=11, batch_count=1,
                  batch_size=1, resize_mode=0, mask_blur=0, mask_alpha=0,
                  inpainting_mask_invert=0, inpainting_fill=1, inpaint_full_res=0,
                  inpaint_full_res_padding=32, enable_refiner=False, refiner_checkpoint="None",
                  refiner_switch_at=0.8, batch_input_dir="", batch_output_dir="",
                  batch_mask_dir="")
    values.update(overrides)
    return values


def run_tab(ctx, values) -> tuple:
    """Drive the Generate generator to its end; the last update holds the results."""
    with ctx.options.override(OPTIONS):
        updates = list(generate_img2img_live(ctx, None, values, poll_seconds=0.02))
    return updates[-1]


def test_img2img_returns_an_image_of_the_requested_size(ctx):
    images, info, info_html, error_html, task_id, bar, preview = run_tab(
        ctx, ui_values(init_img=gradient_image(64, 64), width=48, height=72, seed=5))
    assert error_html == "", error_html
    assert [image.size for image in images] == [(48, 72)]
    assert '"seed": 5' in info and "Denoising strength: 0.75" in info_html
    assert task_id.startswith("task(img2img-") and bar == "" and preview is None


def test_inpaint_with_a_drawn_mask_keeps_pixels_outside_the_mask(ctx):
    init = gradient_image(64, 64)
    editor = {"background": init, "layers": [square_layer(init.size, (16, 16, 40, 40))],
              "composite": init}
    images, _, _, error_html, *_ = run_tab(
        ctx, ui_values(mode=INPAINT, init_img_with_mask=editor, denoising_strength=1.0,
                       inpainting_fill=2))
    assert error_html == "", error_html
    out = np.asarray(images[0].convert("RGB"), dtype=np.int16)
    original = np.asarray(init, dtype=np.int16)
    outside = np.ones((64, 64), bool)
    outside[8:48, 8:48] = False           # the mask (16..40) with a margin for edge blending
    assert np.abs(out - original)[outside].max() <= 1
    assert np.abs(out - original)[20:36, 20:36].mean() > 5   # the masked square was repainted


def test_sketch_and_inpaint_inputs_are_composited_from_editor_values():
    original = Image.new("RGB", (32, 32), (10, 20, 30))
    drawn = original.copy()
    drawn.paste((250, 0, 0), (4, 4, 12, 12))
    editor = {"background": original, "layers": [], "composite": drawn}

    image, mask = init_image_and_mask(SKETCH, {"sketch": editor})
    assert mask is None and image.getpixel((6, 6)) == (250, 0, 0)

    image, mask = init_image_and_mask(INPAINT_SKETCH, {"inpaint_color_sketch": editor,
                                                       "mask_alpha": 0, "mask_blur": 0})
    assert mask.getbbox() == (4, 4, 12, 12) and mask.getpixel((6, 6)) == 255
    assert image.getpixel((6, 6)) == (250, 0, 0) and image.getpixel((20, 20)) == (10, 20, 30)
    _, dimmed = init_image_and_mask(INPAINT_SKETCH, {"inpaint_color_sketch": editor,
                                                     "mask_alpha": 50, "mask_blur": 0})
    assert 120 <= dimmed.getpixel((6, 6)) <= 135        # mask transparency 50 %

    layer = square_layer((32, 32), (0, 0, 8, 16))
    image, mask = init_image_and_mask(INPAINT, {"init_img_with_mask": {
        "background": original, "layers": [layer], "composite": original}})
    assert image.size == (32, 32) and mask.mode == "L" and mask.getbbox() == (0, 0, 8, 16)
    assert brush_mask([Image.new("RGBA", (8, 8), (255, 255, 255, 0))], (8, 8)) is None


@pytest.mark.parametrize("values, message", [
    ({"mode": IMG2IMG}, "No init image"),
    ({"mode": SKETCH, "sketch": {"background": None, "layers": [], "composite": None}},
     "No init image"),
    ({"mode": INPAINT, "init_img_with_mask": {"background": Image.new("RGB", (8, 8)),
                                              "layers": [], "composite": None}}, "Draw a mask"),
    ({"mode": INPAINT_UPLOAD, "init_img_inpaint": Image.new("RGB", (8, 8))}, "Upload a mask"),
    ({"mode": BATCH, "batch_input_dir": "no/such/folder"}, "Input directory not found"),
    ({"mode": BATCH, "batch_input_dir": "/etc"}, "is outside the allowed folders"),
])
def test_bad_input_shows_a_message_in_the_tab(ctx, values, message):
    updates = list(generate_img2img_live(ctx, None, ui_values(**values)))
    assert len(updates) == 1                       # nothing was submitted to the queue
    images, info, _, error_html, *_ = updates[0]
    assert images == [] and info == "" and message in error_html


def test_batch_processes_every_image_of_the_folder(ctx, tmp_path):
    # batch folders must lie inside the data folder (or a --gradio-allowed-path one)
    batch = ctx.paths.data_dir / f"batch-{tmp_path.name}"
    inputs, outputs, masks = batch / "in", batch / "out", batch / "masks"
    for folder in (inputs, masks):
        folder.mkdir(parents=True)
    gradient_image(64, 64).save(inputs / "first.png")
    gradient_image(64, 64).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(inputs / "second.jpg")
    (inputs / "notes.txt").write_text("not an image")
    images, info, _, error_html, *_ = run_tab(
        ctx, ui_values(mode=BATCH, batch_input_dir=str(inputs), batch_output_dir=str(outputs),
                       width=56, height=64, steps=2))
    assert error_html == "", error_html
    assert [image.size for image in images] == [(56, 64), (56, 64)]
    written = sorted(path.name for path in outputs.iterdir())
    assert written == ["first.png", "second.png"]
    with Image.open(outputs / "second.png") as saved:
        infotext, _ = read_info_from_image(saved)
    assert infotext.startswith("a cat\nSteps: 2") and "Size: 56x64" in infotext


def test_whole_ui_builds_with_both_tabs_wired(ctx):
    from modules.ui.app import build_ui
    blocks = build_ui(ctx)
    api = {fn.api_name: fn for fn in blocks.fns.values() if fn.api_name}
    assert {"txt2img", "img2img"} <= set(api)
    img2img = api["img2img"]
    # the tab's controls, then the Script dropdown and the scripts' controls (args array order)
    script_args = ctx.scripts.img2img.default_args()
    assert len(img2img.inputs) == len(IMG2IMG_INPUT_NAMES) + len(script_args)
    assert img2img.inputs[len(IMG2IMG_INPUT_NAMES)].label == "Script"
    labels = {getattr(block, "label", None) for block in blocks.blocks.values()}
    assert {"Resize mode", "Mask blur", "Mask mode", "Masked content", "Inpaint area",
            "Only masked padding, pixels", "Denoising strength", "Image CFG Scale",
            "Input directory", "Output directory", "Hires steps", "Upscale by",
            "Switch at"} <= labels
    tab_labels = {block.label for block in blocks.blocks.values()
                  if type(block).__name__ == "Tab"}
    assert {"txt2img", "img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload",
            "Batch"} <= tab_labels
    # the default UI value of "Only masked padding" is 32 (the API default is 0)
    padding = next(block for block in blocks.blocks.values()
                   if getattr(block, "label", None) == "Only masked padding, pixels")
    assert padding.value == 32


@pytest.mark.parametrize("values, message", [
    ({"width": 100000}, "width 100000 is above the server's limit of 4096 px"),
    ({"steps": 10000000}, "steps 10000000 is above the server's limit of 500 steps"),
    ({"prompt": "a" * 1_000_000}, "prompt length 1000000 is above the server's limit"),
])
def test_a_request_above_a_server_limit_shows_the_limit_and_queues_nothing(ctx, values, message):
    finished = len(ctx.jobs.recent_finished_ids())
    updates = list(generate_img2img_live(ctx, None, ui_values(init_img=gradient_image(),
                                                              **values)))
    assert len(updates) == 1
    images, info, _, error_html, *_ = updates[0]
    assert images == [] and info == ""
    assert message in html.unescape(error_html) and "Server limits" in html.unescape(error_html)
    assert len(ctx.jobs.recent_finished_ids()) == finished and ctx.jobs.pending_ids() == []


def test_an_init_image_above_the_input_limit_is_refused(ctx):
    with ctx.options.override({"limit_input_megapixels": 0.001}):    # 1000 pixels
        updates = list(generate_img2img_live(ctx, None, ui_values(init_img=gradient_image())))
    assert len(updates) == 1
    assert "init image 64x64 (0.0 megapixels)" in html.unescape(updates[0][3])


def test_a_full_queue_is_shown_as_a_message(ctx):
    import threading
    started, release = threading.Event(), threading.Event()
    with ctx.options.override({"limit_queue_size": 1}):
        blocker = ctx.jobs.submit("blocker",
                                  lambda progress: started.set() or release.wait(30))
        assert started.wait(30)
        waiting = ctx.jobs.submit("waiting", lambda progress: None)
        try:
            updates = list(generate_img2img_live(ctx, None, ui_values(init_img=gradient_image())))
        finally:
            release.set()
            blocker.wait(30)
            waiting.wait(30)
    assert len(updates) == 1
    assert "The queue is full (1 jobs waiting, the limit is 1)" in html.unescape(updates[0][3])


def test_a_job_stopped_by_the_time_limit_says_so_in_the_tab(ctx):
    with ctx.options.override({"limit_job_seconds": 0.5}):
        images, info, info_html, error_html, *_ = run_tab(
            ctx, ui_values(init_img=gradient_image(), steps=400, width=256, height=256,
                           denoising_strength=1.0))
    assert error_html == ""
    assert "time limit of 0.5 s" in html.unescape(info_html)
    assert "time limit" in json.loads(info)["comments"]
