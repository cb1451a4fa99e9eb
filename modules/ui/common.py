"""Pieces shared by the Gradio tabs: the tab registry record, the prompt / sampler / size / seed /
refiner rows, the result panel (gallery + generation info + error line + progress) and running a
job while streaming its progress."""
from __future__ import annotations

import html
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import gradio as gr

from modules.engine.samplers import samplers_api_list
from modules.engine.schedules import schedulers_api_list
from modules.jobs.queue import Job, QueueFullError
from modules.processing.admission import AdmissionError
from modules.processing.memory_guard import InsufficientMemoryError
from modules.ui.prompt_tools import APPLY_STYLE_SYMBOL, CLEAR_PROMPT_SYMBOL, PASTE_SYMBOL, \
    StylesControls, styles_dropdown, styles_editor, token_counter_html
from modules.ui.remote_jobs import generate_remote, interrupt_remote, remote_service, skip_remote
from modules.ui.progress import PROGRESS_POLL_SECONDS, ProgressView, finished_outputs, interrupt_job, progress_view, \
    skip_job, stream_job_progress, wait_for_result

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.jobs.progress import JobProgress
    from modules.processing.params import Processed, ProcessingParams

RANDOM_SEED_SYMBOL = "\U0001f3b2"     # 🎲
REUSE_SEED_SYMBOL = "\u267b\ufe0f"     # ♻️
UI_DEFAULT_SAMPLER = "DPM++ 2M"
UI_DEFAULT_SCHEDULER = "Automatic"
NO_REFINER = "None"


#: `<html data-stored-values-shown="1">` once PageLoadRefresh has set the controls
PAGE_LOADED_FLAG = "storedValuesShown"


@dataclass
class PageLoadRefresh:
    """Controls whose values are read again from the server each time a page (re)loads, so a
    reloaded page shows what is stored now. All of them come back in one request: a callable
    `value=` per control would make Gradio queue one event per control on every page load."""
    readers: list[tuple[Callable[[], Sequence[Any]], list[Any]]] = field(default_factory=list)

    def add(self, outputs: Sequence[Any], read: Callable[[], Sequence[Any]]) -> None:
        """`read()` returns one value (or gr.update) per output, in order."""
        self.readers.append((read, list(outputs)))

    def wire(self, blocks: gr.Blocks) -> None:
        """Call inside `blocks`, after every tab is built."""
        if not self.readers:
            return
        outputs = [component for _, components in self.readers for component in components]

        def read_all() -> list[Any]:
            return [value for read, _ in self.readers for value in read()]
        # the page is marked once the values are in, so scripts (and tests) know that what the
        # controls show is no longer the build-time value
        blocks.load(read_all, outputs=outputs, queue=False, show_progress="hidden",
                    api_visibility="private").then(
            fn=None, js=f"() => {{ document.documentElement.dataset.{PAGE_LOADED_FLAG} = '1'; }}",
            queue=False, show_progress="hidden", api_visibility="private")


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
    progress: ProgressView

    @property
    def outputs(self) -> list[Any]:
        """The result outputs (what a finished job fills)."""
        return [self.gallery, self.generation_info, self.infotext_html, self.error_html]

    @property
    def all_outputs(self) -> list[Any]:
        """Result outputs followed by the progress outputs: what a generate generator yields."""
        return self.outputs + self.progress.outputs


RESULT_OUTPUT_COUNT = 4


@dataclass
class PromptControls:
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    token_counter: gr.HTML | None = None
    negative_token_counter: gr.HTML | None = None
    paste: gr.Button | None = None             # ↙️ read generation parameters
    clear_prompt: gr.Button | None = None
    styles: StylesControls | None = None
    dropped_image: gr.File | None = None       # hidden: an image dropped on a prompt box


@dataclass
class SamplingControls:
    sampler: gr.Dropdown
    scheduler: gr.Dropdown
    steps: gr.Slider


@dataclass
class SizeBatchControls:
    width: gr.Slider
    height: gr.Slider
    batch_count: gr.Slider
    batch_size: gr.Slider
    cfg_scale: gr.Slider


@dataclass
class RefinerControls:
    enable: gr.Checkbox
    checkpoint: gr.Dropdown
    switch_at: gr.Slider


