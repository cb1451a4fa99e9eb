"""The prompt box conveniences A1111 users rely on: token counter, Ctrl+Up / Ctrl+Down on a
selection, pasting an infotext (clipboard or the "read generation parameters" button), dropping
an image that carries parameters on the prompt box."""
from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from playwright.sync_api import expect

INFOTEXT = ("a dog in the snow\nNegative prompt: blurry\nSteps: 7, Sampler: Euler a, "
            "Schedule type: Karras, CFG scale: 4.5, Seed: 99, Size: 64x96, Model: tiny")
# elem_id → (what to read inside it, the value the infotext above sets)
PASTED_FIELDS = {
    "txt2img_prompt": ("textarea", "a dog in the snow"),
    "txt2img_neg_prompt": ("textarea", "blurry"),
    "txt2img_steps": ("input[type=number]", "7"),
    "txt2img_sampling": ("input", "Euler a"),
    "txt2img_scheduler": ("input", "Karras"),
    "txt2img_cfg_scale": ("input[type=number]", "4.5"),
    "txt2img_seed": ("input", "99"),
    "txt2img_width": ("input[type=number]", "64"),
    "txt2img_height": ("input[type=number]", "96"),
}


@pytest.fixture
def needs(page):
    """Skip a test whose UI element is not built (a feature another change adds)."""
    def check(elem_id: str) -> None:
        if page.locator(f"#{elem_id}").count() == 0:
            pytest.skip(f"#{elem_id} is not in the UI")
    return check


def test_token_counter_follows_the_prompt(page, needs):
    needs("txt2img_token_counter")
    counter = page.locator("#txt2img_token_counter")
    expect(counter).to_have_text("0/75")
    page.locator("#txt2img_prompt textarea").fill("a cat")
    expect(counter).to_have_text("2/75")
    # past 75 tokens the limit grows by another chunk of 75
    page.locator("#txt2img_prompt textarea").fill("cat " * 80)
    expect(counter).to_have_text("80/150")


def test_ctrl_up_and_down_change_the_weight_of_the_selection(page):
    prompt = page.locator("#txt2img_prompt textarea")
    prompt.fill("a cat on a mat")
    prompt.evaluate("box => { box.focus(); box.setSelectionRange(2, 5); }")   # "cat"
    prompt.press("Control+ArrowUp")
    expect(prompt).to_have_value("a (cat:1.1) on a mat")
    prompt.press("Control+ArrowUp")
    expect(prompt).to_have_value("a (cat:1.2) on a mat")
    prompt.press("Control+ArrowDown")
    prompt.press("Control+ArrowDown")
    expect(prompt).to_have_value("a cat on a mat")


def expect_pasted_fields(page) -> None:
    for elem_id, (inner, value) in PASTED_FIELDS.items():
        expect(page.locator(f"#{elem_id} {inner}")).to_have_value(value)


def test_pasting_an_infotext_into_the_prompt_sets_every_field(page):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.evaluate("text => navigator.clipboard.writeText(text)", INFOTEXT)
    prompt = page.locator("#txt2img_prompt textarea")
    prompt.focus()
    prompt.press("Control+V")
    expect_pasted_fields(page)


def test_read_generation_parameters_button_sets_every_field(page, needs):
    needs("txt2img_paste")
    page.locator("#txt2img_prompt textarea").fill(INFOTEXT)
    page.locator("#txt2img_paste").click()
    expect_pasted_fields(page)


def drop_file(page, selector: str, name: str, data: bytes, mime: str) -> None:
    """Drop a file on an element, as dragging it from the desktop does."""
    page.evaluate("""([selector, name, b64, mime]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: mime}));
        const target = document.querySelector(selector);
        for (const type of ["dragenter", "dragover", "drop"]) {
            target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true,
                                                      dataTransfer: transfer}));
        }
    }""", [selector, name, base64.b64encode(data).decode(), mime])


def test_dropping_an_image_on_the_prompt_sets_every_field(page):
    info = PngInfo()
    info.add_text("parameters", INFOTEXT)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 96), (200, 30, 30)).save(buffer, format="PNG", pnginfo=info)
    page.locator("#txt2img_prompt textarea").fill("something typed before")
    drop_file(page, "#txt2img_prompt textarea", "dog.png", buffer.getvalue(), "image/png")
    expect_pasted_fields(page)
