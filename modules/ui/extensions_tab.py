"""The Extensions tab ("Installed"): every folder of extensions-builtin/ and extensions/ with
whether it is enabled, its version when it is a git checkout, and the scripts that failed to
load; switching extensions on or off is stored in the `disabled_extensions` setting and takes
effect when the server starts again (the loaded scripts are not swapped under a running app)."""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import gradio as gr

from modules.scripting.extension_git import git_info
from modules.scripting.host import Extension, find_extensions

if TYPE_CHECKING:
    from modules.app.context import AppContext

RESTART_NOTICE = "Restart the server to apply the change."


def git_version(folder: Path) -> str:
    """The short commit of a git checkout, "" otherwise."""
    info = git_info(folder)
    return info.version if info is not None else ""


def current_extensions(ctx: "AppContext") -> list[Extension]:
    """The folders as they are now, enabled as the setting says (what the next start loads)."""
    return find_extensions(ctx.paths.extensions_dir, ctx.paths.builtin_extensions_dir,
                           disabled=ctx.options.get("disabled_extensions") or [],
                           disable=str(ctx.options.get("disable_all_extensions") or "none"))


def extensions_table_html(extensions: Sequence[Extension], loaded: set[str]) -> str:
    if not extensions:
        return "<p>No extensions installed.</p>"
    rows = []
    for extension in extensions:
        state = "enabled" if extension.enabled else "disabled"
        if extension.enabled != (extension.name in loaded):
            state += " (after restart)"
        rows.append(f"<tr><td>{html.escape(extension.name)}</td>"
                    f"<td>{'built-in' if extension.is_builtin else 'user'}</td>"
                    f"<td>{state}</td><td>{html.escape(git_version(extension.path))}</td>"
                    f"<td><code>{html.escape(str(extension.path))}</code></td></tr>")
    return ("<table id='extensions'><tr><th>Extension</th><th>Kind</th><th>State</th>"
            f"<th>Version</th><th>Folder</th></tr>{''.join(rows)}</table>")


def load_errors_html(ctx: "AppContext") -> str:
    errors = ctx.scripts.errors
    if not errors:
        return ""
    items = "".join(f"<li><code>{html.escape(error)}</code></li>" for error in errors)
    return f"<div class='error'><p>Scripts that failed to load:</p><ul>{items}</ul></div>"


def apply_extension_choices(ctx: "AppContext", enabled: Sequence[str]) -> str:
    """Store which extensions load from the next start; the message says what changed."""
    names = [extension.name for extension in current_extensions(ctx)]
    disabled = [name for name in names if name not in set(enabled)]
    before = set(ctx.options.get("disabled_extensions") or [])
    ctx.options.set("disabled_extensions", disabled)
    ctx.options.save()
    changed = sorted(before.symmetric_difference(disabled))
    if not changed:
        return "Nothing changed."
    return f"Changed: {', '.join(changed)}. {RESTART_NOTICE}"


def build_extensions_tab(ctx: "AppContext") -> None:
    loaded = {extension.name for extension in ctx.scripts.extensions if extension.enabled}

    def table() -> str:
        return extensions_table_html(current_extensions(ctx), loaded)

    extensions = current_extensions(ctx)
    with gr.Row():
        choices = gr.CheckboxGroup([extension.name for extension in extensions],
                                   value=[e.name for e in extensions if e.enabled],
                                   label="Enabled extensions", elem_id="extensions_enabled")
        apply = gr.Button("Apply (takes effect after a restart)", variant="primary",
                          elem_id="extensions_apply", scale=0)
    message = gr.HTML(elem_id="extensions_message")
    listing = gr.HTML(table(), elem_id="extensions_installed_html")
    gr.HTML(load_errors_html(ctx), elem_id="extensions_load_errors")
    refresh = gr.Button("Check for extensions", elem_id="extensions_refresh")

    def on_apply(enabled: list[str]) -> tuple[str, str]:
        return html.escape(apply_extension_choices(ctx, enabled)), table()

    apply.click(on_apply, inputs=[choices], outputs=[message, listing], api_visibility="private")
    refresh.click(lambda: (gr.update(choices=[e.name for e in current_extensions(ctx)],
                                     value=[e.name for e in current_extensions(ctx) if e.enabled]),
                           table()),
                  outputs=[choices, listing], api_visibility="private", queue=False)
