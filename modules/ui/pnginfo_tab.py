"""The PNG Info tab: drop an image and see its generation parameters (PNG `parameters` chunk,
JPEG/WEBP EXIF UserComment, GIF comment) and the rest of its metadata, then send them to
txt2img / img2img / inpaint / extras."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from modules.processing.images import read_info_from_image

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.ui.send_to import SendToRegistry

NO_IMAGE_HTML = ""
#: metadata that is binary or shown elsewhere (the infotext has its own box)
HIDDEN_ITEMS = frozenset({"parameters", "exif", "icc_profile"})


def _item_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def image_metadata(image: Image.Image | None) -> tuple[str, dict[str, str]]:
    """(infotext or "", every other text item of the image) as A1111's PNG Info shows them."""
    if image is None:
        return "", {}
    geninfo, items = read_info_from_image(image)
    others = {str(key): _item_text(value) for key, value in items.items()
              if key not in HIDDEN_ITEMS and not isinstance(value, (tuple, list, dict))}
    return geninfo or "", others


def metadata_html(infotext: str, others: dict[str, str]) -> str:
    """A1111's layout: one block per item, the name in bold, the text below."""
    parts = []
    if infotext:
        parts.append(("parameters", infotext))
    parts.extend(others.items())
    if not parts:
        return "<div class='pnginfo-empty'><p>Nothing found in the image.</p></div>"
    return "".join(f"<div class='pnginfo-item'><p><b>{html.escape(key)}</b></p>"
                   f"<p>{html.escape(text).replace(chr(10), '<br>')}</p></div>"
                   for key, text in parts)


def run_pnginfo(image: Image.Image | None) -> tuple[str, str, str]:
    """The tab's function: (html of every item, infotext, infotext again for the hidden
    generation-info box); empty strings for no image."""
    if image is None:
        return NO_IMAGE_HTML, "", ""
    infotext, others = image_metadata(image)
    return metadata_html(infotext, others), infotext, infotext


def build_pnginfo_tab(ctx: "AppContext", send_to: "SendToRegistry | None" = None) -> None:
    """Components of the tab (inside an open gr.Tab)."""
    with gr.Row(equal_height=False):
        with gr.Column():
            image = gr.Image(label="Source", type="pil", format="png", image_mode=None,
                             sources=["upload"], elem_id="pnginfo_image", height=480)
        with gr.Column():
            info_html = gr.HTML(elem_id="pnginfo_html")
            infotext = gr.Textbox(label="Generation parameters", lines=6, interactive=False,
                                  elem_id="pnginfo_generation_info", buttons=["copy"])
            generation_info = gr.Textbox(visible=False, elem_id="pnginfo_generation_info_raw")
            if send_to is not None:
                send_to.add_buttons("pnginfo", image, generation_info)
    image.change(run_pnginfo, inputs=[image], outputs=[info_html, infotext, generation_info],
                 api_visibility="private")
