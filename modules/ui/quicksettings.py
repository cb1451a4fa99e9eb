"""The row above the tabs (A1111's quicksettings): the checkpoint and VAE dropdowns with their
refresh buttons, then every further setting named in the `quicksettings_list` option.

Choosing a checkpoint loads it on the job worker (the status line says so while it loads) and
stores it in config.json; the VAE dropdown sets `sd_vae` (used by the next job); the other
quicksettings are stored as soon as they change."""
from __future__ import annotations

import html
import logging
import time
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr

from modules.ui.common import PageLoadRefresh, error_to_html
from modules.ui.settings_tab import option_choices, option_component, shown_value

if TYPE_CHECKING:
    from modules.app.context import AppContext

log = logging.getLogger(__name__)
REFRESH_SYMBOL = "\U0001f504"  # 🔄
#: always in the row (the issue's default), before the keys of `quicksettings_list`
FIXED_QUICKSETTINGS = ("sd_model_checkpoint", "sd_vae")


def _selected_title(ctx: "AppContext") -> str | None:
    selected = ctx.active_checkpoint()
    return selected.title if selected is not None else None


def _status_html(ctx: "AppContext") -> str:
    if not ctx.checkpoints.list():
        return error_to_html(ctx.model_manager.no_checkpoint_message())
    selected = ctx.active_checkpoint()
    if selected is not None and selected.is_demo:
        notice = html.escape(ctx.model_manager.demo_model_message())
        return f"<div class='demo-model-notice'>{notice}</div>"
    return ""


def change_checkpoint(ctx: "AppContext", title: str | None) -> str:
    """Load the chosen checkpoint; the returned HTML is the message shown under the dropdown
    ("" when it loaded)."""
    if not title:
        return _status_html(ctx)
    info = ctx.checkpoints.get_closest(title)
    if info is None:
        return error_to_html(f"Checkpoint '{title}' not found in {ctx.paths.ckpt_dir}")
    try:
        ctx.load_checkpoint(info)
    except Exception as error:  # noqa: BLE001 - shown to the user; the old model stays loaded
        log.warning("Loading %s failed: %s", info.filename, error)
        return error_to_html(f"{type(error).__name__}: {error}")
    ctx.options.set("sd_model_checkpoint", info.title)
    ctx.options.save()
    return ""


def change_checkpoint_with_status(ctx: "AppContext", title: str | None) -> Iterator[str]:
    """The dropdown's handler: "Loading …" first (the model loads after the running job), then
    the time it took, or the error."""
    if not title:
        yield _status_html(ctx)
        return
    yield f"<div class='quicksettings-loading'>Loading {html.escape(title)}…</div>"
    started = time.perf_counter()
    message = change_checkpoint(ctx, title)
    if message:
        yield message
        return
    yield (f"<div class='quicksettings-loaded'>Loaded {html.escape(_selected_title(ctx) or '')} in "
           f"{time.perf_counter() - started:.1f} s</div>" + _status_html(ctx))


def change_vae(ctx: "AppContext", name: str | None) -> str:
    """Set `sd_vae` (Automatic / None / a file of models/VAE) and save; HTML error or ""."""
    choice = name or "Automatic"
    if choice not in ctx.vaes.names():
        return error_to_html(f"VAE '{choice}' not found in {ctx.paths.vae_dir}")
    try:
        ctx.options.set("sd_vae", choice)
    except ValueError as error:
        return error_to_html(str(error))
    ctx.options.save()
    return ""


def change_setting(ctx: "AppContext", key: str, value: Any) -> str:
    """A quicksetting other than checkpoint / VAE: store it at once; HTML error or ""."""
    try:
        if ctx.options.set(key, value):
            ctx.options.save()
    except (ValueError, KeyError) as error:
        return error_to_html(str(error))
    return ""


def quicksettings_keys(ctx: "AppContext") -> list[str]:
    """The row's settings: checkpoint and VAE, then `quicksettings_list` (known keys, no repeats)."""
    keys = list(FIXED_QUICKSETTINGS)
    for key in ctx.options.get("quicksettings_list") or []:
        if key not in keys and key in ctx.options.data_labels:
            keys.append(key)
    return keys


def _refresh_button(elem_id: str) -> gr.Button:
    return gr.Button(REFRESH_SYMBOL, elem_id=elem_id, min_width=40, scale=0)


def build_quicksettings(ctx: "AppContext", page_load: PageLoadRefresh | None = None) -> None:
    """The row above the tabs. With `page_load`, a reloaded page shows the model, VAE and values
    of now (they may have changed through the API or another browser)."""
    with gr.Row(elem_id="quicksettings"):
        checkpoint = gr.Dropdown(ctx.checkpoints.titles(), value=_selected_title(ctx),
                                 label="Stable Diffusion checkpoint",
                                 elem_id="setting_sd_model_checkpoint", scale=4)
        refresh_checkpoints = _refresh_button("refresh_sd_model_checkpoint")
        vae = gr.Dropdown(ctx.vaes.names(), value=ctx.options.get("sd_vae"), label="SD VAE",
                          elem_id="setting_sd_vae", scale=2)
        refresh_vaes = _refresh_button("refresh_sd_vae")
        others = {key: option_component(key, ctx.options.info(key), ctx.options.get(key),
                                        option_choices(ctx, key, ctx.options.info(key)), scale=2)
                  for key in quicksettings_keys(ctx)[len(FIXED_QUICKSETTINGS):]}
    status = gr.HTML(_status_html(ctx), elem_id="quicksettings_status")
    if page_load is not None:
        page_load.add([checkpoint, vae, status, *others.values()], lambda: [
            gr.update(choices=ctx.checkpoints.titles(), value=_selected_title(ctx)),
            gr.update(choices=ctx.vaes.names(), value=ctx.options.get("sd_vae")),
            _status_html(ctx),
            *(shown_value(ctx.options.info(key), ctx.options.get(key)) for key in others)])

    def refreshed_checkpoints() -> tuple[Any, str]:
        ctx.checkpoints.refresh()
        return gr.update(choices=ctx.checkpoints.titles(), value=_selected_title(ctx)), \
            _status_html(ctx)

    def refreshed_vaes() -> Any:
        ctx.vaes.refresh()
        return gr.update(choices=ctx.vaes.names(), value=ctx.options.get("sd_vae"))

    def checkpoint_chosen(title: str | None) -> Iterator[str]:
        yield from change_checkpoint_with_status(ctx, title)

    checkpoint.input(checkpoint_chosen, inputs=[checkpoint], outputs=[status],
                     api_visibility="private")
    refresh_checkpoints.click(refreshed_checkpoints, outputs=[checkpoint, status],
                              api_visibility="private")
    vae.input(lambda name: change_vae(ctx, name), inputs=[vae], outputs=[status],
              api_visibility="private")
    refresh_vaes.click(refreshed_vaes, outputs=[vae], api_visibility="private")
    for key, component in others.items():
        component.input(lambda value, key=key: change_setting(ctx, key, value),
                        inputs=[component], outputs=[status], api_visibility="private")