def seed_controls(tab_id: str) -> SeedControls:
    with gr.Row():
        seed = gr.Number(label="Seed", value=-1, precision=0, elem_id=f"{tab_id}_seed", scale=4)
        random_button = gr.Button(RANDOM_SEED_SYMBOL, elem_id=f"{tab_id}_random_seed",
                                  min_width=40, scale=0)
        reuse_button = gr.Button(REUSE_SEED_SYMBOL, elem_id=f"{tab_id}_reuse_seed",
                                 min_width=40, scale=0)
    return SeedControls(seed, random_button, reuse_button)


def prompt_row(tab_id: str, style_names: Sequence[str] = ()) -> PromptControls:
    """Prompt and negative prompt (each with its token counter) beside Generate / Interrupt /
    Skip, the tool buttons (↙️ read generation parameters, 🗑️ clear, ✍️ apply styles), the
    styles dropdown, and the styles editor below. prompt_tools.wire_prompt_tools wires them."""
    with gr.Row(equal_height=False, elem_id=f"{tab_id}_toprow"):
        with gr.Column(scale=3, elem_id=f"{tab_id}_prompt_container"):
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id=f"{tab_id}_prompt",
                                elem_classes=["prompt"],
                                placeholder="Prompt (Ctrl+Enter to generate)")
            token_counter = gr.HTML(token_counter_html(0, 75), elem_id=f"{tab_id}_token_counter",
                                    elem_classes=["token-counter"])
            negative_prompt = gr.Textbox(label="Negative prompt", lines=2,
                                         elem_id=f"{tab_id}_neg_prompt", elem_classes=["prompt"])
            negative_token_counter = gr.HTML(token_counter_html(0, 75),
                                             elem_id=f"{tab_id}_negative_token_counter",
                                             elem_classes=["token-counter"])
            # rendered but hidden (CSS): javascript/drop-image.js hands it an image dropped on
            # a prompt box; its upload reads the image's parameters into the tab
            dropped_image = gr.File(file_types=["image"], type="filepath", show_label=False,
                                    elem_id=f"{tab_id}_prompt_image",
                                    elem_classes=["drop-target-hidden"])
        with gr.Column(scale=1, min_width=200):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{tab_id}_generate")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id=f"{tab_id}_interrupt", min_width=60)
                skip = gr.Button("Skip", elem_id=f"{tab_id}_skip", min_width=60)
            with gr.Row(elem_id=f"{tab_id}_tools"):
                paste = gr.Button(PASTE_SYMBOL, elem_id=f"{tab_id}_paste",
                                  elem_classes=["tool", "paste"], min_width=40)
                clear_prompt = gr.Button(CLEAR_PROMPT_SYMBOL, elem_id=f"{tab_id}_clear_prompt",
                                         elem_classes=["tool"], min_width=40)
                apply_styles = gr.Button(APPLY_STYLE_SYMBOL, elem_id=f"{tab_id}_style_apply",
                                         elem_classes=["tool"], min_width=40)
            selected_styles = styles_dropdown(tab_id, style_names)
    styles = styles_editor(tab_id, style_names, selected_styles, apply_styles)
    return PromptControls(prompt, negative_prompt, generate, interrupt, skip, token_counter,
                          negative_token_counter, paste, clear_prompt, styles, dropped_image)


def sampling_controls(tab_id: str) -> SamplingControls:
    sampler_names = [entry["name"] for entry in samplers_api_list()]
    scheduler_labels = [entry["label"] for entry in schedulers_api_list()]
    with gr.Row():
        sampler = gr.Dropdown(sampler_names, value=UI_DEFAULT_SAMPLER, label="Sampling method",
                              elem_id=f"{tab_id}_sampling")
        scheduler = gr.Dropdown(scheduler_labels, value=UI_DEFAULT_SCHEDULER,
                                label="Schedule type", elem_id=f"{tab_id}_scheduler")
    steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{tab_id}_steps")
    return SamplingControls(sampler, scheduler, steps)


