"""The Extensions tab: every folder of extensions-builtin/ and extensions/ with whether it is
enabled, its version when it is a git checkout, and the scripts that failed to load; switching
extensions on or off is stored in the `disabled_extensions` setting. Install from a git URL,
check for updates and update (modules/scripting/extension_install.py). All of it takes effect
when the server starts again (the loaded scripts are not swapped under a running app)."""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import gradio as gr

from modules.scripting.extension_git import git_info
from modules.scripting.extension_install import (ExtensionInstallError, check_for_update,
                                                 extension_access_refusal, install_from_url,
                                                 update_extension)
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


def install_extension(ctx: "AppContext", url: str, branch: str = "",
                      dirname: str = "") -> str:
    """"Install from URL": the message to show (done, or why not)."""
    refusal = extension_access_refusal(ctx.args)
    if refusal:
        return refusal
    try:
        folder = install_from_url(ctx.paths.extensions_dir, url, branch=branch or None,
                                  dirname=dirname or None)
    except ExtensionInstallError as error:
        return str(error)
    return f"Installed into {folder}. {RESTART_NOTICE}"


def _user_checkouts(ctx: "AppContext") -> list[Extension]:
    return [extension for extension in current_extensions(ctx) if not extension.is_builtin]


def check_updates(ctx: "AppContext") -> str:
    """Each user extension's update state, as lines."""
    refusal = extension_access_refusal(ctx.args)
    if refusal:
        return refusal
    lines = [f"{status.name}: {status.message}"
             for status in (check_for_update(e.path) for e in _user_checkouts(ctx))]
    return "\n".join(lines) or "No extensions installed."


def update_behind(ctx: "AppContext") -> str:
    """Update every user extension whose remote is ahead; what happened, as lines."""
    refusal = extension_access_refusal(ctx.args)
    if refusal:
        return refusal
    lines = []
    for extension in _user_checkouts(ctx):
        if not check_for_update(extension.path).behind:
            continue
        try:
            lines.append(update_extension(extension.path))
        except ExtensionInstallError as error:
            lines.append(f"{extension.name}: {error}")
    return "\n".join(lines + [RESTART_NOTICE]) if lines else "Every extension is up to date."


def _lines_html(text: str) -> str:
    return "<br>".join(html.escape(line) for line in text.splitlines())


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
    with gr.Row():
        check = gr.Button("Check for updates", elem_id="extensions_check_updates")
        update = gr.Button("Update extensions that are behind", elem_id="extensions_update")
    updates = gr.HTML(elem_id="extensions_updates")
    with gr.Accordion("Install from URL", open=False):
        url = gr.Textbox(label="URL for extension's git repository",
                         elem_id="extension_install_url")
        branch = gr.Textbox(label="Specific branch name",
                            placeholder="Leave empty for the default branch",
                            elem_id="extension_install_branch")
        dirname = gr.Textbox(label="Local directory name", placeholder="Leave empty for auto",
                             elem_id="extension_install_dirname")
        install = gr.Button("Install", variant="primary", elem_id="extension_install_button")
        install_result = gr.HTML(elem_id="extension_install_result")

    def on_apply(enabled: list[str]) -> tuple[str, str]:
        return html.escape(apply_extension_choices(ctx, enabled)), table()

    apply.click(on_apply, inputs=[choices], outputs=[message, listing], api_visibility="private")
    refresh.click(lambda: (gr.update(choices=[e.name for e in current_extensions(ctx)],
                                     value=[e.name for e in current_extensions(ctx) if e.enabled]),
                           table()),
                  outputs=[choices, listing], api_visibility="private", queue=False)
    install.click(lambda *values: (_lines_html(install_extension(ctx, *values)), table()),
                  inputs=[url, branch, dirname], outputs=[install_result, listing],
                  api_visibility="private")
    check.click(lambda: _lines_html(check_updates(ctx)), outputs=[updates],
                api_visibility="private")
    update.click(lambda: (_lines_html(update_behind(ctx)), table()),
                 outputs=[updates, listing], api_visibility="private")
