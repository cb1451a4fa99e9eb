"""The img2img tab with A1111's input sub-tabs (img2img, sketch, inpaint, inpaint sketch, inpaint
upload, batch from a folder), the resize / mask / denoising controls and the shared prompt,
sampler, size, seed and refiner rows. Generation runs as a job on the same queue as the API."""
from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr
from PIL import Image, ImageOps

from modules.processing.admission import check_input_image
from modules.processing.masks import create_binary_mask
from modules.processing.params import Img2ImgParams, Processed
from modules.processing.sketch import inpaint_sketch_inputs, strokes_mask
from modules.ui.common import (
    UI_DEFAULT_SAMPLER,
    SizeBatchControls,
    batch_controls,
    cfg_control,
    dimension_controls,
    error_outputs,
    generate_in_job,
    prompt_row,
    refiner_controls,
    refiner_fields,
    result_panel,
    sampling_controls,
    seed_controls,
    wire_generation,
)
from modules.ui.extra_networks_panel import extra_networks_panel
from modules.ui.gallery_tools import gallery_tools
from modules.ui.interrogate_buttons import build_interrogate_buttons
from modules.ui.prompt_tools import wire_prompt_tools
from modules.ui.script_controls import ScriptControls, build_script_controls
from modules.ui.section_order import build_sections_in_order

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.jobs.progress import JobProgress
    from modules.processing.context import ProcessingContext
    from modules.ui.send_to import SendToRegistry

log = logging.getLogger(__name__)

Img2ImgRunner = Callable[[Img2ImgParams, "ProcessingContext"], Processed]

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill",
                "Just resize (latent upscale)")
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
INPAINT_AREAS = ("Whole picture", "Only masked")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")

# the UI's component names, in the order of the generate function's inputs
IMG2IMG_INPUT_NAMES = (
    "mode", "init_img", "sketch", "init_img_with_mask", "inpaint_color_sketch",
    "init_img_inpaint", "init_mask_inpaint", "batch_input_dir", "batch_output_dir",
    "batch_mask_dir",
    "prompt", "negative_prompt", "sampler_name", "scheduler", "steps", "cfg_scale",
    "image_cfg_scale", "denoising_strength", "width", "height", "seed", "batch_count",
    "batch_size", "resize_mode", "mask_blur", "mask_alpha", "inpainting_mask_invert",
    "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding",
    "enable_refiner", "refiner_checkpoint", "refiner_switch_at",
    "styles",
)

# the inputs holding images or the selected sub-tab (never set from an infotext)
IMAGE_INPUT_NAMES = frozenset(IMG2IMG_INPUT_NAMES[:10])

# A1111's img2img modes (the index of the selected input sub-tab)
IMG2IMG, SKETCH, INPAINT, INPAINT_SKETCH, INPAINT_UPLOAD, BATCH = range(6)
MODE_LABELS = ("img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch")
INPAINT_MODES = (INPAINT, INPAINT_SKETCH, INPAINT_UPLOAD)


# -- the sub-tabs' values → init image and mask -------------------------------------------------
def editor_parts(value: Any) -> tuple[Image.Image | None, list[Image.Image], Image.Image | None]:
    """(background, layers, composite) of a gr.ImageEditor value (type="pil")."""
    if value is None:
        return None, [], None
    if isinstance(value, Image.Image):
        return value, [], value
    layers = [layer for layer in (value.get("layers") or []) if layer is not None]
    return value.get("background"), layers, value.get("composite")


def brush_mask(layers: list[Image.Image], size: tuple[int, int]) -> Image.Image | None:
    """White where any brush layer was painted (binarised as A1111 does), as "L"; None when
    nothing was painted."""
    mask = create_binary_mask(strokes_mask(layers, size), round_mask=True)
    return mask if mask.getbbox() is not None else None


