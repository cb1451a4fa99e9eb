"""Tabs in A1111's order, the Train tab's sections; Extensions lists its folders."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.ui.app import build_ui
from modules.scripting.host import find_extensions
from modules.ui.extensions_tab import extensions_table_html

ROOT = Path(__file__).resolve().parents[2]


def test_tabs_in_a1111_order(tmp_path):
    (tmp_path / "extensions" / "sd-webui-controlnet").mkdir(parents=True)
    (tmp_path / "extensions" / ".hidden").mkdir()
    args, _ = parse_args(["--data-dir", str(tmp_path), "--skip-load-model-at-start"])
    ctx = build_app_context(args, ROOT)
    try:
        blocks = build_ui(ctx)
    finally:
        ctx.close()
    main_tabs = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "tabs")
    labels = [tab.label for tab in main_tabs.children if isinstance(tab, gr.Tab)]
    # extensions' tabs (the built-in aesthetic-gradients' and character-pose service's) before
    # Settings
    assert labels == ["txt2img", "img2img", "Extras", "PNG Info", "Checkpoint Merger", "Train",
                      "Image Browser", "Create aesthetic embedding", "Character", "Settings",
                      "Extensions"]
    by_elem = {b.elem_id: b for b in blocks.blocks.values() if getattr(b, "elem_id", None)}
    for tab in ("txt2img", "img2img"):     # the aesthetic script's fields in both tabs
        assert by_elem[f"{tab}_aesthetic_imgs"].value == "None"
        assert by_elem[f"{tab}_aesthetic_weight"].value == 0.9
    assert by_elem["modelmerger_merge"].value == "Merge"
    assert by_elem["train_create_embedding_button"].value == "Create embedding"
    assert by_elem["train_train_embedding"].value == "Train Embedding"
    assert "subject_filewords.txt" in [choice[0] for choice in by_elem["train_template"].choices]
    installed = by_elem["extensions_installed_html"].value
    assert "sd-webui-controlnet" in installed and ".hidden" not in installed


def test_extension_folders_builtin_then_user_and_what_loads(tmp_path):
    user, builtin = tmp_path / "extensions", tmp_path / "extensions-builtin"
    for folder in (user / "b-ext", user / "A-ext", builtin / "Lora"):
        folder.mkdir(parents=True)
    (user / "file.txt").write_text("not an extension")
    found = find_extensions(user, builtin, disabled=["b-ext"])
    assert [(f.name, f.is_builtin, f.enabled) for f in found] == [
        ("Lora", True, True), ("A-ext", False, True), ("b-ext", False, False)]
    assert [f.enabled for f in find_extensions(user, builtin, disable="extra")] == \
        [True, False, False]
    assert [f.enabled for f in find_extensions(user, builtin, disable="all")] == [False] * 3
    table = extensions_table_html(found, loaded={"Lora", "A-ext", "b-ext"})
    assert "built-in" in table and "disabled (after restart)" in table
    assert "No extensions installed" in extensions_table_html([], loaded=set())
