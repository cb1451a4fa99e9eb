"""The Checkpoint Merger tab: A1111's fields (models A / B / C, method, multiplier, format, fp16,
config source, baked-in VAE, discarded weights, metadata), a progress bar while the merge job runs,
and the recipe of the result, which `python -m modules.merger` runs again. A recipe file can be
loaded into the fields."""
from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.engine.checkpoint_io import read_safetensors_metadata
from modules.engine.checkpoint_merge import ADD_DIFFERENCE, MERGE_METHODS, NO_INTERPOLATION, \
    WEIGHTED_SUM
from modules.merger.request import CONFIG_SOURCES, InvalidMergeRequest, MergeRequest, load_recipe
from modules.ui.common import error_to_html, wait_with_progress

if TYPE_CHECKING:
    from modules.app.context import AppContext

log = logging.getLogger(__name__)
REFRESH_SYMBOL = "\U0001f504"  # 🔄
INTERP_DESCRIPTIONS = {
    NO_INTERPOLATION: "No interpolation will be used. Requires one model; A. Allows for format "
                      "conversion and VAE baking.",
    WEIGHTED_SUM: "A weighted sum will be used for interpolation. Requires two models; A and B. "
                  "The result is calculated as A * (1 - M) + B * M",
    ADD_DIFFERENCE: "The difference between the last two models will be added to the first. "
                    "Requires three models; A, B and C. The result is calculated as "
                    "A + (B - C) * M",
}
#: the request fields the tab's controls set, in the order of its inputs
FIELDS = ("primary_model_name", "secondary_model_name", "tertiary_model_name", "interp_method",
          "multiplier", "save_as_half", "custom_name", "checkpoint_format", "config_source",
          "bake_in_vae", "discard_weights", "save_metadata", "add_merge_recipe",
          "copy_metadata_fields", "metadata_json", "overwrite")


def current_title(ctx: "AppContext", chosen: str | None) -> str | None:
    """A dropdown's checkpoint under its title of now (it gains " [hash]" once hashed)."""
    info = ctx.checkpoints.get_closest(chosen) if chosen else None
    return info.title if info is not None else chosen


def interp_description(method: str) -> str:
    return f"<p class='modelmerger-description'>{html.escape(INTERP_DESCRIPTIONS[method])}</p>"


def run_merge(ctx: "AppContext", values: dict[str, Any],
              progress: gr.Progress | None = None) -> tuple[str, str]:
    """Merge with the tab's values: (result HTML, recipe JSON or "")."""
    try:
        request = MergeRequest.from_dict(values)
        job = ctx.submit_merge(request)
        merged = wait_with_progress(job, progress, description="Merging")
    except Exception as error:  # noqa: BLE001 - every refusal is shown in the tab
        if not isinstance(error, (InvalidMergeRequest, LookupError, ValueError, OSError)):
            log.exception("Merge failed")
        return error_to_html(str(error)), ""
    return (f"<p class='modelmerger-saved'>{html.escape(merged.message)}</p>",
            json.dumps(merged.recipe, indent=2))


def read_metadata(ctx: "AppContext", *titles: str | None) -> str:
    """A1111's "Read metadata from selected checkpoints": their metadata, A's overridden by B's
    and C's, minus the merge history the merge writes anew."""
    metadata: dict[str, str] = {}
    for title in titles:
        info = ctx.checkpoints.get_closest(title) if title else None
        if info is not None:
            metadata.update(read_safetensors_metadata(info.filename))
    for key in ("sd_merge_recipe", "sd_merge_models", "format"):
        metadata.pop(key, None)
    return json.dumps(metadata, indent=4)


def recipe_values(path: str | None) -> list[Any]:
    """A recipe file's fields for the tab's controls (in FIELDS order), or skips + an error."""
    if not path:
        return [gr.skip() for _ in FIELDS] + [""]
    try:
        request = load_recipe(Path(path))
    except InvalidMergeRequest as error:
        return [gr.skip() for _ in FIELDS] + [error_to_html(str(error))]
    values = request.to_dict()
    values["config_source"] = CONFIG_SOURCES[request.config_source_index]
    for slot in ("primary", "secondary", "tertiary"):
        values[f"{slot}_model_name"] = values[f"{slot}_model_name"] or None
    return [values[name] for name in FIELDS] + [""]