def init_image_and_mask(mode: int, values: dict[str, Any],
                        ) -> tuple[Image.Image, Image.Image | None]:
    """The init image and mask of the selected sub-tab, composited as A1111 does.
    ValueError with a message for the user when an input is missing."""
    mask: Image.Image | None = None
    if mode == IMG2IMG:
        image = values.get("init_img")
    elif mode == SKETCH:
        background, _, composite = editor_parts(values.get("sketch"))
        image = composite if composite is not None else background
    elif mode == INPAINT:
        background, layers, _ = editor_parts(values.get("init_img_with_mask"))
        image = background
        if image is not None:
            mask = brush_mask(layers, image.size)
            if mask is None:
                raise ValueError("Draw a mask over the image: nothing is painted to inpaint")
    elif mode == INPAINT_SKETCH:
        background, _, composite = editor_parts(values.get("inpaint_color_sketch"))
        image = None
        if background is not None and composite is not None:
            inputs = inpaint_sketch_inputs(
                composite, background, mask_alpha=float(values.get("mask_alpha") or 0),
                mask_blur=int(values.get("mask_blur") or 0))
            image, mask = inputs.init_image, inputs.mask
    elif mode == INPAINT_UPLOAD:
        image, mask = values.get("init_img_inpaint"), values.get("init_mask_inpaint")
        if image is not None and mask is None:
            raise ValueError("Upload a mask for inpainting (white = repaint)")
    else:
        raise ValueError(f"Unknown img2img mode {mode}")
    if image is None:
        raise ValueError(f"No init image: put an image into the '{MODE_LABELS[mode]}' tab")
    image = ImageOps.exif_transpose(image)
    return image, (ImageOps.exif_transpose(mask) if mask is not None else None)


def _index(value: Any, choices: tuple[str, ...], default: int = 0) -> int:
    """Radio values arrive as indexes (type="index") or, from scripts, as labels."""
    if isinstance(value, str):
        return choices.index(value) if value in choices else default
    return default if value is None else int(value)


def img2img_params_from_ui(values: dict[str, Any], init_image: Image.Image | None,
                           mask: Image.Image | None) -> Img2ImgParams:
    """The tab's values (keyed by IMG2IMG_INPUT_NAMES) and the prepared images as a request.
    Gradio numbers arrive as floats."""
    seed = values.get("seed")
    mask_blur = int(values.get("mask_blur") or 0)
    return Img2ImgParams(
        prompt=values.get("prompt") or "", negative_prompt=values.get("negative_prompt") or "",
        sampler_name=values.get("sampler_name") or UI_DEFAULT_SAMPLER,
        scheduler=values.get("scheduler") or None, steps=int(values["steps"]),
        cfg_scale=float(values["cfg_scale"]),
        image_cfg_scale=float(values.get("image_cfg_scale") or 1.5),
        denoising_strength=float(values["denoising_strength"]),
        width=int(values["width"]), height=int(values["height"]),
        seed=int(seed if seed is not None else -1), n_iter=int(values["batch_count"]),
        batch_size=int(values["batch_size"]),
        init_images=[init_image] if init_image is not None else None, mask=mask,
        resize_mode=_index(values.get("resize_mode"), RESIZE_MODES),
        mask_blur_x=mask_blur, mask_blur_y=mask_blur,
        inpainting_mask_invert=_index(values.get("inpainting_mask_invert"), MASK_MODES),
        inpainting_fill=_index(values.get("inpainting_fill"), MASKED_CONTENT, default=1),
        inpaint_full_res=bool(_index(values.get("inpaint_full_res"), INPAINT_AREAS)),
        inpaint_full_res_padding=int(values.get("inpaint_full_res_padding") or 0),
        is_api=False, styles=list(values.get("styles") or []),
        script_args=values.get("script_args"),
        **refiner_fields(values.get("enable_refiner", False), values.get("refiner_checkpoint"),
                         values.get("refiner_switch_at", 0.8)))


def default_img2img_runner() -> Img2ImgRunner:
    # imported on first use: the processing stack pulls in torch and the engine
    from modules.processing.img2img import run_img2img
    return run_img2img


