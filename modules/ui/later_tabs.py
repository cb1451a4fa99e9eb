"""Tabs whose feature lands in a later issue: Checkpoint Merger and Train say so in one line."""
from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

if TYPE_CHECKING:
    from modules.app.context import AppContext

CHECKPOINT_MERGER_NOTICE = ("Checkpoint Merger: merging checkpoints (weighted sum, add difference) "
                            "arrives with the model-merging feature.")
TRAIN_NOTICE = ("Train: textual inversion and hypernetwork training arrive with the training "
                "feature.")


def build_checkpoint_merger_tab(ctx: "AppContext") -> None:
    gr.Markdown(CHECKPOINT_MERGER_NOTICE, elem_id="modelmerger_notice")


def build_train_tab(ctx: "AppContext") -> None:
    gr.Markdown(TRAIN_NOTICE, elem_id="train_notice")
