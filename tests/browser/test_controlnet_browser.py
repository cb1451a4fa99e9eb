"""The ControlNet accordion in the browser: upload a control image to unit 0, choose the Canny
control type (which picks the canny preprocessor and the canny model), preview the edge map,
enable the unit and generate: the gallery shows the image and the detected map, and the infotext
has the unit."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import fill_small_generation, wait_for_gallery_images

UNIT = "txt2img_controlnet_unit_0"


def test_a_canny_unit_steers_txt2img_and_returns_its_map(page, sample_png):
    fill_small_generation(page, "txt2img", "a red square", steps=2, seed=3)
    page.locator("#txt2img_controlnet").get_by_text("ControlNet", exact=True).first.click()
    page.locator(f"#{UNIT}_image input[type=file]").set_input_files(str(sample_png))
    expect(page.locator(f"#{UNIT}_image img")).to_have_count(1)
    page.locator(f"#{UNIT}_control_type").get_by_label("Canny", exact=True).check()
    expect(page.locator(f"#{UNIT}_module input")).to_have_value("canny")
    expect(page.locator(f"#{UNIT}_model input")).to_have_value(
        re.compile(r"^control_tiny_canny \[[0-9a-f]{8}\]$"))

    page.locator(f"#{UNIT}_run_preview").click()
    expect(page.locator(f"#{UNIT}_preview img")).to_have_count(1, timeout=60_000)

    page.locator(f"#{UNIT}_enabled input").check()
    page.locator("#txt2img_generate").click()
    sizes = wait_for_gallery_images(page, "txt2img", count=2)
    assert sizes == [(64, 64), (64, 64)]           # the image, then the canny map
    info = page.locator("#html_info_txt2img").inner_text()
    assert "ControlNet 0:" in info and "Module: canny" in info, info
    assert "Model: control_tiny_canny [" in info


def test_pasting_a_controlnet_infotext_restores_the_unit(page):
    """↙️ with `ControlNet 1` in the infotext sets unit 1's controls (the model by name: the
    hash in the text is another file's), and generating then uses that unit."""
    unit = "txt2img_controlnet_unit_1"
    page.locator("#txt2img_controlnet").get_by_text("ControlNet", exact=True).first.click()
    page.locator("#txt2img_controlnet").get_by_role("tab", name="ControlNet Unit 1").click()
    page.locator("#txt2img_prompt textarea").fill(
        'a red square\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 3, Size: 64x64, '
        'ControlNet 1: "Module: canny, Model: control_tiny_canny [00000000], Weight: 0.65, '
        'Resize Mode: Just Resize, Processor Res: 128, Threshold A: 90.0, Threshold B: 180.0, '
        'Guidance Start: 0.1, Guidance End: 0.8, Pixel Perfect: True, '
        'Control Mode: My prompt is more important"')
    page.locator("#txt2img_paste").click()
    expect(page.locator(f"#{unit}_enabled input")).to_be_checked()
    expect(page.locator(f"#{unit}_module input")).to_have_value("canny")
    expect(page.locator(f"#{unit}_model input")).to_have_value(
        re.compile(r"^control_tiny_canny \[[0-9a-f]{8}\]$"))
    expect(page.locator(f"#{unit}_weight input[type=number]")).to_have_value("0.65")
    expect(page.locator(f"#{unit}_processor_res input[type=number]")).to_have_value("128")
    expect(page.locator(f"#{unit}_threshold_a input[type=number]")).to_have_value("90")
    expect(page.locator(f"#{unit}_guidance_end input[type=number]")).to_have_value("0.8")
    expect(page.locator(f"#{unit}_pixel_perfect input")).to_be_checked()
    expect(page.locator(f"#{unit}_control_mode").get_by_label(
        "My prompt is more important")).to_be_checked()
    expect(page.locator(f"#{unit}_resize_mode").get_by_label("Just Resize")).to_be_checked()
    # unit 0 was not in the text: untouched
    expect(page.locator("#txt2img_controlnet_unit_0_enabled input")).not_to_be_checked()
