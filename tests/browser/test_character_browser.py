"""The Character tab of the character-pose service in the browser: create a character, pick a
preset pose (its skeleton shows), re-pose, and the history gallery grows. The browser app has a
tiny canny ControlNet only, so the service's fallback (the skeleton through canny) is used."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import GENERATION_TIMEOUT_MS, choose_option, set_number


def test_the_character_tab_creates_reposes_and_keeps_the_history(page):
    page.locator("#tab_character_pose-button").click()
    page.locator("#character_prompt textarea").fill("a tiny knight with a red cape")
    set_number(page, "character_width", 64)
    set_number(page, "character_height", 64)
    set_number(page, "character_steps", 2)
    page.locator("#character_seed input").fill("4321")
    page.locator("#character_create").click()
    expect(page.locator("#character_gallery img")).to_have_count(1,
                                                                 timeout=GENERATION_TIMEOUT_MS)
    info = page.locator("#character_info textarea")
    expect(info).to_have_value(re.compile(r"Seed: 4321"))

    choose_option(page, "character_pose_choice", "Running")
    expect(page.locator("#character_pose_preview img")).to_have_count(1)
    page.locator("#character_repose").click()
    expect(page.locator("#character_history img")).to_have_count(1,
                                                                 timeout=GENERATION_TIMEOUT_MS)
    expect(page.locator("#character_result img")).to_have_count(1)
    expect(info).to_have_value(re.compile(r"Seed: 4321[\s\S]*ControlNet 0"))

    choose_option(page, "character_pose_choice", "Waving")
    page.locator("#character_repose").click()
    expect(page.locator("#character_history img")).to_have_count(2,
                                                                 timeout=GENERATION_TIMEOUT_MS)
