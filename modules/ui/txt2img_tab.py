"""The txt2img tab: prompts, sampler and scheduler, size, seed, batches, the "Hires. fix" and
"Refiner" accordions; generation runs as a job on the same queue the API uses, with a progress
bar and live preview while it runs."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr

from modules.engine.samplers import samplers_api_list
from modules.engine.schedules import schedulers_api_list
from modules.processing.upscalers import hires_upscaler_choices
from modules.processing.params import GenerationParams, Processed
from modules.ui.common import UI_DEFAULT_SAMPLER, SizeBatchControls, batch_controls, \
    cfg_control, dimension_controls, error_to_html, generate_in_job, infotext_to_html, \
    prompt_row, refiner_controls, refiner_fields, result_panel, sampling_controls, \
    seed_controls, wait_with_progress, wire_generation
from modules.ui.extra_networks_panel import extra_networks_panel
from modules.ui.gallery_tools import gallery_tools
from modules.ui.script_controls import ScriptControls, build_script_controls
from modules.ui.section_order import build_sections_in_order
from modules.ui.prompt_tools import wire_prompt_tools

if TYPE_CHECKING:
    from modules.ui.send_to import SendToRegistry
    from modules.app.context import AppContext
    from modules.processing.context import ProcessingContext

log = logging.getLogger(__name__)

Txt2ImgRunner = Callable[[GenerationParams, "ProcessingContext"], Processed]

SAME_CHECKPOINT = "Use same checkpoint"
SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULER = "Use same scheduler"
DEFAULT_HIRES_UPSCALER = "Latent"

# the UI's component names, in the order of the generate function's inputs
TXT2IMG_INPUT_NAMES = (
    "prompt", "negative_prompt", "sampler_name", "scheduler", "steps", "cfg_scale", "width",
    "height", "seed", "batch_count", "batch_size",
    "enable_hr", "hr_upscaler", "hr_second_pass_steps", "denoising_strength", "hr_scale",
    "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler",
    "hr_prompt", "hr_negative_prompt",
    "enable_refiner", "refiner_checkpoint", "refiner_switch_at",
    "styles",
)


def hires_upscaler_names(ctx: "AppContext | None" = None) -> list[str]:
    """Choices of the hires upscaler dropdown: the latent modes first, then the image upscalers."""
    return hires_upscaler_choices(ctx.upscalers if ctx is not None else None)


def ui_params(prompt: str, negative_prompt: str, sampler_name: str, scheduler: str, steps: float,
              cfg_scale: float, width: float, height: float, seed: float, batch_count: float,
              batch_size: float, **extra_fields: Any) -> GenerationParams:
    """The UI's values as a request. Gradio numbers arrive as floats. `extra_fields` are further
    GenerationParams fields (hires_fields(), refiner_fields())."""
    return GenerationParams(
        prompt=prompt or "", negative_prompt=negative_prompt or "",
        sampler_name=sampler_name or UI_DEFAULT_SAMPLER, scheduler=scheduler or None,
        steps=int(steps), cfg_scale=float(cfg_scale), width=int(width), height=int(height),
        seed=int(seed if seed is not None else -1), n_iter=int(batch_count),
        batch_size=int(batch_size), is_api=False, **extra_fields)


def hires_fields(enable_hr: bool, hr_upscaler: str | None, hr_second_pass_steps: float,
                 denoising_strength: float, hr_scale: float, hr_resize_x: float,
                 hr_resize_y: float, hr_checkpoint_name: str | None, hr_sampler_name: str | None,
                 hr_scheduler: str | None, hr_prompt: str, hr_negative_prompt: str,
                 ) -> dict[str, Any]:
    """The "Hires. fix" accordion as GenerationParams fields; "Use same …" choices become None."""
    def chosen(value: str | None, same: str) -> str | None:
        return None if not value or value == same else value

    return {
        "enable_hr": bool(enable_hr), "hr_upscaler": hr_upscaler or DEFAULT_HIRES_UPSCALER,
        "hr_second_pass_steps": int(hr_second_pass_steps or 0),
        "denoising_strength": float(denoising_strength), "hr_scale": float(hr_scale),
        "hr_resize_x": int(hr_resize_x or 0), "hr_resize_y": int(hr_resize_y or 0),
        "hr_checkpoint_name": chosen(hr_checkpoint_name, SAME_CHECKPOINT),
        "hr_sampler_name": chosen(hr_sampler_name, SAME_SAMPLER),
        "hr_scheduler": chosen(hr_scheduler, SAME_SCHEDULER),
        "hr_prompt": hr_prompt or "", "hr_negative_prompt": hr_negative_prompt or "",
    }


def params_from_ui(values: dict[str, Any]) -> GenerationParams:
    """All txt2img controls (keyed by TXT2IMG_INPUT_NAMES) → one request."""
    hires = hires_fields(*(values[name] for name in TXT2IMG_INPUT_NAMES[11:23]))
    refiner = refiner_fields(values["enable_refiner"], values["refiner_checkpoint"],
                             values["refiner_switch_at"])
    return ui_params(*(values[name] for name in TXT2IMG_INPUT_NAMES[:11]), **hires, **refiner,
                     styles=list(values.get("styles") or []))


def generate_txt2img(ctx: "AppContext", runner: Txt2ImgRunner, params: GenerationParams,
                     progress: gr.Progress | None = None) -> tuple[list, str, str, str]:
    """Run one job and wait; (images, info json, infotext html, error html). Errors are shown
    in the tab, never raised into Gradio, so the message (e.g. where to put a checkpoint) is
    readable."""
    try:
        ctx.admit_generation(params)
        job = ctx.jobs.submit(
            "txt2img", lambda job_progress: runner(params, ctx.processing_context(job_progress)))
        processed: Processed = wait_with_progress(job, progress)
    except Exception as error:  # noqa: BLE001 - shown to the user
        log.warning("txt2img failed: %s", error, exc_info=not isinstance(error, ValueError))
        return [], "", "", error_to_html(f"{type(error).__name__}: {error}")
    infotext = processed.infotexts[0] if processed.infotexts else ""
    return list(processed.images), processed.js(), infotext_to_html(infotext), ""


def generate_txt2img_live(ctx: "AppContext", runner: Txt2ImgRunner, params: GenerationParams,
                          *, poll_seconds: float | None = None) -> Iterator[tuple[Any, ...]]:
    """The tab's Generate: yields ResultPanel.all_outputs (progress and live preview while the
    job runs, then the images or the error)."""
    extra = {} if poll_seconds is None else {"poll_seconds": poll_seconds}
    yield from generate_in_job(
        ctx, "txt2img", lambda job_progress: runner(params, ctx.processing_context(job_progress)),
        on_error=lambda error: log.warning("txt2img failed: %s", error,
                                           exc_info=not isinstance(error, ValueError)),
        admit=lambda: ctx.admit_generation(params), remote_params=params, **extra)


def _hires_accordion(ctx: "AppContext") -> dict[str, Any]:
    sampler_names = [entry["name"] for entry in samplers_api_list()]
    scheduler_labels = [entry["label"] for entry in schedulers_api_list()]
    upscalers = hires_upscaler_names(ctx)
    titles = ctx.checkpoints.titles()
    with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hr"):
        controls: dict[str, Any] = {
            "enable_hr": gr.Checkbox(False, label="Enable hires. fix", elem_id="txt2img_enable_hr")}
        with gr.Row():
            controls["hr_upscaler"] = gr.Dropdown(
                upscalers, value=DEFAULT_HIRES_UPSCALER if DEFAULT_HIRES_UPSCALER in upscalers
                else upscalers[0], label="Upscaler", elem_id="txt2img_hr_upscaler")
            controls["hr_second_pass_steps"] = gr.Slider(
                0, 150, value=0, step=1, label="Hires steps", elem_id="txt2img_hires_steps")
            controls["denoising_strength"] = gr.Slider(
                0.0, 1.0, value=0.7, step=0.01, label="Denoising strength",
                elem_id="txt2img_denoising_strength")
        with gr.Row():
            controls["hr_scale"] = gr.Slider(1.0, 4.0, value=2.0, step=0.05, label="Upscale by",
                                             elem_id="txt2img_hr_scale")
            controls["hr_resize_x"] = gr.Slider(0, 2048, value=0, step=8,
                                                label="Resize width to",
                                                elem_id="txt2img_hr_resize_x")
            controls["hr_resize_y"] = gr.Slider(0, 2048, value=0, step=8,
                                                label="Resize height to",
                                                elem_id="txt2img_hr_resize_y")
        with gr.Row():
            controls["hr_checkpoint_name"] = gr.Dropdown(
                [SAME_CHECKPOINT, *titles], value=SAME_CHECKPOINT, label="Hires checkpoint",
                elem_id="hr_checkpoint")
            controls["hr_sampler_name"] = gr.Dropdown(
                [SAME_SAMPLER, *sampler_names], value=SAME_SAMPLER, label="Hires sampling method",
                elem_id="hr_sampler")
            controls["hr_scheduler"] = gr.Dropdown(
                [SAME_SCHEDULER, *scheduler_labels], value=SAME_SCHEDULER,
                label="Hires schedule type", elem_id="hr_scheduler")
        with gr.Row():
            controls["hr_prompt"] = gr.Textbox(label="Hires prompt", lines=2,
                                               placeholder="Leave empty to use the same prompt",
                                               elem_id="hires_prompt")
            controls["hr_negative_prompt"] = gr.Textbox(
                label="Hires negative prompt", lines=2,
                placeholder="Leave empty to use the same negative prompt", elem_id="hires_neg_prompt")
    return controls


def build_txt2img_tab(ctx: "AppContext", runner: Txt2ImgRunner | None = None,
                      send_to: "SendToRegistry | None" = None) -> None:
    """Components of the tab (inside an open gr.Tab); `send_to` gets the gallery's "Send to"
    buttons."""
    if runner is None:
        from modules.processing.txt2img import run_txt2img
        runner = run_txt2img

    prompts = prompt_row("txt2img", ctx.styles.names())
    extra_networks_panel(ctx, "txt2img", prompts.prompt, prompts.negative_prompt)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            sections = build_sections_in_order(ctx.options.get("ui_reorder_list"), {
                "sampler": lambda: sampling_controls("txt2img"),
                "dimensions": lambda: dimension_controls("txt2img"),
                "cfg": lambda: cfg_control("txt2img"),
                "seed": lambda: seed_controls("txt2img"),
                "batch": lambda: batch_controls("txt2img"),
                "accordions": lambda: (_hires_accordion(ctx),
                                       refiner_controls("txt2img", ctx.checkpoints.titles())),
                "scripts": lambda: build_script_controls(ctx.scripts.txt2img),
            })
            scripts: ScriptControls = sections["scripts"]
            sampling, seeds = sections["sampler"], sections["seed"]
            sizes = SizeBatchControls(*sections["dimensions"], *sections["batch"],
                                      sections["cfg"])
            hires, refiner = sections["accordions"]
        with gr.Column(scale=1):
            results = result_panel("txt2img")
            gallery_tools(ctx, "txt2img", results, send_to)

    components = {
        "prompt": prompts.prompt, "negative_prompt": prompts.negative_prompt,
        "sampler_name": sampling.sampler, "scheduler": sampling.scheduler,
        "steps": sampling.steps, "cfg_scale": sizes.cfg_scale, "width": sizes.width,
        "height": sizes.height, "seed": seeds.seed, "batch_count": sizes.batch_count,
        "batch_size": sizes.batch_size, **hires, "enable_refiner": refiner.enable,
        "refiner_checkpoint": refiner.checkpoint, "refiner_switch_at": refiner.switch_at,
        "styles": prompts.styles.selected,
    }
    inputs = [components[name] for name in TXT2IMG_INPUT_NAMES] + scripts.inputs
    wire_prompt_tools(ctx, prompts, components, sampling.steps, scripts.paste_fields)

    def on_generate(*values: Any) -> Iterator[tuple[Any, ...]]:
        count = len(TXT2IMG_INPUT_NAMES)
        params = params_from_ui(dict(zip(TXT2IMG_INPUT_NAMES, values[:count])))
        params.script_args = scripts.script_args(values[count:])
        yield from generate_txt2img_live(ctx, runner, params)

    wire_generation(ctx, prompts, results, seeds, on_generate, inputs, api_name="txt2img")