def build_checkpoint_merger_tab(ctx: "AppContext") -> None:
    titles = ctx.checkpoints.titles()
    with gr.Row(equal_height=False):
        with gr.Column(variant="compact"):
            description = gr.HTML(interp_description(WEIGHTED_SUM),
                                  elem_id="modelmerger_interp_description")
            with gr.Row(elem_id="modelmerger_models"):
                models = [gr.Dropdown(titles, value=None, label=label, elem_id=elem_id)
                          for label, elem_id in (
                              ("Primary model (A)", "modelmerger_primary_model_name"),
                              ("Secondary model (B)", "modelmerger_secondary_model_name"),
                              ("Tertiary model (C)", "modelmerger_tertiary_model_name"))]
                refresh = gr.Button(REFRESH_SYMBOL, elem_id="modelmerger_refresh_checkpoints",
                                    min_width=40, scale=0)
            custom_name = gr.Textbox(label="Custom Name (Optional)",
                                     elem_id="modelmerger_custom_name")
            multiplier = gr.Slider(0.0, 1.0, value=0.3, step=0.05,
                                   label="Multiplier (M) - set to 0 to get model A",
                                   elem_id="modelmerger_interp_amount")
            method = gr.Radio(list(MERGE_METHODS), value=WEIGHTED_SUM,
                              label="Interpolation Method", elem_id="modelmerger_interp_method")
            with gr.Row():
                checkpoint_format = gr.Radio(["ckpt", "safetensors"], value="safetensors",
                                             label="Checkpoint format",
                                             elem_id="modelmerger_checkpoint_format")
                save_as_half = gr.Checkbox(False, label="Save as float16",
                                           elem_id="modelmerger_save_as_half")
            with gr.Row():
                config_source = gr.Radio(list(CONFIG_SOURCES), value=CONFIG_SOURCES[0],
                                         label="Copy config from",
                                         elem_id="modelmerger_config_method")
                bake_in_vae = gr.Dropdown(["None"] + [v.model_name for v in ctx.vaes.list()],
                                          value="None", label="Bake in VAE",
                                          elem_id="modelmerger_bake_in_vae")
            discard_weights = gr.Textbox("", label="Discard weights with matching name",
                                         elem_id="modelmerger_discard_weights")
            with gr.Accordion("Metadata", open=False):
                with gr.Row():
                    save_metadata = gr.Checkbox(True, label="Save metadata",
                                                elem_id="modelmerger_save_metadata")
                    add_recipe = gr.Checkbox(True, label="Add merge recipe metadata",
                                             elem_id="modelmerger_add_recipe")
                    copy_metadata = gr.Checkbox(True, label="Copy metadata from merged models",
                                                elem_id="modelmerger_copy_metadata")
                metadata_json = gr.TextArea("{}", label="Metadata in JSON format",
                                            elem_id="modelmerger_metadata_json")
                read_button = gr.Button("Read metadata from selected checkpoints",
                                        elem_id="modelmerger_read_metadata")
            overwrite = gr.Checkbox(False, label="Replace a checkpoint of the same name",
                                    elem_id="modelmerger_overwrite")
            merge = gr.Button("Merge", variant="primary", elem_id="modelmerger_merge")
        with gr.Column(variant="compact", elem_id="modelmerger_results_container"):
            result = gr.HTML(elem_id="modelmerger_result")
            recipe = gr.Code("", language="json", interactive=False, elem_id="modelmerger_recipe",
                             label="Recipe: python -m modules.merger recipe.json")
            recipe_file = gr.File(label="Load a recipe (.json)", file_types=[".json"],
                                  type="filepath", elem_id="modelmerger_recipe_file")

    inputs = [*models, method, multiplier, save_as_half, custom_name, checkpoint_format,
              config_source, bake_in_vae, discard_weights, save_metadata, add_recipe,
              copy_metadata, metadata_json, overwrite]

    def merge_clicked(*values: Any, progress: gr.Progress = gr.Progress()) -> list[Any]:
        fields = dict(zip(FIELDS, values))
        fields["config_source"] = CONFIG_SOURCES.index(fields["config_source"])
        message, recipe_text = run_merge(ctx, fields, progress)
        choices = ctx.checkpoints.titles()
        return [message, recipe_text, *(gr.update(choices=choices, value=current_title(ctx, value))
                                        for value in values[:len(models)])]

    def refreshed(*chosen: str | None) -> list[Any]:
        ctx.checkpoints.refresh()
        ctx.vaes.refresh()
        choices = ctx.checkpoints.titles()
        vaes = ["None"] + [v.model_name for v in ctx.vaes.list()]
        return [*(gr.update(choices=choices, value=current_title(ctx, value))
                  for value in chosen), gr.update(choices=vaes)]

    method.change(interp_description, inputs=[method], outputs=[description],
                  api_visibility="private")
    merge.click(merge_clicked, inputs=inputs, outputs=[result, recipe, *models],
                api_visibility="private")
    refresh.click(refreshed, inputs=models, outputs=[*models, bake_in_vae],
                  api_visibility="private")
    read_button.click(lambda *titles: read_metadata(ctx, *titles), inputs=models,
                      outputs=[metadata_json], api_visibility="private")
    recipe_file.upload(recipe_values, inputs=[recipe_file],
                       outputs=[*inputs, result],
                       api_visibility="private")
