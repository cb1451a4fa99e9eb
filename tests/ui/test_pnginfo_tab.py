"""PNG Info: the infotext of a generated PNG and of a JPEG with EXIF, the other metadata, and the
"Send to" buttons filling the right tab and fields."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from modules.processing.images import save_image, write_image
from modules.ui.pnginfo_tab import run_pnginfo
from modules.ui.send_to import SEND_TARGETS, infotext_field_values, send_values
from tests.integration.conftest import generate

ROOT = Path(__file__).resolve().parents[2]
INFOTEXT = ("a red fox, (snow:1.2)\nNegative prompt: blurry\n"
            "Steps: 17, Sampler: Euler a, Schedule type: Karras, CFG scale: 6.5, Seed: 1234, "
            "Size: 96x64, Denoising strength: 0.45")



@pytest.fixture(scope="module")
def ctx(tiny_ctx):
    """These tests generate: the context with the tiny SD1 checkpoint."""
    return tiny_ctx


def test_generated_png_shows_its_infotext(ctx, tmp_path):
    processed = generate(ctx, "tiny-sd1", prompt="a lighthouse", seed=77)
    path, _ = save_image(processed.images[0], tmp_path, infotext=processed.infotexts[0],
                         existing_info={"Software": "tests"}, dir_pattern=None)
    with Image.open(path) as image:
        html, infotext, hidden = run_pnginfo(image)
    assert infotext == processed.infotexts[0] == hidden
    assert infotext.startswith("a lighthouse\n") and "Seed: 77" in infotext
    assert "<b>parameters</b>" in html and "<b>Software</b>" in html and "tests" in html


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("WEBP", "webp")])
def test_exif_usercomment_is_read(tmp_path, fmt, suffix):
    path = tmp_path / f"image.{suffix}"
    write_image(Image.new("RGB", (16, 16), (10, 200, 30)), path, fmt, infotext=INFOTEXT)
    with Image.open(path) as image:
        html, infotext, _ = run_pnginfo(image)
    assert infotext == INFOTEXT
    assert "Negative prompt: blurry" in html and "exif" not in html


def test_image_without_metadata_and_no_image():
    html, infotext, _ = run_pnginfo(Image.new("RGB", (8, 8)))
    assert infotext == "" and "Nothing found" in html
    assert run_pnginfo(None) == ("", "", "")


def test_infotext_fills_the_fields_of_the_target_tab():
    values = infotext_field_values(INFOTEXT, "img2img")
    assert values["img2img_prompt"] == "a red fox, (snow:1.2)"
    assert values["img2img_neg_prompt"] == "blurry"
    assert values["img2img_steps"] == 17 and values["img2img_sampling"] == "Euler a"
    assert values["img2img_scheduler"] == "Karras" and values["img2img_cfg_scale"] == 6.5
    assert values["img2img_seed"] == 1234
    assert (values["img2img_width"], values["img2img_height"]) == (96, 64)
    assert values["img2img_denoising_strength"] == 0.45
    # txt2img has no img2img denoising field; send_seed / send_size off keep them untouched
    txt2img = infotext_field_values(INFOTEXT, "txt2img", send_seed=False, send_size=False)
    assert "txt2img_denoising_strength" not in txt2img and "txt2img_seed" not in txt2img
    assert "txt2img_width" not in txt2img and txt2img["txt2img_steps"] == 17


def test_send_to_inpaint_gives_the_editor_its_background():
    inpaint = next(t for t in SEND_TARGETS if t.name == "inpaint")
    image = Image.new("RGB", (24, 16), (1, 2, 3))
    picture, fields = send_values(inpaint, image, INFOTEXT, ["img2img_steps", "img2img_unknown"])
    assert picture["background"] is image and picture["layers"] == []
    assert fields[0] == 17 and fields[1] == gr.update()


def _dependency_for(blocks: gr.Blocks, elem_id: str):
    button = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)
    for index, dependency in enumerate(blocks.config["dependencies"]):
        if any(target[0] == button._id for target in dependency["targets"]):
            return dependency, blocks.fns[index]
    raise AssertionError(f"no event on {elem_id}")


def test_send_buttons_are_wired_to_their_tabs(ctx):
    from modules.ui.app import build_ui
    blocks = build_ui(ctx)
    by_id = {block._id: block for block in blocks.blocks.values()}
    image = Image.new("RGB", (32, 32), (200, 10, 10))

    dependency, block_fn = _dependency_for(blocks, "pnginfo_send_to_img2img")
    outputs = [getattr(by_id[i], "elem_id", None) for i in dependency["outputs"]]
    assert outputs[:3] == ["tabs", "mode_img2img", "img2img_image"]
    result = dict(zip(outputs, block_fn.fn(image, INFOTEXT)))
    assert result["tabs"].selected == "img2img"
    assert result["mode_img2img"].selected == "img2img_img2img_tab"
    assert result["img2img_image"] is image
    assert result["img2img_prompt"] == "a red fox, (snow:1.2)" and result["img2img_steps"] == 17

    dependency, block_fn = _dependency_for(blocks, "pnginfo_send_to_txt2img")
    outputs = [getattr(by_id[i], "elem_id", None) for i in dependency["outputs"]]
    result = dict(zip(outputs, block_fn.fn(image, INFOTEXT)))
    assert result["tabs"].selected == "txt2img" and result["txt2img_cfg_scale"] == 6.5

    dependency, block_fn = _dependency_for(blocks, "pnginfo_send_to_extras")
    outputs = [getattr(by_id[i], "elem_id", None) for i in dependency["outputs"]]
    result = dict(zip(outputs, block_fn.fn(image, INFOTEXT)))
    assert result["tabs"].selected == "extras" and result["extras_image"] is image
    assert result["mode_extras"].selected == "extras_single_tab"
