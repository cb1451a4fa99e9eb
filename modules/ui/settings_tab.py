"""The Settings tab: every option of the registry grouped by section, a search box that filters
them by label or key, Apply (validate all, then set and save config.json atomically), a view of
the settings that differ from their defaults with a "Restore defaults" button, and Reload UI.

`option_component` is shared with the quicksettings row, so a setting looks the same in both."""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import gradio as gr

from modules.app.options import OptionInfo, Options, coerce_value
from modules.engine.samplers import samplers_api_list
from modules.ui.common import PageLoadRefresh

if TYPE_CHECKING:
    from modules.app.context import AppContext

log = logging.getLogger(__name__)

#: written by the program, never by a person
#: settings whose choices are files on disk: a page load refreshes the choices with the value
FILE_CHOICE_SETTINGS = frozenset({"sd_model_checkpoint", "sd_vae", "upscaler_for_img2img"})
HIDDEN_SETTINGS = frozenset({"sd_checkpoint_hash", "disabled_extensions", "disable_all_extensions"})
RELOAD_UI_JS = "() => { location.reload(); }"

#: a setting whose change needs more than storing the value (e.g. loading a checkpoint):
#: (new value) → error message or None; the handler stores the value itself
ChangeHandler = Callable[[Any], "str | None"]


@dataclass
class SettingsSection:
    section_id: str
    title: str
    keys: list[str]


def settings_sections(options: Options) -> list[SettingsSection]:
    """Visible settings grouped by (section id, title) in registry order."""
    sections: dict[tuple[str, str], SettingsSection] = {}
    for key, info in options.data_labels.items():
        if key in HIDDEN_SETTINGS:
            continue
        section_id, title = info.section
        sections.setdefault(info.section, SettingsSection(section_id, title, [])).keys.append(key)
    return list(sections.values())


def option_choices(ctx: "AppContext", key: str, info: OptionInfo) -> list | None:
    """Choices of a setting; the ones that depend on files on disk come from the context."""
    if key == "sd_model_checkpoint":
        return ctx.checkpoints.titles()
    if key == "sd_vae":
        return ctx.vaes.names()
    if key == "upscaler_for_img2img":
        return ctx.upscalers.names()
    if key == "hide_samplers":
        return [entry["name"] for entry in samplers_api_list()]
    if key == "localization":
        from modules.ui.assets import extension_folders
        from modules.ui.localization import localization_choices
        return localization_choices(ctx.paths.root, extension_folders(
            ctx.paths.builtin_extensions_dir, ctx.paths.extensions_dir))
    if key == "quicksettings_list":
        return [k for k in ctx.options.data_labels if k not in HIDDEN_SETTINGS]
    return info.choice_list()


def shown_value(info: OptionInfo, value: Any) -> Any:
    """A stored setting as its control shows it (see option_component)."""
    kind = info.component
    if kind == "checkbox":
        return bool(value)
    if kind in ("slider", "number", "colorpicker", "radio"):
        return value
    if kind == "checkboxgroup" or (kind == "dropdown"
                                   and (info.component_args or {}).get("multiselect")):
        return list(value or [])
    if kind == "dropdown":
        return value
    return "" if value is None else str(value)


def option_component(key: str, info: OptionInfo, value: Any, choices: list | None, *,
                     elem_id: str | None = None, **layout: Any) -> gr.components.Component:
    """The Gradio control of one setting (A1111's component kinds), showing `value`."""
    value = shown_value(info, value)
    label = info.label or key
    extra = dict(info.component_args or {})
    common = dict(label=label, elem_id=elem_id or f"setting_{key}",
                  info=info.comment or None, **layout)
    kind = info.component
    if kind == "slider":
        return gr.Slider(value=value, **extra, **common)
    if kind == "checkbox":
        return gr.Checkbox(value=value, **common)
    if kind == "number":
        return gr.Number(value=value, **common)
    if kind == "colorpicker":
        return gr.ColorPicker(value=value, **common)
    if kind == "radio" and choices:
        return gr.Radio(choices, value=value, **common)
    if kind == "checkboxgroup":
        return gr.CheckboxGroup(choices or [], value=value, **common)
    if kind in ("dropdown", "radio"):
        multiselect = bool(extra.get("multiselect"))
        return gr.Dropdown(choices or [], value=value, multiselect=multiselect,
                           allow_custom_value=not choices, **common)
    return gr.Textbox(value=value, **common)


def apply_settings(options: Options, values: dict[str, Any], *,
                   change_handlers: dict[str, ChangeHandler] | None = None) -> str:
    """Validate every value first; when one is bad nothing is changed and the message names it.
    Otherwise set the changed ones, save config.json and say which changed. Returns HTML."""
    if options.frozen:
        return _message("Settings are frozen (--freeze-settings); nothing was changed.", True)
    handlers = change_handlers or {}
    coerced: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in values.items():
        try:
            coerced[key] = coerce_value(options.info(key), value)
        except (ValueError, KeyError) as error:
            errors.append(f"{options.info(key).label or key}: {error}")
    if errors:
        return _message("Settings not applied. " + "; ".join(errors), True)

    changed: list[str] = []
    failures: list[str] = []
    for key, value in coerced.items():
        if options.get(key) == value and type(options.get(key)) is type(value):
            continue
        handler = handlers.get(key)
        if handler is not None:
            error = handler(value)
            if error:
                failures.append(f"{key}: {error}")
                continue
            changed.append(key)
            continue
        try:
            if options.set(key, value):
                changed.append(key)
        except Exception as error:  # noqa: BLE001 - an onchange callback failed; value kept
            failures.append(f"{key}: {type(error).__name__}: {error}")
    if changed:
        options.save()
    summary = (f"{len(changed)} settings changed: {', '.join(changed)}." if changed
               else "Nothing changed.")
    if failures:
        return _message(summary + " Failed: " + "; ".join(failures), True)
    return _message(summary, False)


