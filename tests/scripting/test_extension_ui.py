"""The test extension in the UI (built in-process, events called as the page calls them): its
always-on controls and the Script dropdown are in txt2img and img2img, Generate passes their
values as the job's script args, its on_ui_tabs tab is there, and the Extensions tab switches it
off for the next start."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import ImageOps

from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from tests.scripting.test_extension_api import install_test_extension
from tests.server_process import ROOT


def make_context(data_dir):
    args, _ = parse_args(["--data-dir", str(data_dir), "--skip-load-model-at-start"])
    ctx = build_app_context(args, ROOT)
    ctx.options.set("samples_save", False)
    ctx.options.set("grid_save", False)
    return ctx


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    from modules.ui.app import build_ui
    data = tmp_path_factory.mktemp("extension-ui")
    install_test_extension(data)
    ctx = make_context(data)
    blocks = build_ui(ctx)
    yield ctx, blocks, data
    ctx.close()


def generate_event(blocks, tab: str):
    return next(fn for fn in blocks.fns.values() if fn.api_name == tab)


def run_generate(blocks, changes: dict) -> tuple:
    event = generate_event(blocks, "txt2img")
    labels = [getattr(component, "label", None) for component in event.inputs]
    values = [component.value for component in event.inputs]
    for label, value in {"Prompt": "a red circle", "Width": 64, "Height": 64, "Seed": 1234,
                         "Sampling steps": 3, **changes}.items():
        values[labels.index(label)] = value
    return list(event.fn(*values))[-1]


def test_the_scripts_controls_are_in_both_tabs(ui):
    _, blocks, _ = ui
    for tab in ("txt2img", "img2img"):
        labels = [getattr(component, "label", None)
                  for component in generate_event(blocks, tab).inputs]
        assert "Tag prompts with their seeds" in labels and "Script" in labels
        assert "Mirror the images" in labels
    dropdown = next(block for block in blocks.blocks.values()
                    if getattr(block, "elem_id", None) == "txt2img_script_list")
    choices = [choice[0] for choice in dropdown.choices]
    assert choices[0] == "None" and choices[-1] == "Mirror" and "Prompt matrix" in choices
    tab_text = [block for block in blocks.blocks.values()
                if getattr(block, "elem_id", None) == "seed_tagger_tab_text"]
    assert tab_text, "the extension's on_ui_tabs tab is missing"


def test_generate_passes_the_always_on_scripts_values(ui):
    images, info, info_html, error_html, *_ = run_generate(
        ui[1], {"Tag prompts with their seeds": True})
    assert error_html == ""
    assert json.loads(info)["all_prompts"] == ["a red circle, seed 1234"]
    assert "Seed tagger: seed" in info_html


def test_the_script_dropdown_runs_the_selected_script(ui):
    plain, *_ = run_generate(ui[1], {})
    mirrored, _, _, error_html, *_ = run_generate(ui[1], {"Script": "Mirror"})
    assert error_html == ""
    assert np.array_equal(np.asarray(ImageOps.mirror(plain[0])), np.asarray(mirrored[0]))


def test_the_extensions_tab_disables_it_for_the_next_start(ui, tmp_path):
    from modules.ui.extensions_tab import apply_extension_choices
    ctx, _, data = ui
    message = apply_extension_choices(ctx, enabled=["aesthetic-gradients", "character-pose"])
    assert "sd-seed-tagger" in message and "restart" in message.lower()
    assert ctx.options.get("disabled_extensions") == ["sd-seed-tagger"]
    restarted = make_context(data)
    try:
        # only the app's own scripts are left (the built-in ControlNet and aesthetic gradients
        # are the always-on ones)
        assert "Mirror" not in [script.title() for script in restarted.scripts.txt2img.scripts]
        assert sorted(script.title() for script in restarted.scripts.txt2img.alwayson) == \
            ["Aesthetic embeddings", "ControlNet"]
        assert [(e.name, e.enabled) for e in restarted.scripts.extensions] == \
            [("aesthetic-gradients", True), ("character-pose", True), ("sd-seed-tagger", False)]
    finally:
        restarted.close()
        apply_extension_choices(ctx, enabled=["character-pose", "sd-seed-tagger"])
