"""The txt2img tab: prompts, sampler and scheduler, size, seed, batches; generation runs as a job
on the same queue the API uses."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr

from modules.engine.samplers import samplers_api_list
from modules.engine.schedules import schedulers_api_list
from modules.processing.params import GenerationParams, Processed
from modules.ui.common import error_to_html, infotext_to_html, result_panel, seed_controls, \
    wait_with_progress, wire_seed_buttons

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.processing.context import ProcessingContext

log = logging.getLogger(__name__)

Txt2ImgRunner = Callable[[GenerationParams, "ProcessingContext"], Processed]

UI_DEFAULT_SAMPLER = "DPM++ 2M"
UI_DEFAULT_SCHEDULER = "Automatic"


def ui_params(prompt: str, negative_prompt: str, sampler_name: str, scheduler: str, steps: float,
              cfg_scale: float, width: float, height: float, seed: float, batch_count: float,
              batch_size: float) -> GenerationParams:
    """The UI's values as a request. Gradio numbers arrive as floats."""
    return GenerationParams(
        prompt=prompt or "", negative_prompt=negative_prompt or "",
        sampler_name=sampler_name or UI_DEFAULT_SAMPLER, scheduler=scheduler or None,
        steps=int(steps), cfg_scale=float(cfg_scale), width=int(width), height=int(height),
        seed=int(seed if seed is not None else -1), n_iter=int(batch_count),
        batch_size=int(batch_size), is_api=False)


def generate_txt2img(ctx: "AppContext", runner: Txt2ImgRunner, params: GenerationParams,
                     progress: gr.Progress | None = None) -> tuple[list, str, str, str]:
    """Run one job; (images, info json, infotext html, error html). Errors are shown in the
    tab, never raised into Gradio, so the message (e.g. where to put a checkpoint) is readable."""
    job = ctx.jobs.submit(
        "txt2img", lambda job_progress: runner(params, ctx.processing_context(job_progress)))
    try:
        processed: Processed = wait_with_progress(job, progress)
    except Exception as error:  # noqa: BLE001 - shown to the user
        log.warning("txt2img failed: %s", error, exc_info=not isinstance(error, ValueError))
        return [], "", "", error_to_html(f"{type(error).__name__}: {error}")
    infotext = processed.infotexts[0] if processed.infotexts else ""
    return list(processed.images), processed.js(), infotext_to_html(infotext), ""


def build_txt2img_tab(ctx: "AppContext", runner: Txt2ImgRunner | None = None) -> None:
    """Components of the tab (inside an open gr.Tab)."""
    if runner is None:
        from modules.processing.txt2img import run_txt2img
        runner = run_txt2img
    sampler_names = [entry["name"] for entry in samplers_api_list()]
    scheduler_labels = [entry["label"] for entry in schedulers_api_list()]

    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="txt2img_prompt",
                                placeholder="Prompt (Ctrl+Enter to generate)")
            negative_prompt = gr.Textbox(label="Negative prompt", lines=2,
                                         elem_id="txt2img_neg_prompt")
        with gr.Column(scale=1, min_width=200):
            generate = gr.Button("Generate", variant="primary", elem_id="txt2img_generate")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id="txt2img_interrupt", min_width=60)
                skip = gr.Button("Skip", elem_id="txt2img_skip", min_width=60)

    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            with gr.Row():
                sampler = gr.Dropdown(sampler_names, value=UI_DEFAULT_SAMPLER,
                                      label="Sampling method", elem_id="txt2img_sampling")
                scheduler = gr.Dropdown(scheduler_labels, value=UI_DEFAULT_SCHEDULER,
                                        label="Schedule type", elem_id="txt2img_scheduler")
            steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps",
                              elem_id="txt2img_steps")
            with gr.Row():
                width = gr.Slider(64, 2048, value=512, step=8, label="Width",
                                  elem_id="txt2img_width")
                height = gr.Slider(64, 2048, value=512, step=8, label="Height",
                                   elem_id="txt2img_height")
            with gr.Row():
                batch_count = gr.Slider(1, 100, value=1, step=1, label="Batch count",
                                        elem_id="txt2img_batch_count")
                batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size",
                                       elem_id="txt2img_batch_size")
            cfg_scale = gr.Slider(1.0, 30.0, value=7.0, step=0.5, label="CFG Scale",
                                  elem_id="txt2img_cfg_scale")
            seeds = seed_controls("txt2img")
        with gr.Column(scale=1):
            results = result_panel("txt2img")

    def on_generate(prompt_text, negative_text, sampler_name, scheduler_label, steps_value,
                    cfg_value, width_value, height_value, seed_value, count_value, size_value,
                    progress=gr.Progress()) -> tuple[Any, ...]:
        params = ui_params(prompt_text, negative_text, sampler_name, scheduler_label, steps_value,
                           cfg_value, width_value, height_value, seed_value, count_value,
                           size_value)
        return generate_txt2img(ctx, runner, params, progress)

    inputs = [prompt, negative_prompt, sampler, scheduler, steps, cfg_scale, width, height,
              seeds.seed, batch_count, batch_size]
    # the job queue serialises generation; Gradio's own concurrency limit must not hold
    # requests back before they are queued (their place shows in the progress bar)
    generate.click(fn=on_generate, inputs=inputs, outputs=results.outputs, api_name="txt2img",
                   concurrency_limit=None)
    prompt.submit(fn=on_generate, inputs=inputs, outputs=results.outputs,
                  api_visibility="private", concurrency_limit=None)
    interrupt.click(fn=lambda: ctx.jobs.interrupt_current() and None, inputs=[], outputs=[],
                    show_progress="hidden", api_visibility="private", queue=False)
    skip.click(fn=lambda: ctx.jobs.skip_current() and None, inputs=[], outputs=[],
               show_progress="hidden", api_visibility="private", queue=False)
    wire_seed_buttons(seeds, results.generation_info)
