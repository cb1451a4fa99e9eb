"""txt2img in the browser, as a person uses it: type, set sliders and dropdowns, generate, read
the result, reuse the seed, interrupt a long job."""
from __future__ import annotations

import io
import re

from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import choose_option, interrupt_a_long_txt2img, \
    download_gallery_image, fill_small_generation, generate_and_wait, set_number, \
    wait_for_gallery_images



def test_generate_shows_the_image_and_its_infotext(page):
    fill_small_generation(page, "txt2img", "a red cat", steps=3, seed=1234)
    info = generate_and_wait(page, "txt2img", expected_in_info="Steps: 3")

    assert info.splitlines()[0] == "a red cat"
    for expected in ("Steps: 3", "Seed: 1234", "Size: 64x64", "Model: tiny"):
        assert expected in info, (expected, info)
    assert wait_for_gallery_images(page, "txt2img") == [(64, 64)]
    downloaded = Image.open(io.BytesIO(download_gallery_image(page, "txt2img")))
    assert downloaded.format == "PNG" and downloaded.size == (64, 64)
    # the file carries the same parameters the page shows (A1111's PNG "parameters" chunk)
    assert downloaded.info["parameters"] == info
    expect(page.locator("#html_log_txt2img")).to_have_text("")


def test_sampler_schedule_and_steps_chosen_in_the_ui_reach_the_infotext(page):
    fill_small_generation(page, "txt2img", "a lighthouse", steps=3, seed=7)
    choose_option(page, "txt2img_sampling", "Euler a")
    choose_option(page, "txt2img_scheduler", "Karras")
    set_number(page, "txt2img_steps", 4)
    set_number(page, "txt2img_cfg_scale", 5)

    info = generate_and_wait(page, "txt2img", expected_in_info="Steps: 4")
    assert "Steps: 4, Sampler: Euler a, Schedule type: Karras, CFG scale: 5.0, Seed: 7" in info


def test_random_seed_is_reported_and_reuse_seed_puts_it_back(page):
    fill_small_generation(page, "txt2img", "a random seed", steps=2)
    seed_box = page.locator("#txt2img_seed input")
    expect(seed_box).to_have_value("-1")

    info = generate_and_wait(page, "txt2img", expected_in_info="Steps: 2")
    used_seed = re.search(r"Seed: (\d+)", info).group(1)
    page.locator("#txt2img_reuse_seed").click()
    expect(seed_box).to_have_value(used_seed)
    page.locator("#txt2img_random_seed").click()
    expect(seed_box).to_have_value("-1")


def test_interrupt_ends_a_long_job_early_with_an_image(page):
    percents = interrupt_a_long_txt2img(page)
    assert percents, "the progress bar never showed a percentage"
    # a full run climbs to 99-100%; an interrupted one stops soon after the click
    assert max(percents) < 60, percents
