"""The prompt row's conveniences: token counts with A1111's rules, ↙️ read generation parameters
(through the handler the built UI wires), and styles saved to / applied from styles.csv."""
from __future__ import annotations

import csv
from pathlib import Path

import gradio as gr
import pytest

from modules.engine.tokenizer import get_clip_tokenizer
from modules.ui.prompt_tools import TokenCounter, apply_selected_styles, count_ui_prompt_tokens, \
    delete_style, fit_value, infotext_ui_values, save_style, token_counter_update
from modules.ui.txt2img_tab import TXT2IMG_INPUT_NAMES, params_from_ui

ROOT = Path(__file__).resolve().parents[2]

INFOTEXT = (
    "a castle on a hill, (sunset:1.2)\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 31, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 320x448, "
    "Denoising strength: 0.45, Hires upscale: 1.5, Hires steps: 8, "
    "Hires upscaler: Latent (nearest), Batch size: 2, Version: v1.10.1")


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter(get_clip_tokenizer())


# -- token counter ------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt, steps, expected", [
    ("", 20, (0, 75)),
    ("a cat", 20, (2, 75)),
    (" ".join(["cat"] * 80), 20, (80, 150)),
    ("a BREAK b", 20, (76, 150)),                     # BREAK fills the first chunk
    ("a cat AND a dog with a red hat", 20, (6, 75)),  # the longest AND part counts
    ("a [castle on a big hill:dog:5]", 10, (6, 75)),  # the longest text of the schedule
    ("<lora:style:0.8> a cat", 20, (2, 75)),          # extra-network tags are not tokens
    ("# a comment line\na cat", 20, (2, 75)),
])
def test_token_counts_follow_a1111_rules(counter, prompt, steps, expected):
    assert count_ui_prompt_tokens(counter, prompt, steps) == expected


def test_negative_prompt_is_not_split_on_and(counter):
    assert count_ui_prompt_tokens(counter, "a cat AND dog", 20, is_positive=False) == (4, 75)
    assert count_ui_prompt_tokens(counter, "a cat AND dog", 20, is_positive=True) == (2, 75)


def test_counter_text_shown_in_the_tab(ctx):
    assert token_counter_update(ctx, "a cat", 20, True) == "<span>2/75</span>"
    long_prompt = ", ".join(["red cat"] * 30)    # 89 tokens
    assert token_counter_update(ctx, long_prompt, 20, True) == "<span>89/150</span>"


# -- read generation parameters ----------------------------------------------------------------
def test_infotext_becomes_control_values(ctx):
    values = infotext_ui_values(INFOTEXT, options=ctx.options, style_db=ctx.styles)
    assert values["prompt"] == "a castle on a hill, (sunset:1.2)"
    assert values["negative_prompt"] == "blurry, lowres"
    assert (values["sampler_name"], values["scheduler"]) == ("DPM++ 2M", "Karras")
    assert (values["steps"], values["cfg_scale"], values["seed"]) == (31, 6.5, 1234567)
    assert (values["width"], values["height"], values["batch_size"]) == (320, 448, 2)
    assert values["enable_hr"] is True and values["hr_scale"] == 1.5
    assert (values["hr_second_pass_steps"], values["hr_upscaler"]) == (8, "Latent (nearest)")
    assert values["denoising_strength"] == 0.45
    assert values["enable_refiner"] is False


def _event_for(blocks: gr.Blocks, elem_id: str, event: str = "click"):
    block = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)
    return next(fn for fn in blocks.fns.values()
                if any(target == (block._id, event) for target in fn.targets))


@pytest.fixture(scope="module")
def blocks(ctx):
    from modules.ui.app import build_ui
    return build_ui(ctx)


def test_paste_button_sets_every_field_of_the_txt2img_tab(blocks):
    paste = _event_for(blocks, "txt2img_paste")
    updates = paste.fn(INFOTEXT)
    by_id = {output.elem_id: value for output, value in zip(paste.outputs, updates)
             if not isinstance(value, type(gr.skip()))}
    assert by_id["txt2img_prompt"] == "a castle on a hill, (sunset:1.2)"
    assert by_id["txt2img_neg_prompt"] == "blurry, lowres"
    assert by_id["txt2img_sampling"] == "DPM++ 2M"
    assert by_id["txt2img_scheduler"] == "Karras"
    assert (by_id["txt2img_steps"], by_id["txt2img_cfg_scale"]) == (31, 6.5)
    assert (by_id["txt2img_seed"], by_id["txt2img_width"], by_id["txt2img_height"]) == \
        (1234567, 320, 448)
    assert by_id["txt2img_batch_size"] == 2
    assert by_id["txt2img_enable_hr"] is True
    assert (by_id["txt2img_hr_scale"], by_id["txt2img_hires_steps"]) == (1.5, 8)
    assert by_id["txt2img_hr_upscaler"] == "Latent (nearest)"
    assert by_id["txt2img_denoising_strength"] == 0.45
    # batch count is not part of an infotext: left as it is
    assert "txt2img_batch_count" not in by_id


