"""The Train tab in the browser: create an embedding, preprocess a small folder of pictures,
train the embedding for a few steps on it, watch the step and loss in the progress bar, and see
the preview image."""
from __future__ import annotations

from pathlib import Path

import skimage
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import GENERATION_TIMEOUT_MS, set_number

PHOTOS = Path(skimage.__file__).parent / "data"


def test_create_preprocess_and_train_an_embedding_with_previews(page, app_server):
    raw = app_server.data_dir / "raw-pictures"
    raw.mkdir(exist_ok=True)
    for name in ("astronaut.png", "coffee.png"):
        Image.open(PHOTOS / name).resize((120, 80)).save(raw / name)
    dataset = app_server.data_dir / "train-set"
    page.locator("#tab_train-button").click()
    page.locator("#train_embedding_name textarea").fill("browserfox")
    page.locator("#train_embedding_init_text textarea").fill("a fox")
    page.locator("#train_create_embedding_button").click()
    expect(page.locator("#train_create_embedding_result")).to_contain_text(
        "Created embedding:")
    expect(page.locator("#train_create_embedding_result")).to_contain_text("browserfox.pt")

    page.locator("#train_preprocess_tab-button").click()
    page.locator("#train_preprocess_source textarea").fill(str(raw))
    page.locator("#train_preprocess_destination textarea").fill(str(dataset))
    set_number(page, "train_preprocess_width", 64)
    set_number(page, "train_preprocess_height", 64)
    page.locator("#train_preprocess_run").click()
    expect(page.locator("#train_preprocess_result")).to_contain_text(
        "Preprocessing finished: 2 pictures")
    assert sorted(p.name for p in dataset.iterdir()) == [
        "00000-0-astronaut.png", "00000-0-astronaut.txt", "00001-0-coffee.png",
        "00001-0-coffee.txt"]

    page.locator("#train_train_tab-button").click()
    expect(page.locator("#train_embedding input")).to_have_value("browserfox")
    page.locator("#train_dataset_directory textarea").fill(str(dataset))
    set_number(page, "train_width", 64)
    set_number(page, "train_height", 64)
    page.locator("#train_steps input").fill("6")
    page.locator("#train_image_every input").fill("3")
    page.locator("#train_save_every input").fill("0")
    page.evaluate("""() => {
        window.trainTexts = [];
        const bar = document.querySelector('#train_progress');
        new MutationObserver(() => window.trainTexts.push(bar.innerText))
            .observe(bar, {subtree: true, childList: true, characterData: true});
    }""")
    page.locator("#train_train_embedding").click()
    result = page.locator("#train_result")
    expect(result).to_contain_text("trained to step 6", timeout=GENERATION_TIMEOUT_MS)
    expect(result).to_contain_text("loss")
    assert any("loss" in text for text in page.evaluate("() => window.trainTexts")), \
        page.evaluate("() => window.trainTexts")
    preview = page.locator("#train_last_preview img")
    expect(preview).to_have_count(1)
    page.wait_for_function(
        "() => { const img = document.querySelector('#train_last_preview img');"
        " return img && img.complete && img.naturalWidth === 64; }")
    previews = sorted(p.name for p in app_server.data_dir.rglob("images/browserfox-*.png"))
    assert previews == ["browserfox-3.png", "browserfox-6.png"]
