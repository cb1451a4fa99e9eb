"""img2img and Extras in the browser: upload a picture, generate, read the result."""
from __future__ import annotations

import torch
from PIL import Image
from playwright.sync_api import expect

from modules.engine.deepdanbooru import build_deepdanbooru
from modules.processing.interrogation import format_tags
from tests.browser.conftest import (
    choose_option,
    fill_small_generation,
    generate_and_wait,
    open_tab,
    set_number,
    wait_for_gallery_images,
)
from tests.processing.test_interrogation import TAGS, tiny_deepdanbooru_state


def test_img2img_from_an_uploaded_image(page, sample_png):
    open_tab(page, "img2img")
    page.locator("#img2img_image input[type=file]").set_input_files(str(sample_png))
    expect(page.locator("#img2img_image img")).to_be_visible()
    fill_small_generation(page, "img2img", "a blue dog", steps=3, seed=42)
    # a size other than the upload's: the output follows the requested size
    set_number(page, "img2img_width", 96)
    set_number(page, "img2img_denoising_strength", 0.5)

    info = generate_and_wait(page, "img2img", expected_in_info="Steps: 3")
    assert info.splitlines()[0] == "a blue dog"
    for expected in ("Seed: 42", "Size: 96x64", "Denoising strength: 0.5"):
        assert expected in info, (expected, info)
    assert wait_for_gallery_images(page, "img2img") == [(96, 64)]
    expect(page.locator("#html_log_img2img")).to_have_text("")


def test_img2img_without_an_image_says_what_is_missing(page):
    open_tab(page, "img2img")
    fill_small_generation(page, "img2img", "nothing uploaded", steps=2, seed=1)
    page.locator("#img2img_generate").click()
    error = page.locator("#html_log_img2img")
    expect(error).not_to_have_text("", timeout=60_000)
    expect(error).to_contain_text("image")
    expect(page.locator("#img2img_gallery img")).to_have_count(0)


def test_extras_upscales_an_uploaded_image(page, sample_png):
    page.locator("#tab_extras-button").click()
    page.locator("#extras_image input[type=file]").set_input_files(str(sample_png))
    expect(page.locator("#extras_image img")).to_be_visible()
    set_number(page, "extras_upscaling_resize", 2)
    choose_option(page, "extras_upscaler_1", "Lanczos")
    page.locator("#extras_generate").click()
    assert wait_for_gallery_images(page, "extras") == [(128, 128)]
    expect(page.locator("#html_log_extras")).to_have_text("")


def test_interrogate_deepbooru_fills_the_prompt(page, app_server, sample_png):
    open_tab(page, "img2img")
    prompt = page.locator("#img2img_prompt textarea")
    prompt.fill("my prompt")
    page.locator("#deepbooru").click()
    message = page.locator("#img2img_interrogate_message")
    expect(message).to_contain_text("Interrogate needs an image")
    page.locator("#img2img_image input[type=file]").set_input_files(str(sample_png))
    expect(page.locator("#img2img_image img")).to_be_visible()
    page.locator("#deepbooru").click()
    expect(message).to_contain_text("model-resnet_custom_v3.pt")
    expect(message).to_contain_text("torch_deepdanbooru")
    expect(prompt).to_have_value("my prompt")

    folder = app_server.data_dir / "models" / "torch_deepdanbooru"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_deepdanbooru_state(TAGS), folder / "model-resnet_custom_v3.pt")
    # the server's settings are the defaults: threshold 0.5, sorted by name, spaces, escapes
    network = build_deepdanbooru(tiny_deepdanbooru_state(TAGS))
    with Image.open(sample_png) as picture:
        expected = format_tags(network.probabilities(picture.convert("RGB")), {
            "interrogate_deepbooru_score_threshold": 0.5, "deepbooru_sort_alpha": True,
            "deepbooru_use_spaces": True, "deepbooru_escape": True})
    assert expected
    try:
        page.locator("#deepbooru").click()
        expect(prompt).to_have_value(expected)
        expect(message).to_have_text("")
    finally:
        (folder / "model-resnet_custom_v3.pt").unlink()
