"""ui-config.json: written with the current defaults on first start, honoured on the next build
(values and limits), bad values ignored with a warning."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import gradio as gr
import pytest

from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.ui.app import build_ui
from modules.ui.ui_config import apply_ui_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def ctx(tmp_path):
    args, _ = parse_args(["--data-dir", str(tmp_path), "--skip-load-model-at-start"])
    context = build_app_context(args, ROOT)
    yield context
    context.close()


def component(blocks: gr.Blocks, elem_id: str):
    return next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def page_props(blocks: gr.Blocks, elem_id: str) -> dict:
    """What the browser gets: the frozen page config of the component."""
    block_id = component(blocks, elem_id)._id
    return next(c["props"] for c in blocks.config["components"] if c["id"] == block_id)


def test_first_start_writes_every_labelled_control(ctx):
    assert not ctx.paths.ui_config_file.exists()
    build_ui(ctx)
    written = json.loads(ctx.paths.ui_config_file.read_text(encoding="utf-8"))
    assert written["txt2img/Sampling steps/value"] == 20
    assert written["txt2img/Sampling steps/maximum"] == 150
    assert written["txt2img/Sampling steps/step"] == 1
    assert written["txt2img/Sampling steps/visible"] is True
    assert written["img2img/Denoising strength/value"] == 0.75
    assert written["extras/Upscaler 1/value"] == "None"
    assert written["txt2img/Sampling method/value"] == "DPM++ 2M"
    assert not any(key.startswith("settings/") for key in written)


def test_edited_file_sets_defaults_and_limits_on_rebuild(ctx):
    build_ui(ctx)
    path = ctx.paths.ui_config_file
    stored = json.loads(path.read_text(encoding="utf-8"))
    stored["txt2img/Sampling steps/value"] = 33
    stored["txt2img/Width/maximum"] = 4096
    stored["txt2img/Width/value"] = 3000          # allowed because the maximum is applied first
    stored["img2img/Sampling method/value"] = "Euler"
    stored["txt2img/Negative prompt/visible"] = False
    path.write_text(json.dumps(stored), encoding="utf-8")

    blocks = build_ui(ctx)
    assert component(blocks, "txt2img_steps").value == 33
    assert page_props(blocks, "txt2img_steps")["value"] == 33
    assert page_props(blocks, "txt2img_width")["maximum"] == 4096
    assert page_props(blocks, "txt2img_width")["value"] == 3000
    assert page_props(blocks, "img2img_sampling")["value"] == "Euler"
    assert page_props(blocks, "txt2img_neg_prompt")["visible"] is False
    assert page_props(blocks, "img2img_steps")["value"] == 20     # other tab untouched


def test_bad_values_are_ignored_with_a_warning(ctx, caplog):
    path = ctx.paths.ui_config_file
    path.write_text(json.dumps({"txt2img/Sampling steps/value": "many",
                                "txt2img/Sampling steps/step": -1,
                                "txt2img/CFG Scale/value": 99.0,
                                "txt2img/Sampling method/value": "No such sampler",
                                "txt2img/Batch count/visible": "yes"}), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="modules.ui.ui_config"):
        blocks = build_ui(ctx)
    steps = page_props(blocks, "txt2img_steps")
    assert steps["value"] == 20 and steps["step"] == 1
    assert page_props(blocks, "txt2img_cfg_scale")["value"] == 7.0
    assert page_props(blocks, "txt2img_sampling")["value"] == "DPM++ 2M"
    assert page_props(blocks, "txt2img_batch_count")["visible"] is True
    warned = " ".join(record.getMessage() for record in caplog.records)
    for key in ("Sampling steps/value", "Sampling steps/step", "CFG Scale/value",
                "Sampling method/value", "Batch count/visible"):
        assert f"txt2img/{key}" in warned
    # the bad values stay in the file for the user to fix; missing keys were added
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["txt2img/Sampling steps/value"] == "many"
    assert written["txt2img/Width/value"] == 512


def test_corrupt_file_is_ignored(ctx, caplog):
    ctx.paths.ui_config_file.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="modules.ui.ui_config"):
        blocks = build_ui(ctx)
    assert page_props(blocks, "txt2img_steps")["value"] == 20
    assert "Ignoring" in caplog.text


def test_apply_ui_config_on_a_small_page(tmp_path):
    path = tmp_path / "ui-config.json"
    path.write_text(json.dumps({"demo/Strength/value": 0.25, "demo/Mode/value": "b"}))
    with gr.Blocks() as blocks:
        with gr.Tab("demo") as tab:
            strength = gr.Slider(0.0, 1.0, value=0.5, label="Strength")
            mode = gr.Radio(["a", "b"], value="a", label="Mode")
            gr.Image(label="Picture")
            report = apply_ui_config([("demo", tab)], path)
    assert strength.value == 0.25 and mode.value == "b"
    assert report.applied == ["demo/Strength/value", "demo/Mode/value"]
    assert "demo/Picture/visible" in report.added and "demo/Picture/value" not in report.added
    assert blocks.config is not None
