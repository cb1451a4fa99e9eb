"""img2img's "Interrogate CLIP" and "Interrogate DeepBooru" buttons: describe the image of the
open input tab and put the text in the prompt (A1111's behaviour); absent weights or a missing
image become a message under the buttons, the prompt is left as it was."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from modules.jobs.queue import QueueFullError
from modules.processing.interrogation import (
    InterrogationError,
    InterrogatorMissingError,
)
from modules.ui.common import error_to_html

if TYPE_CHECKING:
    from modules.app.context import AppContext

log = logging.getLogger(__name__)

#: the input components the buttons read, by their img2img_tab names
IMAGE_SOURCES = ("init_img", "sketch", "init_img_with_mask", "inpaint_color_sketch",
                 "init_img_inpaint")


def source_image(mode: int, values: dict[str, Any]) -> Image.Image | None:
    """The picture of the open tab (the background of an editor, with any sketch on it)."""
    if mode >= len(IMAGE_SOURCES):
        return None
    value = values.get(IMAGE_SOURCES[mode])
    if isinstance(value, dict):      # an ImageEditor: the composite, else the background
        composite = value.get("composite")
        value = composite if composite is not None else value.get("background")
    return value if isinstance(value, Image.Image) else None


def interrogate_prompt(ctx: "AppContext", model: str, mode: int, prompt: str,
                       values: dict[str, Any]) -> tuple[str, str]:
    """(new prompt, message html) for a click on the `model` button."""
    image = source_image(int(mode or 0), values)
    if image is None:
        return prompt, error_to_html("Interrogate needs an image: put one in the open tab "
                                     "(batch folders are not interrogated)")
    if ctx.interrogators is None:
        return prompt, error_to_html("Interrogation is not available in this build")
    try:
        text = ctx.jobs.run("interrogate",
                            lambda progress: ctx.interrogators.interrogate(image, model))
    except (InterrogatorMissingError, InterrogationError, QueueFullError) as error:
        return prompt, error_to_html(str(error))
    except Exception as error:  # noqa: BLE001 - shown under the buttons, not raised into Gradio
        log.warning("interrogate failed: %s", error, exc_info=True)
        return prompt, error_to_html(f"{type(error).__name__}: {error}")
    return text, ""


def build_interrogate_buttons(ctx: "AppContext", mode: gr.State, prompt: gr.Textbox,
                              image_inputs: dict[str, Any]) -> None:
    """The two buttons and their message line (inside the open column)."""
    with gr.Row(elem_id="img2img_interrogate_row"):
        clip = gr.Button("Interrogate CLIP", elem_id="interrogate", min_width=120)
        booru = gr.Button("Interrogate DeepBooru", elem_id="deepbooru", min_width=120)
    message = gr.HTML(elem_id="img2img_interrogate_message")
    sources = [image_inputs[name] for name in IMAGE_SOURCES]
    for button, model in ((clip, "clip"), (booru, "deepdanbooru")):
        def on_click(chosen_mode: int, text: str, *images: Any, model: str = model
                     ) -> tuple[str, str]:
            return interrogate_prompt(ctx, model, chosen_mode, text,
                                      dict(zip(IMAGE_SOURCES, images)))
        button.click(on_click, inputs=[mode, prompt, *sources], outputs=[prompt, message],
                     api_visibility="private", concurrency_limit=None)
