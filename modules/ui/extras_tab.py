"""The Extras tab: upscale one image, a batch of uploaded files or a folder (A1111's "Single
Image" / "Batch Process" / "Batch from Directory"), by a factor or to a size, with a second
upscaler blended in and face restoration; the work runs on the job queue through
`postprocessing.run_extras`, results are saved to the extras output folder and shown in a
gallery with their postprocessing infotext."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import gradio as gr
from PIL import Image

from modules.jobs.queue import QueueFullError
from modules.processing.admission import check_extras, check_input_image
from modules.processing.context import UnsupportedRequestError
from modules.processing.images import save_image
from modules.processing.postprocessing import (RESIZE_BY_FACTOR, RESIZE_TO_SIZE, ExtrasResult,
                                               ExtrasSettings, PostprocessingError, run_extras)
from modules.ui.common import error_to_html

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.app.paths import Paths
    from modules.jobs.progress import JobProgress

log = logging.getLogger(__name__)

SINGLE_IMAGE, BATCH_FILES, BATCH_FOLDER = 0, 1, 2
MODE_LABELS = ("Single Image", "Batch Process", "Batch from Directory")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif")

# the generate function's inputs, in order (the names of ExtrasSettings where they match)
EXTRAS_INPUT_NAMES = (
    "mode", "image", "image_files", "input_dir", "output_dir", "show_results",
    "resize_mode", "upscaling_resize", "upscaling_resize_w", "upscaling_resize_h",
    "upscaling_crop", "upscaler_1", "upscaler_2", "extras_upscaler_2_visibility",
    "gfpgan_visibility", "codeformer_visibility", "codeformer_weight", "upscale_first",
)


@dataclass
class ExtrasOutputs:
    images: list[Image.Image]
    html_info: str
    error_html: str

    def as_tuple(self) -> tuple[list[Image.Image], str, str]:
        return self.images, self.html_info, self.error_html


def extras_settings_from_ui(values: dict[str, Any]) -> ExtrasSettings:
    """The tab's controls as the pipeline's settings (Gradio numbers arrive as floats)."""
    return ExtrasSettings(
        resize_mode=RESIZE_TO_SIZE if int(values.get("resize_mode") or 0) else RESIZE_BY_FACTOR,
        upscaling_resize=float(values.get("upscaling_resize") or 0),
        upscaling_resize_w=int(values.get("upscaling_resize_w") or 0),
        upscaling_resize_h=int(values.get("upscaling_resize_h") or 0),
        upscaling_crop=bool(values.get("upscaling_crop")),
        upscaler_1=values.get("upscaler_1") or "None",
        upscaler_2=values.get("upscaler_2") or "None",
        extras_upscaler_2_visibility=float(values.get("extras_upscaler_2_visibility") or 0),
        gfpgan_visibility=float(values.get("gfpgan_visibility") or 0),
        codeformer_visibility=float(values.get("codeformer_visibility") or 0),
        codeformer_weight=float(values.get("codeformer_weight") or 0),
        upscale_first=bool(values.get("upscale_first")))


def folder_images(directory: Path) -> list[Path]:
    return sorted(path for path in Path(directory).iterdir()
                  if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def _file_path(item: Any) -> Path:
    """A gr.File value: a path string (type="filepath") or an object with .name."""
    return Path(item if isinstance(item, (str, Path)) else getattr(item, "name", str(item)))


def input_images(values: dict[str, Any], paths_allowed: "Paths"
                 ) -> tuple[list[Image.Image], list[str]]:
    """(images, their original names) of the selected source; ValueError when it has none or
    its folder is outside the allowed ones."""
    mode = int(values.get("mode") or SINGLE_IMAGE)
    if mode == SINGLE_IMAGE:
        image = values.get("image")
        if image is None:
            raise ValueError("No image: upload one in the Single Image tab")
        return [image], [""]
    if mode == BATCH_FILES:
        paths = [_file_path(item) for item in values.get("image_files") or []]
    else:
        text = str(values.get("input_dir") or "").strip()
        folder = paths_allowed.allowed_folder(text, "Input directory") if text else None
        if folder is None or not folder.is_dir():
            raise ValueError(f"Input directory not found: '{text}'")
        paths = folder_images(folder)
    if not paths:
        raise ValueError(f"No images to process in {MODE_LABELS[mode]}")
    images = []
    for path in paths:
        with Image.open(path) as opened:
            opened.load()
            images.append(opened)
    return images, [path.stem for path in paths]


def save_extras_images(ctx: "AppContext", result: ExtrasResult, names: Sequence[str],
                       output_dir: Path) -> list[str]:
    """Save every result (A1111 always saves extras output) keeping the input's metadata."""
    options = ctx.options
    use_original = bool(options.get("use_original_name_batch"))
    saved = []
    for image, name in zip(result.images, names):
        existing = {k: v for k, v in image.info.items() if k != "parameters"}
        path, _ = save_image(
            image, output_dir, basename="", extension=options.get("samples_format") or "png",
            infotext=image.info.get("parameters"), existing_info=existing, short_filename=True,
            forced_filename=name if name and use_original else None,
            jpeg_quality=int(options.get("jpeg_quality")), dir_pattern=None,
            embed_infotext=bool(options.get("enable_pnginfo")))
        saved.append(path)
    return saved


