"""Pieces shared by the Gradio tabs: the tab registry record, seed controls, the result panel
(gallery + generation info + error line) and waiting for a job with a progress bar."""
from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr

from modules.jobs.queue import Job

if TYPE_CHECKING:
    from modules.app.context import AppContext

RANDOM_SEED_SYMBOL = "\U0001f3b2"     # 🎲
REUSE_SEED_SYMBOL = "\u267b\ufe0f"     # ♻️
PROGRESS_POLL_SECONDS = 0.25


@dataclass
class UiTab:
    """One tab of the UI. `build(ctx)` creates its components inside the open gr.Tab."""
    tab_id: str
    label: str
    build: Callable[["AppContext"], None]


@dataclass
class SeedControls:
    seed: gr.Number
    random_button: gr.Button
    reuse_button: gr.Button


@dataclass
class ResultPanel:
    gallery: gr.Gallery
    generation_info: gr.Textbox   # hidden: Processed.js() of the last run (for "reuse seed")
    infotext_html: gr.HTML
    error_html: gr.HTML

    @property
    def outputs(self) -> list[Any]:
        return [self.gallery, self.generation_info, self.infotext_html, self.error_html]


def seed_controls(tab_id: str) -> SeedControls:
    with gr.Row():
        seed = gr.Number(label="Seed", value=-1, precision=0, elem_id=f"{tab_id}_seed", scale=4)
        random_button = gr.Button(RANDOM_SEED_SYMBOL, elem_id=f"{tab_id}_random_seed",
                                  min_width=40, scale=0)
        reuse_button = gr.Button(REUSE_SEED_SYMBOL, elem_id=f"{tab_id}_reuse_seed",
                                 min_width=40, scale=0)
    return SeedControls(seed, random_button, reuse_button)


def result_panel(tab_id: str) -> ResultPanel:
    gallery = gr.Gallery(label="Output", show_label=False, elem_id=f"{tab_id}_gallery",
                         columns=4, format="png", interactive=False)
    generation_info = gr.Textbox(visible=False, elem_id=f"generation_info_{tab_id}")
    infotext_html = gr.HTML(elem_id=f"html_info_{tab_id}")
    error_html = gr.HTML(elem_id=f"html_log_{tab_id}")
    return ResultPanel(gallery, generation_info, infotext_html, error_html)


def wire_seed_buttons(controls: SeedControls, generation_info: gr.Textbox) -> None:
    controls.random_button.click(fn=lambda: -1, inputs=[], outputs=[controls.seed],
                                 show_progress="hidden", api_visibility="private", queue=False)
    controls.reuse_button.click(fn=last_seed_from_info, inputs=[generation_info, controls.seed],
                                outputs=[controls.seed], show_progress="hidden",
                                api_visibility="private", queue=False)


def last_seed_from_info(generation_info: str, current_seed: float) -> int:
    """The seed of the last generation (A1111's ♻️), or the current value when there is none."""
    try:
        return int(json.loads(generation_info)["seed"])
    except (ValueError, TypeError, KeyError):
        return int(current_seed if current_seed is not None else -1)


def infotext_to_html(infotext: str) -> str:
    return f"<div class='infotext'><p>{html.escape(infotext).replace(chr(10), '<br>')}</p></div>"


def error_to_html(message: str) -> str:
    return f"<div class='error'>{html.escape(message)}</div>"


def wait_with_progress(job: Job, progress: gr.Progress | None) -> Any:
    """Wait for `job`, feeding Gradio's progress bar from the job's own progress."""
    while not job.finished:
        if progress is not None:
            position = job.queue_position()
            if position:
                progress(0.0, desc=f"In queue: {position}")
            else:
                progress(job.progress.progress_fraction(), desc="Generating")
        time.sleep(PROGRESS_POLL_SECONDS)
    return job.wait()
