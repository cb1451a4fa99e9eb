"""Settings tab and quicksettings: Apply writes config.json or names the bad value, search,
defaults view, the VAE dropdown setting sd_vae, the checkpoint dropdown's status line."""
from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.ui.quicksettings import change_checkpoint_with_status, change_setting, change_vae, \
    quicksettings_keys
from modules.ui.settings_tab import HIDDEN_SETTINGS, apply_settings, changed_settings_html, \
    matching_settings, settings_sections
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def ctx(tmp_path):
    ckpt_dir = tmp_path / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / "tiny-sd1.safetensors", "sd1", seed=1)
    vae_dir = tmp_path / "models" / "VAE"
    vae_dir.mkdir(parents=True)
    (vae_dir / "my-vae.safetensors").write_bytes(b"placeholder")   # listed, never loaded here
    args, _ = parse_args(["--data-dir", str(tmp_path), "--skip-load-model-at-start"])
    context = build_app_context(args, ROOT)
    yield context
    context.close()


def stored(ctx) -> dict:
    return json.loads(ctx.paths.config_file.read_text(encoding="utf-8"))


def test_apply_saves_changed_settings(ctx):
    message = apply_settings(ctx.options, {"samples_format": "jpg", "jpeg_quality": 91.0,
                                           "samples_save": True})
    assert "2 settings changed: samples_format, jpeg_quality." in message
    assert stored(ctx) == {"samples_format": "jpg", "jpeg_quality": 91}
    assert ctx.options.get("jpeg_quality") == 91
    assert "Nothing changed" in apply_settings(ctx.options, {"jpeg_quality": 91})


def test_apply_rejects_bad_values_and_changes_nothing(ctx):
    message = html.unescape(apply_settings(
        ctx.options, {"samples_format": "webp", "jpeg_quality": "very high", "emphasis": "Loud"}))
    assert "Settings not applied" in message and "class='error'" in message
    assert "Quality for saved jpeg and avif images" in message and "'very high'" in message
    assert "'Loud' is not one of" in message
    assert ctx.options.get("samples_format") == "png"
    assert not ctx.paths.config_file.exists()


def test_frozen_settings_are_not_applied(ctx):
    object.__setattr__(ctx.options, "frozen", True)
    assert "frozen" in apply_settings(ctx.options, {"jpeg_quality": 50})
    assert ctx.options.get("jpeg_quality") == 80


def test_search_filters_by_label_and_key(ctx):
    keys = ["jpeg_quality", "samples_save", "CLIP_stop_at_last_layers"]
    assert matching_settings(ctx.options, keys, "JPEG") == [True, False, False]
    assert matching_settings(ctx.options, keys, "clip skip") == [False, False, True]
    assert matching_settings(ctx.options, keys, "clip_stop") == [False, False, True]
    assert matching_settings(ctx.options, keys, "  ") == [True, True, True]


def test_sections_hold_every_visible_setting_once(ctx):
    sections = settings_sections(ctx.options)
    keys = [key for section in sections for key in section.keys]
    assert sorted(keys) == sorted(set(ctx.options.data_labels) - HIDDEN_SETTINGS)
    titles = [section.title for section in sections]
    assert titles[0] == "Saving images/grids" and "Stable Diffusion" in titles and "VAE" in titles


def test_defaults_view_lists_changed_settings(ctx):
    keys = list(ctx.options.data_labels)
    assert "Every setting has its default value" in changed_settings_html(ctx.options, keys)
    ctx.options.set("jpeg_quality", 42)
    view = changed_settings_html(ctx.options, keys)
    assert "jpeg_quality" in view and "<td>80</td>" in view and "<td>42</td>" in view


