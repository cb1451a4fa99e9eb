"""A txt2img result sent to inpaint from the gallery, a mask drawn with the mouse, and an inpainted
result whose pixels far from the mask are the original ones."""
from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import download_gallery_image, fill_small_generation, \
    generate_and_wait, set_number, wait_for_gallery_images


def draw_stroke(page, elem_id: str, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag the mouse over the image editor's canvas; points are fractions of the canvas. The
    editor's Undo button turns on once it has taken a stroke; on a busy machine the first stroke
    can be lost while the editor is still setting up, so it is drawn again (as a person would)."""
    canvas = page.locator(f"#{elem_id} canvas").first
    undo = page.locator(f"#{elem_id} button[aria-label=Undo]")
    expect(canvas).to_be_visible()
    expect(undo).to_be_disabled()
    canvas.scroll_into_view_if_needed()
    for _ in range(3):
        box = canvas.bounding_box()

        def at(point: tuple[float, float]) -> tuple[float, float]:
            return box["x"] + box["width"] * point[0], box["y"] + box["height"] * point[1]

        page.mouse.move(*at(start))
        page.mouse.down()
        for step in range(1, 11):
            fraction = step / 10
            page.mouse.move(*at((start[0] + (end[0] - start[0]) * fraction,
                                 start[1] + (end[1] - start[1]) * fraction)))
        page.mouse.up()
        try:
            expect(undo).to_be_enabled(timeout=5_000)
            return
        except AssertionError:
            continue
    expect(undo).to_be_enabled()


def test_send_a_result_to_inpaint_and_repaint_a_drawn_mask(page):
    fill_small_generation(page, "txt2img", "a red cat", steps=3, seed=5)
    generate_and_wait(page, "txt2img", expected_in_info="Seed: 5")
    original = np.asarray(Image.open(io.BytesIO(download_gallery_image(page, "txt2img")))
                          .convert("RGB"), dtype=np.int16)

    page.locator("#txt2img_gallery_send_to_inpaint").click()
    expect(page.locator("#img2img_prompt textarea")).to_have_value("a red cat")
    expect(page.locator("#img2img_seed input")).to_have_value("5")
    # the editor zooms a 64 px picture to fit once it has loaded it; only then does it paint
    zoom = page.locator("#img2maskimg").get_by_text(re.compile(r"^\d+%$"))
    expect(zoom).not_to_have_text("100%")
    # the brush is the editor's tool once an image is in it: a short stroke in the middle
    draw_stroke(page, "img2maskimg", (0.45, 0.5), (0.55, 0.5))
    set_number(page, "img2img_denoising_strength", 1)
    info = generate_and_wait(page, "img2img", expected_in_info="Mask blur")
    assert "Denoising strength: 1" in info and "Seed: 5" in info, info
    assert wait_for_gallery_images(page, "img2img") == [(64, 64)]

    result = np.asarray(Image.open(io.BytesIO(download_gallery_image(page, "img2img")))
                        .convert("RGB"), dtype=np.int16)
    difference = np.abs(result - original).max(axis=2)
    # far from the stroke (the corners) the picture is the original one...
    for corner in (difference[:4, :4], difference[:4, -4:], difference[-4:, :4],
                   difference[-4:, -4:]):
        assert corner.max() <= 2, difference
    # ...and under it, it was painted anew
    assert difference[28:36, 28:36].mean() > 10, difference
    expect(page.locator("#html_log_img2img")).to_have_text("")