# -- batch from a folder (A1111's process_batch) --------------------------------------------------
def folder_images(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir()
                  if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def batch_mask_for(image_path: Path, masks: list[Path]) -> Path | None:
    """The mask of an input image: the mask file with the same stem, or the only mask there is."""
    for mask_path in masks:
        if mask_path.stem == image_path.stem:
            return mask_path
    return masks[0] if len(masks) == 1 else None


def save_batch_outputs(processed: Processed, image_path: Path, output_dir: Path) -> list[str]:
    """Write a batch image's results as `<input stem>.png` (`-2`, `-3`… for more) with infotext."""
    from modules.processing.images import write_image
    output_dir.mkdir(parents=True, exist_ok=True)
    first = processed.index_of_first_image   # a grid, if any, is not written
    written = []
    for number, image in enumerate(processed.images[first:]):
        suffix = "" if number == 0 else f"-{number + 1}"
        target = output_dir / f"{image_path.stem}{suffix}.png"
        infotexts = processed.infotexts[first:]
        write_image(image, target, "PNG",
                    infotext=infotexts[number] if number < len(infotexts) else None)
        written.append(str(target))
    return written


def run_img2img_batch(template: Img2ImgParams, input_dir: Path, output_dir: Path | None,
                      mask_dir: Path | None, runner: Img2ImgRunner,
                      processing_context: "ProcessingContext", progress: "JobProgress",
                      ) -> Processed:
    """img2img of every image of `input_dir` (one job): each one with `template`'s settings, its
    mask from `mask_dir` when given, results written to `output_dir`. Returns all images, with
    the info of the last run. Interrupt stops before the next image."""
    paths = folder_images(input_dir)
    if not paths:
        raise ValueError(f"No images found in the input directory {input_dir}")
    masks = folder_images(mask_dir) if mask_dir else []
    images: list[Any] = []
    infotexts: list[str] = []
    saved: list[str] = []
    last: Processed | None = None
    for image_path in paths:
        if progress.interrupted:
            break
        with Image.open(image_path) as opened:
            init_image = ImageOps.exif_transpose(opened).copy()
        mask_path = batch_mask_for(image_path, masks)
        mask = Image.open(mask_path).copy() if mask_path is not None else None
        params = dataclasses.replace(template, init_images=[init_image], mask=mask)
        last = runner(params, processing_context)
        first = last.index_of_first_image
        images.extend(last.images[first:])
        infotexts.extend(last.infotexts[first:])
        if output_dir is not None:
            saved.extend(save_batch_outputs(last, image_path, output_dir))
        # each run counts its own progress; a skip belongs to the image it was meant for
        progress.next_job()
    if last is None:
        raise ValueError("The batch was interrupted before its first image")
    return dataclasses.replace(last, images=images, infotexts=infotexts, index_of_first_image=0,
                               saved_files=[*last.saved_files, *saved])


# -- generation ----------------------------------------------------------------------------------
def generate_img2img_live(ctx: "AppContext", runner: Img2ImgRunner | None,
                          values: dict[str, Any], *, poll_seconds: float | None = None,
                          ) -> Iterator[tuple[Any, ...]]:
    """The tab's Generate: yields ResultPanel.all_outputs (progress and live preview while the
    job runs, then the images). Bad input (no init image, no folder) and failures are shown in
    the tab as a message, never raised into Gradio."""
    extra = {} if poll_seconds is None else {"poll_seconds": poll_seconds}
    mode = int(values.get("mode") or IMG2IMG)
    remote_params = None   # a batch reads folders on this machine: it runs here
    try:
        if runner is None:
            runner = default_img2img_runner()
        if mode == BATCH:
            work = _batch_work(ctx, runner, values)
            template = img2img_params_from_ui(values, None, None)
            admit = functools.partial(ctx.admit_generation, template)
        else:
            init_image, mask = init_image_and_mask(mode, values)
            params = remote_params = img2img_params_from_ui(values, init_image, mask)
            work = _single_work(ctx, runner, params)
            admit = functools.partial(admit_img2img, ctx, params)
    except (ValueError, ImportError) as error:
        yield error_outputs(error) + ("", "", None)
        return
    yield from generate_in_job(
        ctx, "img2img", work,
        on_error=lambda error: log.warning("img2img failed: %s", error,
                                           exc_info=not isinstance(error, ValueError)),
        admit=admit, remote_params=remote_params, **extra)


def admit_img2img(ctx: "AppContext", params: Img2ImgParams) -> None:
    """The server limits for the request and the sizes of its init image and mask."""
    for field, image in (("init image", (params.init_images or [None])[0]),
                         ("mask", params.mask)):
        if image is not None:
            check_input_image(ctx.limits, field, *image.size)
    ctx.admit_generation(params)


def _single_work(ctx: "AppContext", runner: Img2ImgRunner,
                 params: Img2ImgParams) -> Callable[["JobProgress"], Processed]:
    return lambda job_progress: runner(params, ctx.processing_context(job_progress))


def _batch_work(ctx: "AppContext", runner: Img2ImgRunner,
                values: dict[str, Any]) -> Callable[["JobProgress"], Processed]:
    def folder(key: str, what: str) -> Path | None:
        text = (values.get(key) or "").strip()
        return ctx.paths.allowed_folder(text, what) if text else None

    input_dir = folder("batch_input_dir", "Input directory")
    if input_dir is None or not input_dir.is_dir():
        raise ValueError(f"Input directory not found: '{values.get('batch_input_dir') or ''}'")
    output_dir = folder("batch_output_dir", "Output directory")
    mask_dir = folder("batch_mask_dir", "Mask directory")
    if mask_dir is not None and not mask_dir.is_dir():
        raise ValueError(f"Mask directory not found: '{values.get('batch_mask_dir')}'")
    template = img2img_params_from_ui(values, None, None)

    def work(job_progress: "JobProgress") -> Processed:
        return run_img2img_batch(template, input_dir, output_dir, mask_dir, runner,
                                 ctx.processing_context(job_progress), job_progress)
    return work


# -- layout --------------------------------------------------------------------------------------
def _input_tabs() -> tuple[dict[str, Any], list[gr.Tab]]:
    """The sub-tabs holding the init image inputs, in A1111's mode order."""
    inputs: dict[str, Any] = {}
    tabs: list[gr.Tab] = []
    color_brush = gr.Brush(color_mode="defaults")
    with gr.Tabs(elem_id="mode_img2img"):
        with gr.Tab(MODE_LABELS[IMG2IMG], id="img2img_img2img_tab") as tab:
            inputs["init_img"] = gr.Image(label="Image for img2img", type="pil", format="png",
                                          image_mode="RGBA", sources=["upload", "clipboard"],
                                          elem_id="img2img_image", height=480)
        tabs.append(tab)
        with gr.Tab(MODE_LABELS[SKETCH], id="img2img_img2img_sketch_tab") as tab:
            inputs["sketch"] = gr.ImageEditor(label="Image for img2img", type="pil", format="png",
                                              image_mode="RGB", brush=color_brush,
                                              elem_id="img2img_sketch", height=480)
        tabs.append(tab)
        with gr.Tab(MODE_LABELS[INPAINT], id="img2img_inpaint_tab") as tab:
            inputs["init_img_with_mask"] = gr.ImageEditor(
                label="Image for inpainting with mask", type="pil", format="png", image_mode="RGBA",
                brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"),
                layers=False, elem_id="img2maskimg", height=480)
        tabs.append(tab)
        with gr.Tab(MODE_LABELS[INPAINT_SKETCH], id="img2img_inpaint_sketch_tab") as tab:
            inputs["inpaint_color_sketch"] = gr.ImageEditor(
                label="Color sketch inpainting", type="pil", format="png", image_mode="RGB",
                brush=color_brush, layers=False, elem_id="inpaint_sketch", height=480)
        tabs.append(tab)
        with gr.Tab(MODE_LABELS[INPAINT_UPLOAD], id="img2img_inpaint_upload_tab") as tab:
            inputs["init_img_inpaint"] = gr.Image(label="Image for img2img", type="pil",
                                                  format="png", image_mode="RGBA",
                                                  elem_id="img_inpaint_base")
            inputs["init_mask_inpaint"] = gr.Image(label="Mask", type="pil", format="png",
                                                   image_mode="RGBA", elem_id="img_inpaint_mask")
        tabs.append(tab)
        with gr.Tab(MODE_LABELS[BATCH], id="img2img_batch_tab") as tab:
            gr.HTML("<p>Process images in a directory on the same machine where the server is "
                    "running. Leave the output directory empty to only show the results.</p>")
            inputs["batch_input_dir"] = gr.Textbox(label="Input directory",
                                                   elem_id="img2img_batch_input_dir")
            inputs["batch_output_dir"] = gr.Textbox(label="Output directory",
                                                    elem_id="img2img_batch_output_dir")
            inputs["batch_mask_dir"] = gr.Textbox(
                label="Inpaint batch mask directory (required for inpaint batch processing only)",
                elem_id="img2img_batch_inpaint_mask_dir")
        tabs.append(tab)
    return inputs, tabs


def _inpaint_controls() -> tuple[dict[str, Any], gr.Group, gr.Slider]:
    controls: dict[str, Any] = {}
    with gr.Group(visible=False, elem_id="inpaint_controls") as group:
        with gr.Row():
            controls["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur",
                                              elem_id="img2img_mask_blur")
            controls["mask_alpha"] = gr.Slider(0, 100, value=0, step=1,
                                               label="Mask transparency", visible=False,
                                               elem_id="img2img_mask_alpha")
        controls["inpainting_mask_invert"] = gr.Radio(
            list(MASK_MODES), value=MASK_MODES[0], type="index", label="Mask mode",
            elem_id="img2img_mask_mode")
        controls["inpainting_fill"] = gr.Radio(
            list(MASKED_CONTENT), value="original", type="index", label="Masked content",
            elem_id="img2img_inpainting_fill")
        with gr.Row():
            controls["inpaint_full_res"] = gr.Radio(
                list(INPAINT_AREAS), value=INPAINT_AREAS[0], type="index", label="Inpaint area",
                elem_id="img2img_inpaint_full_res")
            controls["inpaint_full_res_padding"] = gr.Slider(
                0, 256, value=32, step=4, label="Only masked padding, pixels",
                elem_id="img2img_inpaint_full_res_padding")
    return controls, group, controls["mask_alpha"]


def _cfg_controls() -> tuple[gr.Slider, gr.Slider]:
    """CFG scale and, for instruct-pix2pix models, the image CFG scale."""
    with gr.Row():
        cfg_scale = cfg_control("img2img")
        image_cfg_scale = gr.Slider(0, 3.0, value=1.5, step=0.05, label="Image CFG Scale",
                                    elem_id="img2img_image_cfg_scale")
    return cfg_scale, image_cfg_scale


def build_img2img_tab(ctx: "AppContext", runner: Img2ImgRunner | None = None,
                      send_to: "SendToRegistry | None" = None) -> None:
    """Components of the tab (inside an open gr.Tab). `runner` defaults to run_img2img;
    `send_to` gets the gallery's "Send to" buttons."""
    prompts = prompt_row("img2img", ctx.styles.names())
    extra_networks_panel(ctx, "img2img", prompts.prompt, prompts.negative_prompt)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            mode = gr.State(IMG2IMG)
            image_inputs, mode_tabs = _input_tabs()
            build_interrogate_buttons(ctx, mode, prompts.prompt, image_inputs)
            resize_mode = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[0], type="index",
                                   label="Resize mode", elem_id="resize_mode")
            sections = build_sections_in_order(ctx.options.get("ui_reorder_list"), {
                "inpaint": _inpaint_controls,
                "sampler": lambda: sampling_controls("img2img"),
                "dimensions": lambda: dimension_controls("img2img"),
                "cfg": _cfg_controls,
                "denoising": lambda: gr.Slider(0.0, 1.0, value=0.75, step=0.01,
                                               label="Denoising strength",
                                               elem_id="img2img_denoising_strength"),
                "seed": lambda: seed_controls("img2img"),
                "batch": lambda: batch_controls("img2img"),
                "accordions": lambda: refiner_controls("img2img", ctx.checkpoints.titles()),
                "scripts": lambda: build_script_controls(ctx.scripts.img2img),
            })
            scripts: ScriptControls = sections["scripts"]
            inpaint, inpaint_group, mask_alpha = sections["inpaint"]
            sampling, seeds, refiner = sections["sampler"], sections["seed"], sections["accordions"]
            cfg_scale, image_cfg_scale = sections["cfg"]
            denoising_strength = sections["denoising"]
            sizes = SizeBatchControls(*sections["dimensions"], *sections["batch"], cfg_scale)
        with gr.Column(scale=1):
            results = result_panel("img2img")
            gallery_tools(ctx, "img2img", results, send_to)

    for index, tab in enumerate(mode_tabs):
        tab.select(fn=lambda chosen=index: (chosen, gr.update(visible=chosen in INPAINT_MODES),
                                            gr.update(visible=chosen == INPAINT_SKETCH)),
                   inputs=[], outputs=[mode, inpaint_group, mask_alpha],
                   show_progress="hidden", api_visibility="private", queue=False)

    components = {
        "mode": mode, **image_inputs, "prompt": prompts.prompt,
        "negative_prompt": prompts.negative_prompt, "sampler_name": sampling.sampler,
        "scheduler": sampling.scheduler, "steps": sampling.steps, "cfg_scale": sizes.cfg_scale,
        "image_cfg_scale": image_cfg_scale, "denoising_strength": denoising_strength,
        "width": sizes.width, "height": sizes.height, "seed": seeds.seed,
        "batch_count": sizes.batch_count, "batch_size": sizes.batch_size,
        "resize_mode": resize_mode, **inpaint, "enable_refiner": refiner.enable,
        "refiner_checkpoint": refiner.checkpoint, "refiner_switch_at": refiner.switch_at,
        "styles": prompts.styles.selected,
    }
    inputs = [components[name] for name in IMG2IMG_INPUT_NAMES] + scripts.inputs
    # ↙️ sets every control but the init images and the mode
    pasted = {name: component for name, component in components.items()
              if name not in IMAGE_INPUT_NAMES}
    wire_prompt_tools(ctx, prompts, pasted, sampling.steps, scripts.paste_fields)

    def on_generate(*values: Any) -> Iterator[tuple[Any, ...]]:
        count = len(IMG2IMG_INPUT_NAMES)
        named = dict(zip(IMG2IMG_INPUT_NAMES, values[:count]))
        named["script_args"] = scripts.script_args(values[count:])
        yield from generate_img2img_live(ctx, runner, named)

    wire_generation(ctx, prompts, results, seeds, on_generate, inputs, api_name="img2img")