def _output_folder(ctx: "AppContext", values: dict[str, Any]) -> Path:
    """Batch from Directory's output folder (inside the allowed ones) or the extras folder."""
    text = str(values.get("output_dir") or "").strip()
    if int(values.get("mode") or SINGLE_IMAGE) == BATCH_FOLDER and text:
        return ctx.paths.allowed_folder(text, "Output directory")
    return ctx.paths.resolve_output(ctx.options.get("outdir_extras_samples"))


def run_extras_tab(ctx: "AppContext", values: dict[str, Any],
                   script_values: dict[str, dict[str, Any]] | None = None) -> ExtrasOutputs:
    """The tab's function: read the source, run the extras job on the queue (with the
    postprocessing scripts' values by script name), save and show the results; every error
    becomes a message in the tab."""
    try:
        images, names = input_images(values, ctx.paths)
        output_dir = _output_folder(ctx, values)
        settings = extras_settings_from_ui(values)
        for name, image in zip(names, images):
            check_input_image(ctx.limits, name or "image", *image.size)
        check_extras(ctx.limits, settings, [image.size for image in images])
    except (ValueError, OSError) as error:     # AdmissionError is a ValueError
        return ExtrasOutputs([], "", error_to_html(str(error)))
    options = ctx.options

    def work(progress: "JobProgress") -> ExtrasResult:
        def on_image(index: int, count: int) -> None:
            if index == 0:
                progress.begin(count)
            else:
                progress.next_job()
        return run_extras(images, settings, upscalers=ctx.upscalers,
                          restorers=ctx.face_restorers,
                          enable_pnginfo=bool(options.get("enable_pnginfo")), on_image=on_image,
                          scripts=ctx.scripts.postprocessing, script_values=script_values)

    try:
        result: ExtrasResult = ctx.jobs.run("extras", work)
    except (PostprocessingError, UnsupportedRequestError, ValueError, QueueFullError) as error:
        return ExtrasOutputs([], "", error_to_html(str(error)))
    except Exception as error:  # noqa: BLE001 - shown in the tab, not raised into Gradio
        log.warning("extras failed: %s", error, exc_info=True)
        return ExtrasOutputs([], "", error_to_html(f"{type(error).__name__}: {error}"))

    mode = int(values.get("mode") or SINGLE_IMAGE)
    try:
        save_extras_images(ctx, result, names, output_dir)
    except (OSError, ValueError) as error:
        return ExtrasOutputs(result.images, result.html_info,
                             error_to_html(f"Could not save the results: {error}"))
    shown = result.images if mode != BATCH_FOLDER or values.get("show_results", True) else []
    return ExtrasOutputs(shown, result.html_info,
                         error_to_html("\n".join(result.script_errors)) if result.script_errors
                         else "")