def test_paste_on_an_empty_prompt_reads_the_last_generation(ctx, blocks):
    ctx.paths.params_file.write_text("a red fox\nSteps: 9, Sampler: Euler a, CFG scale: 3, "
                                     "Seed: 5, Size: 256x256", encoding="utf-8")
    try:
        paste = _event_for(blocks, "img2img_paste")
        updates = paste.fn("")
    finally:
        ctx.paths.params_file.unlink()
    by_id = {output.elem_id: value for output, value in zip(paste.outputs, updates)}
    assert by_id["img2img_prompt"] == "a red fox"
    assert (by_id["img2img_steps"], by_id["img2img_sampling"]) == (9, "Euler a")
    assert by_id["img2img_width"] == 256


def test_values_the_controls_cannot_take_are_left_alone():
    with gr.Blocks():
        sampler = gr.Dropdown(["Euler", "Euler a"], value="Euler")
        steps = gr.Slider(1, 150, value=20)
        mode = gr.Radio(["Whole picture", "Only masked"], type="index", value=0)
    assert isinstance(fit_value(sampler, "Unknown sampler"), type(gr.skip()))
    assert fit_value(sampler, "Euler a") == "Euler a"
    assert fit_value(steps, 500) == 150
    assert fit_value(mode, 1) == 1 and fit_value(mode, "Only masked") == 1


# -- styles -------------------------------------------------------------------------------------
def _csv_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as file:
        return list(csv.DictReader(file))


def test_styles_save_apply_and_delete_update_styles_csv(ctx):
    styles_file = ctx.styles.default_path
    save_style(ctx.styles, "cinematic", "{prompt}, cinematic light", "cartoon")
    save_style(ctx.styles, "sharp", "sharp focus", "")
    rows = _csv_rows(styles_file)
    assert {row["name"]: (row["prompt"], row["negative_prompt"]) for row in rows} == {
        "cinematic": ("{prompt}, cinematic light", "cartoon"), "sharp": ("sharp focus", "")}

    prompt, negative, selection = apply_selected_styles(ctx.styles, "a cat", "blurry",
                                                        ["cinematic", "sharp"])
    assert prompt == "a cat, cinematic light, sharp focus"
    assert negative == "blurry, cartoon"
    assert selection == []

    save_style(ctx.styles, "sharp", "very sharp", "noise")       # edit
    delete_style(ctx.styles, "cinematic")
    rows = _csv_rows(styles_file)
    assert [(row["name"], row["prompt"], row["negative_prompt"]) for row in rows] == [
        ("sharp", "very sharp", "noise")]
    assert not styles_file.with_name(styles_file.name + ".tmp").exists()
    with pytest.raises(ValueError):
        save_style(ctx.styles, "  ", "x", "y")


def test_selected_styles_reach_the_generation_request():
    values = dict(zip(TXT2IMG_INPUT_NAMES, (
        "a cat", "", "Euler a", "Automatic", 4.0, 7.0, 64.0, 64.0, -1.0, 1.0, 1.0,
        False, "Latent", 0.0, 0.7, 2.0, 0.0, 0.0, "Use same checkpoint", "Use same sampler",
        "Use same scheduler", "", "", False, "None", 0.8, ["sharp"])))
    assert params_from_ui(values).styles == ["sharp"]


def test_a_dropped_image_gives_its_parameters_or_says_why_not(tmp_path):
    import gradio as gr
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from modules.ui.prompt_tools import dropped_image_infotext

    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 5, Seed: 3")
    with_params = tmp_path / "with.png"
    Image.new("RGB", (8, 8)).save(with_params, pnginfo=info)
    assert dropped_image_infotext(str(with_params)) == "a cat\nSteps: 5, Seed: 3"

    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    for path, message in ((plain, "holds no generation parameters"),
                          (not_an_image, "not an image"), (None, "Nothing was dropped")):
        with pytest.raises(gr.Error, match=message):
            dropped_image_infotext(str(path) if path else None)
