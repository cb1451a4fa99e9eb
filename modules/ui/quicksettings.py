"""The row above the tabs: the checkpoint dropdown with its refresh button (A1111's quicksettings).
Choosing a checkpoint loads it on the job worker and stores it in config.json."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import gradio as gr

from modules.ui.common import error_to_html

if TYPE_CHECKING:
    from modules.app.context import AppContext

log = logging.getLogger(__name__)
REFRESH_SYMBOL = "\U0001f504"  # 🔄


def _selected_title(ctx: "AppContext") -> str | None:
    current = ctx.model_manager.current_checkpoint()
    if current is not None:
        return current.title
    wanted = ctx.options.get("sd_model_checkpoint")
    found = ctx.checkpoints.get_closest(wanted) if wanted else None
    titles = ctx.checkpoints.titles()
    return found.title if found else (titles[0] if titles else None)


def _status_html(ctx: "AppContext") -> str:
    if ctx.checkpoints.list():
        return ""
    return error_to_html(ctx.model_manager.no_checkpoint_message())


def change_checkpoint(ctx: "AppContext", title: str | None) -> str:
    """Load the chosen checkpoint; the returned HTML is the message shown under the dropdown."""
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


def build_quicksettings(ctx: "AppContext") -> None:
    with gr.Row(elem_id="quicksettings"):
        checkpoint = gr.Dropdown(ctx.checkpoints.titles(), value=_selected_title(ctx),
                                 label="Stable Diffusion checkpoint",
                                 elem_id="setting_sd_model_checkpoint", scale=4)
        refresh = gr.Button(REFRESH_SYMBOL, elem_id="refresh_sd_model_checkpoint", min_width=40,
                            scale=0)
    status = gr.HTML(_status_html(ctx), elem_id="quicksettings_status")

    def refreshed():
        ctx.checkpoints.refresh()
        return gr.update(choices=ctx.checkpoints.titles(), value=_selected_title(ctx)), \
            _status_html(ctx)

    checkpoint.input(lambda title: change_checkpoint(ctx, title), inputs=[checkpoint],
                     outputs=[status])
    refresh.click(refreshed, outputs=[checkpoint, status])