def face_restorer_notice(ctx: "AppContext", gfpgan_visibility: float,
                         codeformer_visibility: float) -> str:
    """A1111 greys out restorers it lacks; we say so as soon as a slider asks for one."""
    if max(gfpgan_visibility or 0, codeformer_visibility or 0) <= 0:
        return ""
    try:
        if gfpgan_visibility and gfpgan_visibility > 0:
            ctx.face_restorers.check("GFPGAN")
        if codeformer_visibility and codeformer_visibility > 0:
            ctx.face_restorers.check("CodeFormer")
    except UnsupportedRequestError as error:
        return error_to_html(str(error))
    return ""


def _source_tabs() -> tuple[dict[str, Any], list[gr.Tab]]:
    inputs: dict[str, Any] = {}
    tabs: list[gr.Tab] = []
    with gr.Tabs(elem_id="mode_extras"):
        with gr.Tab(MODE_LABELS[SINGLE_IMAGE], id="extras_single_tab") as tab:
            inputs["image"] = gr.Image(label="Source", type="pil", format="png", image_mode=None,
                                       sources=["upload", "clipboard"], elem_id="extras_image",
                                       height=400)
        tabs.append(tab)
        with gr.Tab(MODE_LABELS[BATCH_FILES], id="extras_batch_process_tab") as tab:
            inputs["image_files"] = gr.File(label="Batch Process", file_count="multiple",
                                            file_types=["image"], type="filepath",
                                            elem_id="extras_image_batch")
        tabs.append(tab)
        with gr.Tab(MODE_LABELS[BATCH_FOLDER], id="extras_batch_directory_tab") as tab:
            inputs["input_dir"] = gr.Textbox(label="Input directory",
                                             elem_id="extras_batch_input_dir")
            inputs["output_dir"] = gr.Textbox(label="Output directory",
                                              placeholder="Leave blank to save images to the "
                                                          "default path.",
                                              elem_id="extras_batch_output_dir")
            inputs["show_results"] = gr.Checkbox(True, label="Show result images",
                                                 elem_id="extras_show_extras_results")
        tabs.append(tab)
    return inputs, tabs


def _upscale_controls(ctx: "AppContext") -> tuple[dict[str, Any], list[gr.Tab]]:
    names = ctx.upscalers.names()
    controls: dict[str, Any] = {}
    tabs: list[gr.Tab] = []
    with gr.Tabs(elem_id="extras_resize_mode"):
        with gr.Tab("Scale by", id="extras_scale_by_tab") as tab:
            controls["upscaling_resize"] = gr.Slider(1.0, 8.0, value=4.0, step=0.05, label="Resize",
                                                     elem_id="extras_upscaling_resize")
        tabs.append(tab)
        with gr.Tab("Scale to", id="extras_scale_to_tab") as tab:
            with gr.Row():
                controls["upscaling_resize_w"] = gr.Slider(64, 8192, value=512, step=8,
                                                           label="Width",
                                                           elem_id="extras_upscaling_resize_w")
                controls["upscaling_resize_h"] = gr.Slider(64, 8192, value=512, step=8,
                                                           label="Height",
                                                           elem_id="extras_upscaling_resize_h")
                controls["upscaling_crop"] = gr.Checkbox(True, label="Crop to fit",
                                                         elem_id="extras_upscaling_crop")
        tabs.append(tab)
    with gr.Row():
        controls["upscaler_1"] = gr.Dropdown(names, value=names[0], label="Upscaler 1",
                                             elem_id="extras_upscaler_1")
    with gr.Row():
        controls["upscaler_2"] = gr.Dropdown(names, value=names[0], label="Upscaler 2",
                                             elem_id="extras_upscaler_2")
        controls["extras_upscaler_2_visibility"] = gr.Slider(
            0.0, 1.0, value=0.0, step=0.001, label="Upscaler 2 visibility",
            elem_id="extras_upscaler_2_visibility")
    return controls, tabs


