"""PNG Info with a generated image (and sending it on to img2img), and a setting that survives
a page reload."""
from __future__ import annotations

import requests
from playwright.sync_api import expect

from tests.browser.conftest import download_gallery_image, fill_small_generation, \
    generate_and_wait, reload_ui, set_number, wait_for_gallery_images


def test_png_info_shows_a_generated_images_parameters_and_sends_them_to_img2img(page, tmp_path):
    fill_small_generation(page, "txt2img", "a castle made of sand", steps=3, seed=321)
    info = generate_and_wait(page, "txt2img", expected_in_info="Seed: 321")
    path = tmp_path / "downloaded.png"
    path.write_bytes(download_gallery_image(page, "txt2img"))

    page.locator("#tab_pnginfo-button").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(path))
    shown = page.locator("#pnginfo_html")
    expect(shown).to_contain_text("Seed: 321", timeout=30_000)
    for line in info.splitlines():
        expect(shown).to_contain_text(line)

    if page.locator("#pnginfo_send_to_img2img").count():
        page.locator("#pnginfo_send_to_img2img").click()
        expect(page.locator("#img2img_prompt textarea")).to_have_value("a castle made of sand")
        expect(page.locator("#img2img_seed input")).to_have_value("321")
        expect(page.locator("#img2img_image img")).to_be_visible()
        set_number(page, "img2img_denoising_strength", 0.4)
        img2img_info = generate_and_wait(page, "img2img", expected_in_info="Denoising strength")
        assert "Seed: 321" in img2img_info and "Steps: 3" in img2img_info, img2img_info
        assert wait_for_gallery_images(page, "img2img") == [(64, 64)]


def test_a_setting_is_applied_and_kept_after_reload(page, app_server, console_errors):
    page.locator("#tab_settings-button").click()
    quality = page.locator("#setting_jpeg_quality input[type=number]")
    expect(quality).to_be_visible()
    new_quality = 83 if quality.input_value() != "83" else 84
    set_number(page, "setting_jpeg_quality", new_quality)
    page.locator("#settings_submit").click()
    expect(page.locator("#settings_result")).not_to_have_text("", timeout=30_000)
    options = requests.get(app_server.base_url + "/sdapi/v1/options", timeout=30).json()
    assert options["jpeg_quality"] == new_quality, page.locator("#settings_result").inner_text()

    reload_ui(page, console_errors)
    page.locator("#tab_settings-button").click()
    expect(page.locator("#setting_jpeg_quality input[type=number]")).to_have_value(
        str(new_quality))