def _message(text: str, is_error: bool) -> str:
    css_class = "error" if is_error else "settings-result"
    return f"<div class='{css_class}'>{html.escape(text)}</div>"


def matching_settings(options: Options, keys: Sequence[str], query: str) -> list[bool]:
    """For each key: does the setting match the search text (label or key, any case)?"""
    needle = (query or "").strip().lower()
    if not needle:
        return [True] * len(keys)
    return [needle in key.lower() or needle in (options.info(key).label or "").lower()
            for key in keys]


def changed_settings_html(options: Options, keys: Sequence[str]) -> str:
    """The "Defaults" view: every setting whose value differs from its default."""
    rows = []
    for key in keys:
        value, default = options.get(key), options.get_default(key)
        if value != default:
            rows.append(f"<tr><td>{html.escape(options.info(key).label or key)}</td>"
                        f"<td><code>{html.escape(key)}</code></td>"
                        f"<td>{html.escape(repr(default))}</td>"
                        f"<td>{html.escape(repr(value))}</td></tr>")
    if not rows:
        return "<p>Every setting has its default value.</p>"
    return ("<table class='settings-defaults'><tr><th>Setting</th><th>Key</th><th>Default</th>"
            "<th>Current</th></tr>" + "".join(rows) + "</table>")


def _checkpoint_handler(ctx: "AppContext") -> ChangeHandler:
    from modules.ui.quicksettings import change_checkpoint

    def load(title: Any) -> str | None:
        message = change_checkpoint(ctx, title)
        return html.unescape(message) if message else None
    return load


def build_settings_tab(ctx: "AppContext", page_load: PageLoadRefresh | None = None) -> None:
    """Components of the tab (inside an open gr.Tab). With `page_load`, a reloaded page shows the
    values stored now rather than those of the moment the UI was built."""
    options = ctx.options
    with gr.Row():
        search = gr.Textbox(label="Search", placeholder="Search settings…", scale=4,
                            elem_id="settings_search")
        apply_button = gr.Button("Apply settings", variant="primary", elem_id="settings_submit",
                                 scale=1)
        reload_button = gr.Button("Reload UI", elem_id="settings_reload_ui", scale=1)
    result = gr.HTML(elem_id="settings_result")

    keys: list[str] = []
    components: list[gr.components.Component] = []
    section_blocks: list[gr.Accordion] = []
    section_keys: list[list[str]] = []
    for section in settings_sections(options):
        with gr.Accordion(section.title, open=True,
                          elem_id=f"settings_section_{section.section_id}") as block:
            for key in section.keys:
                info = options.info(key)
                components.append(option_component(key, info, ctx.shown_option(key),
                                                   option_choices(ctx, key, info)))
                keys.append(key)
        section_blocks.append(block)
        section_keys.append(section.keys)

    with gr.Accordion("Defaults", open=False, elem_id="settings_defaults"):
        defaults_view = gr.HTML(changed_settings_html(options, keys),
                                elem_id="settings_changed_from_defaults")
        with gr.Row():
            show_changed = gr.Button("Show settings changed from defaults",
                                     elem_id="settings_show_changed")
            restore_defaults = gr.Button("Restore defaults (then Apply)",
                                         elem_id="settings_restore_defaults")

    handlers = {"sd_model_checkpoint": _checkpoint_handler(ctx)}

    def stored_value(key: str) -> Any:
        value = shown_value(options.info(key), ctx.shown_option(key))
        if key in FILE_CHOICE_SETTINGS:   # the files (and their hashed titles) may have changed
            return gr.update(choices=option_choices(ctx, key, options.info(key)), value=value)
        return value

    if page_load is not None:
        page_load.add(components, lambda: [stored_value(key) for key in keys])

    def on_apply(*values: Any) -> tuple[Any, ...]:
        message = apply_settings(options, dict(zip(keys, values)), change_handlers=handlers)
        # the controls show what is stored now (a rejected value springs back)
        return (message, changed_settings_html(options, keys),
                *(shown_value(options.info(key), ctx.shown_option(key)) for key in keys))

    def on_search(query: str) -> list[Any]:
        visible = dict(zip(keys, matching_settings(options, keys, query)))
        updates = [gr.update(visible=visible[key]) for key in keys]
        updates += [gr.update(visible=any(visible[key] for key in group))
                    for group in section_keys]
        return updates

    apply_button.click(on_apply, inputs=components,
                       outputs=[result, defaults_view, *components], api_visibility="private")
    search.change(on_search, inputs=[search], outputs=[*components, *section_blocks],
                  show_progress="hidden", api_visibility="private", queue=False)
    show_changed.click(lambda: changed_settings_html(options, keys), outputs=[defaults_view],
                       api_visibility="private", queue=False)
    restore_defaults.click(lambda: [options.get_default(key) for key in keys],
                           outputs=components, api_visibility="private", queue=False)
    reload_button.click(fn=None, js=RELOAD_UI_JS, api_visibility="private")
