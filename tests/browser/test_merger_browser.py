"""The Checkpoint Merger tab in the browser: pick model A, re-save it as float16 under a new name,
see where it was saved and its recipe, and find the new checkpoint in the checkpoint dropdown at
the top of the page without a refresh."""
from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.browser.conftest import CHECKPOINT_NAME, GENERATION_TIMEOUT_MS


def test_a_merge_in_the_tab_is_listed_at_once_in_the_checkpoint_dropdown(page, app_server):
    page.locator("#tab_modelmerger-button").click()
    page.locator("#modelmerger_primary_model_name input").click()
    page.get_by_role("option", name=CHECKPOINT_NAME, exact=False).first.click()
    page.get_by_label("No interpolation").check()
    expect(page.locator("#modelmerger_interp_description")).to_contain_text("Requires one model")
    page.locator("#modelmerger_custom_name textarea").fill("tiny-half")
    page.locator("#modelmerger_save_as_half input").check()
    page.locator("#modelmerger_merge").click()

    saved = app_server.data_dir / "models" / "Stable-diffusion" / "tiny-half.safetensors"
    expect(page.locator("#modelmerger_result")).to_contain_text(
        f"Checkpoint saved to {saved}", timeout=GENERATION_TIMEOUT_MS)
    assert saved.is_file()
    recipe = json.loads(page.locator("#modelmerger_recipe .cm-content").inner_text())
    assert recipe["primary_model_name"] == CHECKPOINT_NAME and recipe["save_as_half"] is True

    # the quicksettings dropdown lists it (no refresh click), and it loads from there
    page.locator("#setting_sd_model_checkpoint input").click()
    new_title = page.get_by_role("option").filter(has_text="tiny-half.safetensors")
    expect(new_title).to_have_count(1)
    page.keyboard.press("Escape")

    # the same name again is refused in the tab, and the file stays as it was
    before = saved.read_bytes()
    page.locator("#modelmerger_merge").click()
    expect(page.locator("#modelmerger_result")).to_contain_text("already exists",
                                                               timeout=GENERATION_TIMEOUT_MS)
    assert saved.read_bytes() == before
    saved.unlink()          # the session's server is shared with other browser tests
