"""Tabs whose feature lands in a later issue: Train says so in one line."""
from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

if TYPE_CHECKING:
    from modules.app.context import AppContext

TRAIN_NOTICE = ("Train: textual inversion and hypernetwork training arrive with the training "
                "feature.")


def build_train_tab(ctx: "AppContext") -> None:
    gr.Markdown(TRAIN_NOTICE, elem_id="train_notice")
