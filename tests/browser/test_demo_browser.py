"""A fresh install's first run: the app starts on the shipped demo model, says it is the demo, opens
at its native 64×64, and Generate in the browser draws the shape and colours the prompt asks for.

Skipped when models/Stable-diffusion/demo-shapes.safetensors is absent."""
from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import ROOT, VIEWPORT, ConsoleErrors, download_gallery_image, \
    generate_and_wait, open_ui, start_app_server, \
    stop_app_server
from tests.demo.shape_analyser import analyse

DEMO_CHECKPOINT = ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """The app over a data folder that holds nothing but the demo model (as a fresh clone)."""
    if not DEMO_CHECKPOINT.is_file():
        pytest.skip("the demo model is not in models/Stable-diffusion")
    data_dir = tmp_path_factory.mktemp("demo-app")
    target = data_dir / "models" / "Stable-diffusion" / DEMO_CHECKPOINT.name
    target.parent.mkdir(parents=True)
    shutil.copyfile(DEMO_CHECKPOINT, target)
    server = start_app_server(data_dir)
    yield server
    stop_app_server(server)


def test_first_generate_on_the_demo_model_draws_the_prompt(browser, demo_server):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    console = ConsoleErrors().attach(page)
    try:
        open_ui(page, demo_server.base_url)
        expect(page.locator("#quicksettings_status")).to_contain_text("demo model")
        expect(page.locator("#txt2img_width input[type=number]")).to_have_value("64")
        expect(page.locator("#txt2img_height input[type=number]")).to_have_value("64")

        page.locator("#txt2img_prompt textarea").fill(
            "a large red circle in the center, on a blue background")
        page.locator("#txt2img_seed input").fill("7")
        info = generate_and_wait(page, "txt2img", expected_in_info="Seed: 7")
        assert "Model: demo-shapes" in info and "Size: 64x64" in info, info
        image = Image.open(io.BytesIO(download_gallery_image(page, "txt2img")))
        found = analyse(image)
        assert (found.background, found.colour) == ("blue", "red"), found
    finally:
        context.close()
    assert not console.errors, console.errors
