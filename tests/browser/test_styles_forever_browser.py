"""Styles (save one from the editor, apply it to the prompt, delete it) and Generate forever
(right-click menu on Generate), as a person uses them."""
from __future__ import annotations

import csv
import re

from playwright.sync_api import expect

from tests.browser.conftest import GENERATION_TIMEOUT_MS, fill_small_generation


def stored_styles(app_server) -> dict[str, list[str]]:
    path = app_server.data_dir / "styles.csv"
    if not path.exists():
        return {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return {row["name"]: [row["prompt"], row["negative_prompt"]]
                for row in csv.DictReader(handle)}


def test_a_style_is_saved_applied_and_deleted(page, app_server):
    page.locator("#txt2img_styles_edit").get_by_text("Styles editor").click()
    name_box = page.locator("#txt2img_edit_style_name input")
    name_box.fill("cinematic")
    name_box.press("Enter")
    page.locator("#txt2img_edit_style_prompt textarea").fill("{prompt}, cinematic lighting")
    page.locator("#txt2img_edit_style_neg_prompt textarea").fill("blurry")
    page.locator("#txt2img_style_save").click()
    expect(page.locator("#txt2img_style_message")).not_to_have_text("")
    assert stored_styles(app_server)["cinematic"] == ["{prompt}, cinematic lighting", "blurry"]

    page.locator("#txt2img_prompt textarea").fill("a fox")
    page.locator("#txt2img_styles input").click()
    page.get_by_role("option", name="cinematic", exact=True).click()
    page.keyboard.press("Escape")
    page.locator("#txt2img_style_apply").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a fox, cinematic lighting")
    expect(page.locator("#txt2img_neg_prompt textarea")).to_have_value("blurry")

    page.locator("#txt2img_style_delete").click()
    expect(page.locator("#txt2img_style_message")).not_to_have_text("")
    assert "cinematic" not in stored_styles(app_server)


def infotext_seed(page) -> str | None:
    found = re.search(r"Seed: (\d+)", page.locator("#html_info_txt2img").inner_text())
    return found.group(1) if found else None


def test_generate_forever_repeats_until_cancelled(page):
    fill_small_generation(page, "txt2img", "again and again", steps=2)    # seed -1: new each time
    page.locator("#txt2img_generate").click(button="right")
    page.locator("#context-menu").get_by_text("Generate forever", exact=True).click()

    seeds: list[str] = []
    for _ in range(2):   # two finished jobs with different random seeds, without a click
        page.wait_for_function(
            """known => { const m = /Seed: (\\d+)/.exec(
                document.querySelector('#html_info_txt2img').innerText);
                return m && !known.includes(m[1]); }""", arg=seeds,
            timeout=GENERATION_TIMEOUT_MS)
        seeds.append(infotext_seed(page))
    assert len(set(seeds)) == 2

    page.locator("#txt2img_generate").click(button="right")
    page.locator("#context-menu").get_by_text("Cancel generate forever", exact=True).click()
    # the job running at the moment of the click may still finish; after that nothing starts
    expect(page.locator("#txt2img_progress")).to_have_text("", timeout=GENERATION_TIMEOUT_MS)
    settled = infotext_seed(page)
    page.wait_for_timeout(4000)
    expect(page.locator("#txt2img_progress")).to_have_text("")
    assert infotext_seed(page) == settled