def _face_controls() -> dict[str, Any]:
    with gr.Accordion("Face restoration", open=False, elem_id="extras_face_restoration"):
        controls = {
            "gfpgan_visibility": gr.Slider(0.0, 1.0, value=0.0, step=0.001,
                                           label="GFPGAN visibility",
                                           elem_id="extras_gfpgan_visibility"),
            "codeformer_visibility": gr.Slider(0.0, 1.0, value=0.0, step=0.001,
                                               label="CodeFormer visibility",
                                               elem_id="extras_codeformer_visibility"),
            "codeformer_weight": gr.Slider(0.0, 1.0, value=0.0, step=0.001,
                                           label="CodeFormer weight (0 = maximum effect, "
                                                 "1 = minimum effect)",
                                           elem_id="extras_codeformer_weight"),
        }
        controls["upscale_first"] = gr.Checkbox(False, label="Upscale before restoring faces",
                                                elem_id="extras_upscale_before_face_fix")
        controls["notice"] = gr.HTML(elem_id="extras_face_restoration_notice")
    return controls


def _postprocessing_script_controls(ctx: "AppContext") -> list[tuple[str, str, Any]]:
    """The extensions' postprocessing scripts' controls, a group each, in run order:
    (script name, value name, component)."""
    scripts = ctx.scripts.postprocessing
    found = []
    for script in scripts.scripts:
        with gr.Group(elem_id=f"extras_script_{script.name}"):
            found += [(script.name, key, control)
                      for key, control in scripts.build_controls(script).items()]
    return found


def build_extras_tab(ctx: "AppContext") -> None:
    """Components of the tab (inside an open gr.Tab)."""
    mode = gr.State(SINGLE_IMAGE)
    resize_mode = gr.State(RESIZE_BY_FACTOR)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            sources, source_tabs = _source_tabs()
            submit = gr.Button("Generate", variant="primary", elem_id="extras_generate")
            upscale, resize_tabs = _upscale_controls(ctx)
            faces = _face_controls()
            script_controls = _postprocessing_script_controls(ctx)
        with gr.Column(scale=1):
            gallery = gr.Gallery(label="Result", show_label=False, elem_id="extras_gallery",
                                 columns=3, format="png", interactive=False)
            html_info = gr.HTML(elem_id="html_info_extras")
            error_html = gr.HTML(elem_id="html_log_extras")

    for index, tab in enumerate(source_tabs):
        tab.select(fn=lambda chosen=index: chosen, outputs=[mode], api_visibility="private",
                   queue=False)
    for index, tab in enumerate(resize_tabs):
        tab.select(fn=lambda chosen=index: chosen, outputs=[resize_mode],
                   api_visibility="private", queue=False)

    components = {"mode": mode, **sources, "resize_mode": resize_mode, **upscale, **faces}
    inputs = [components[name] for name in EXTRAS_INPUT_NAMES]
    inputs += [control for _, _, control in script_controls]

    def on_submit(*values: Any) -> tuple[list[Image.Image], str, str]:
        base = dict(zip(EXTRAS_INPUT_NAMES, values))
        by_script: dict[str, dict[str, Any]] = {}
        for (script_name, key, _), value in zip(script_controls,
                                                values[len(EXTRAS_INPUT_NAMES):]):
            by_script.setdefault(script_name, {})[key] = value
        return run_extras_tab(ctx, base, by_script).as_tuple()

    submit.click(on_submit, inputs=inputs, outputs=[gallery, html_info, error_html],
                 api_name="extras", concurrency_limit=None)
    face_sliders = [faces["gfpgan_visibility"], faces["codeformer_visibility"]]
    for slider in face_sliders:
        slider.change(lambda gfpgan, codeformer: face_restorer_notice(ctx, gfpgan, codeformer),
                      inputs=face_sliders, outputs=[faces["notice"]], show_progress="hidden",
                      api_visibility="private", queue=False)