def dimension_controls(tab_id: str) -> tuple[gr.Slider, gr.Slider]:
    with gr.Row():
        width = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id=f"{tab_id}_width")
        height = gr.Slider(64, 2048, value=512, step=8, label="Height",
                           elem_id=f"{tab_id}_height")
    return width, height


def batch_controls(tab_id: str) -> tuple[gr.Slider, gr.Slider]:
    with gr.Row():
        batch_count = gr.Slider(1, 100, value=1, step=1, label="Batch count",
                                elem_id=f"{tab_id}_batch_count")
        batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size",
                               elem_id=f"{tab_id}_batch_size")
    return batch_count, batch_size


def cfg_control(tab_id: str) -> gr.Slider:
    return gr.Slider(1.0, 30.0, value=7.0, step=0.5, label="CFG Scale",
                     elem_id=f"{tab_id}_cfg_scale")


def refiner_controls(tab_id: str, checkpoint_titles: list[str]) -> RefinerControls:
    """A1111's "Refiner" accordion: a second checkpoint that takes over at a fraction of the steps."""
    with gr.Accordion("Refiner", open=False, elem_id=f"{tab_id}_refiner"):
        enable = gr.Checkbox(False, label="Enable refiner", elem_id=f"{tab_id}_enable_refiner")
        with gr.Row():
            checkpoint = gr.Dropdown([NO_REFINER, *checkpoint_titles], value=NO_REFINER,
                                     label="Checkpoint", elem_id=f"{tab_id}_refiner_checkpoint")
            switch_at = gr.Slider(0.01, 1.0, value=0.8, step=0.01, label="Switch at",
                                  elem_id=f"{tab_id}_refiner_switch_at")
    return RefinerControls(enable, checkpoint, switch_at)


def refiner_fields(enabled: bool, checkpoint: str | None, switch_at: float) -> dict[str, Any]:
    """The request fields of the refiner accordion (nothing when off or no checkpoint chosen)."""
    if not enabled or not checkpoint or checkpoint == NO_REFINER:
        return {"refiner_checkpoint": None, "refiner_switch_at": None}
    return {"refiner_checkpoint": checkpoint, "refiner_switch_at": float(switch_at)}


def result_panel(tab_id: str) -> ResultPanel:
    progress = progress_view(tab_id)
    gallery = gr.Gallery(label="Output", show_label=False, elem_id=f"{tab_id}_gallery",
                         columns=4, format="png", interactive=False)
    generation_info = gr.Textbox(visible=False, elem_id=f"generation_info_{tab_id}")
    infotext_html = gr.HTML(elem_id=f"html_info_{tab_id}")
    error_html = gr.HTML(elem_id=f"html_log_{tab_id}")
    return ResultPanel(gallery, generation_info, infotext_html, error_html, progress)


def wire_stop_buttons(ctx: "AppContext", controls: PromptControls, view: ProgressView) -> None:
    """Interrupt / Skip act on the job this tab started (its id is in the hidden textbox)."""
    def acting_on(remote: Callable[[Any, str], bool],
                  local: Callable[[Any, str | None], bool]) -> Callable[[str | None], None]:
        """The tab's job through the remote queue when it went there, else on this process."""
        def act(task_id: str | None) -> None:
            service = remote_service(ctx)
            if service is not None and task_id and service.view(task_id) is not None:
                remote(service, task_id)
            else:
                local(ctx.jobs, task_id)
        return act

    interrupt = acting_on(interrupt_remote, interrupt_job)
    skip = acting_on(skip_remote, skip_job)

    controls.interrupt.click(fn=interrupt,
                             inputs=[view.task_id], outputs=[], show_progress="hidden",
                             api_visibility="private", queue=False)
    controls.skip.click(fn=skip,
                        inputs=[view.task_id], outputs=[], show_progress="hidden",
                        api_visibility="private", queue=False)


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


def processed_outputs(processed: "Processed") -> tuple[list, str, str, str]:
    """A finished job's result outputs: (images, info json, infotext html, error html)."""
    infotext = processed.infotexts[0] if processed.infotexts else ""
    comments = getattr(processed, "comments", "")
    # why a job stopped early (the server's time limit), above the parameters as A1111 does
    shown = (f"<p class='comments'>{html.escape(comments)}</p>" if comments else "") + \
        infotext_to_html(infotext)
    return list(processed.images), processed.js(), shown, ""