def test_vae_dropdown_sets_sd_vae(ctx):
    assert ctx.vaes.names() == ["Automatic", "None", "my-vae.safetensors"]
    assert change_vae(ctx, "my-vae.safetensors") == ""
    assert ctx.options.get("sd_vae") == "my-vae.safetensors"
    assert stored(ctx)["sd_vae"] == "my-vae.safetensors"
    assert "not found" in change_vae(ctx, "missing.pt")
    assert ctx.options.get("sd_vae") == "my-vae.safetensors"
    assert change_vae(ctx, "None") == "" and stored(ctx)["sd_vae"] == "None"


def test_quicksettings_row_and_extra_keys(ctx):
    assert quicksettings_keys(ctx) == ["sd_model_checkpoint", "sd_vae"]
    ctx.options.set("quicksettings_list", ["sd_vae", "CLIP_stop_at_last_layers", "nonexistent"])
    assert quicksettings_keys(ctx) == ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"]
    assert change_setting(ctx, "CLIP_stop_at_last_layers", 2.0) == ""
    assert stored(ctx)["CLIP_stop_at_last_layers"] == 2
    assert "expects int" in change_setting(ctx, "CLIP_stop_at_last_layers", "two")


def test_checkpoint_dropdown_reports_loading_then_loaded(ctx):
    updates = list(change_checkpoint_with_status(ctx, "tiny-sd1"))
    assert "Loading tiny-sd1" in updates[0]
    assert "Loaded tiny-sd1.safetensors" in updates[-1]
    assert ctx.model_manager.current_checkpoint().model_name == "tiny-sd1"
    assert stored(ctx)["sd_model_checkpoint"].startswith("tiny-sd1.safetensors")
    failed = list(change_checkpoint_with_status(ctx, "does-not-exist"))
    assert "not found" in failed[-1]


def test_built_settings_tab_shows_current_values(ctx):
    from modules.ui.app import build_ui
    ctx.options.set("jpeg_quality", 64)
    blocks = build_ui(ctx)
    by_elem = {block.elem_id: block for block in blocks.blocks.values()
               if getattr(block, "elem_id", None)}
    assert by_elem["setting_jpeg_quality"].value == 64
    assert by_elem["setting_jpeg_quality"].maximum == 100
    assert "setting_sd_checkpoint_hash" not in by_elem
    vae = by_elem["setting_sd_vae"]   # the quicksettings dropdown comes first on the page
    assert [choice[1] for choice in vae.choices] == ["Automatic", "None", "my-vae.safetensors"]
    assert by_elem["settings_reload_ui"].value == "Reload UI"


def test_a_page_load_reads_every_stored_value_in_one_request(ctx):
    """A reloaded page shows what is stored now (changed after the UI was built, e.g. through the
    API), and all settings come back in one load event rather than one per control."""
    from modules.ui.app import build_ui
    blocks = build_ui(ctx)
    load_events = [fn for fn in blocks.fns.values()
                   if any(target[1] == "load" for target in fn.targets)]
    assert len(load_events) == 1
    event = load_events[0]
    assert event.queue is False
    outputs = [component.elem_id for component in event.outputs]

    ctx.options.set("jpeg_quality", 61)
    ctx.options.set("samples_save", False)
    values: dict = {}
    for elem_id, value in zip(outputs, event.fn()):
        values.setdefault(elem_id, value)   # the quicksettings row comes first on the page
    assert values["setting_jpeg_quality"] == 61
    assert values["setting_samples_save"] is False
    assert values["setting_sd_model_checkpoint"]["choices"] == ctx.checkpoints.titles()


def test_settings_show_the_server_limits_with_their_defaults(ctx):
    from modules.app.server_limits import LIMIT_SPECS
    from modules.ui.app import build_ui
    blocks = build_ui(ctx)
    by_elem = {block.elem_id: block for block in blocks.blocks.values()
               if getattr(block, "elem_id", None)}
    section = by_elem["settings_section_server-limits"]
    assert section.label == "Server limits"
    for spec in LIMIT_SPECS:
        control = by_elem[f"setting_{spec.key}"]
        assert control.value == spec.default and control.label == spec.label
    assert by_elem["setting_limit_steps"].value == 500
    assert by_elem["setting_limit_image_side"].value == 4096
