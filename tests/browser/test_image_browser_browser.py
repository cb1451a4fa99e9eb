"""The Image Browser tab in the browser over a folder of 300 generated-looking pictures: pages,
a prompt word and a seed filter, a picture sent to img2img with its parameters, and a delete that
Undo brings back from the trash."""
from __future__ import annotations

import os

from playwright.sync_api import expect

from tests.app.test_image_index import WORDS, write_png
from tests.browser.conftest import choose_option

FOLDER = "browser-gallery"


def test_page_filter_send_delete_and_undo(page, app_server):
    folder = app_server.data_dir / "outputs" / FOLDER / "2026-12-03"
    for number in range(300):
        write_png(folder / f"{number:05d}-{number}.png", f"a {WORDS[number % 3]}", seed=number,
                  mtime=1_700_000_000 + number)
    page.locator("#tab_image_browser-button").click()
    page.locator("#image_browser_refresh").click()
    info = page.locator("#image_browser_page_info")
    expect(info).to_contain_text("images)")
    choose_option(page, "image_browser_folder", FOLDER)
    expect(info).to_have_text("Page 1 of 9 (300 images)")
    expect(page.locator("#image_browser_gallery img")).to_have_count(36)
    page.locator("#image_browser_next").click()
    expect(info).to_have_text("Page 2 of 9 (300 images)")

    search = page.locator("#image_browser_search textarea")
    search.fill("owl")
    search.press("Enter")
    expect(info).to_have_text("Page 1 of 3 (100 images)")
    search.fill("")
    seed = page.locator("#image_browser_seed textarea")
    seed.fill("123")
    seed.press("Enter")
    expect(info).to_have_text("Page 1 of 1 (1 images)")
    page.locator("#image_browser_gallery img").first.click()
    expect(page.locator("#image_browser_parameters")).to_contain_text("Seed: 123")

    page.locator("#image_browser_send_to_img2img").click()
    expect(page.locator("#img2img_prompt textarea")).to_have_value("a red cat")
    page.locator("#tab_image_browser-button").click()

    picture = folder / "00123-123.png"
    page.locator("#image_browser_delete").click()
    expect(page.locator("#image_browser_status")).to_contain_text("Deleted")
    expect(info).to_have_text("Page 1 of 1 (0 images)")
    assert not picture.exists()
    trash = app_server.data_dir / "outputs" / ".trash" / FOLDER / "2026-12-03" / picture.name
    assert trash.is_file()
    page.locator("#image_browser_undo").click()
    expect(page.locator("#image_browser_status")).to_contain_text("Restored")
    expect(info).to_have_text("Page 1 of 1 (1 images)")
    assert picture.is_file() and not trash.exists()
    assert os.path.getsize(picture) > 0