def error_outputs(error: BaseException | str) -> tuple[list, str, str, str]:
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return [], "", "", error_to_html(message)


def generate_in_job(ctx: "AppContext", kind: str, work: Callable[["JobProgress"], "Processed"],
                    *, poll_seconds: float = PROGRESS_POLL_SECONDS,
                    on_error: Callable[[BaseException], None] | None = None,
                    admit: Callable[[], None] | None = None,
                    remote_params: "ProcessingParams | None" = None,
                    ) -> Iterator[tuple[Any, ...]]:
    """Submit `work` to the job queue and yield ResultPanel.all_outputs updates: progress while
    it runs, then the images (or the error, shown in the tab instead of raised into Gradio).
    `admit()` runs first: a request above a server limit, one that cannot fit in memory, or a
    full queue is shown as a message and nothing is queued. With a remote queue (--queue),
    `remote_params` go to the workers instead of `work` running here."""
    if remote_params is not None and remote_service(ctx) is not None:
        yield from _generate_remotely(ctx, kind, remote_params, admit, on_error, poll_seconds)
        return
    try:
        if admit is not None:
            admit()
        job = ctx.jobs.submit(kind, work)
    except REFUSALS as error:
        log.info("%s refused: %s", kind, error)
        yield error_outputs(str(error)) + ("", "", None)
        return
    yield from stream_job_progress(job, RESULT_OUTPUT_COUNT, poll_seconds=poll_seconds)
    processed, error = wait_for_result(job)
    if error is not None:
        if on_error is not None:
            on_error(error)
        yield error_outputs(error) + finished_outputs(job.id)
    else:
        yield processed_outputs(processed) + finished_outputs(job.id)


def _generate_remotely(ctx: "AppContext", kind: str, params: "ProcessingParams",
                       admit: Callable[[], None] | None,
                       on_error: Callable[[BaseException], None] | None,
                       poll_seconds: float) -> Iterator[tuple[Any, ...]]:
    try:
        if admit is not None:
            admit()
        yield from generate_remote(ctx, kind, params, result_count=RESULT_OUTPUT_COUNT,
                                   infotext_html=infotext_to_html, error_html=error_to_html,
                                   poll_seconds=poll_seconds)
    except REFUSALS as error:
        log.info("%s refused: %s", kind, error)
        yield error_outputs(str(error)) + ("", "", None)
    except Exception as error:  # noqa: BLE001 - shown in the tab, never raised into Gradio
        if on_error is not None:
            on_error(error)
        detail = getattr(error, "detail", None)
        yield error_outputs(str(detail) if detail else error) + ("", "", None)


#: what refuses a request before it is queued (shown as the message, without the class name)
REFUSALS = (AdmissionError, InsufficientMemoryError, QueueFullError)


def wait_with_progress(job: Job, progress: gr.Progress | None, *,
                       description: str = "Generating") -> Any:
    """Wait for `job`, feeding Gradio's progress bar from the job's own progress."""
    while not job.finished:
        if progress is not None:
            position = job.queue_position()
            if position:
                progress(0.0, desc=f"In queue: {position}")
            else:
                progress(job.progress.progress_fraction(), desc=description)
        time.sleep(PROGRESS_POLL_SECONDS)
    return job.wait()


def wire_generation(ctx: "AppContext", prompts: Any, results: ResultPanel, seeds: SeedControls,
                    fn: Callable[..., Any], inputs: list[Any], *, api_name: str) -> None:
    """Generate (button or Enter in the prompt) runs `fn`, a generator of result updates;
    Interrupt, Skip and the seed buttons act on the tab's job. The job queue serialises
    generation, so Gradio's own concurrency limit must not hold requests back before they are
    queued (their place shows in the progress bar)."""
    event = dict(fn=fn, inputs=inputs, outputs=results.all_outputs, concurrency_limit=None,
                 show_progress="hidden")
    prompts.generate.click(api_name=api_name, **event)
    prompts.prompt.submit(api_visibility="private", **event)
    wire_stop_buttons(ctx, prompts, results.progress)
    wire_seed_buttons(seeds, results.generation_info)
