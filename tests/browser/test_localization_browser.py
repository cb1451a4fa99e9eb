"""A localization from an extension's localizations/ folder, chosen in the settings, translates
the page when it loads (after the restart A1111 also needs)."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import VIEWPORT, wait_until_ready, write_tiny_data_dir
from tests.server_process import start_app_server, stop_app_server


@pytest.fixture(scope="module")
def german_server(tmp_path_factory, app_server):
    data_dir = tmp_path_factory.mktemp("localized-app")
    write_tiny_data_dir(data_dir)
    folder = data_dir / "extensions" / "sd-webui-de" / "localizations"
    folder.mkdir(parents=True)
    (folder / "de.json").write_text(json.dumps(
        {"Generate": "Erzeugen", "Sampling steps": "Sampling-Schritte"}),
        encoding="utf-8")
    (data_dir / "config.json").write_text(json.dumps({"localization": "de"}), encoding="utf-8")
    server = start_app_server(data_dir)
    yield server
    stop_app_server(server)


def test_the_chosen_localization_translates_the_page(browser, german_server):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(german_server.base_url + "/")
        wait_until_ready(page)
        expect(page.locator("#txt2img_generate")).to_have_text("Erzeugen")
        expect(page.locator("#txt2img_steps")).to_contain_text("Sampling-Schritte")
        # text the user types stays as typed
        prompt = page.locator("#txt2img_prompt textarea")
        prompt.fill("Generate")
        expect(prompt).to_have_value("Generate")
    finally:
        context.close()
