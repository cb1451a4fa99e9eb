"""The Image Browser tab (what A1111 users get from the images-browser extension): the pictures
under the outputs folder, newest first, page by page, filtered by folder, prompt words, seed,
model and favourites; a picture opens large with its parameters and goes to txt2img / img2img /
inpaint / extras like a PNG Info one; favourites; delete to the trash, and undo."""
from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING

import gradio as gr
from PIL import Image

from modules.app.image_index import SORTS, ImageIndex, ImagePage
from modules.ui.common import infotext_to_html

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.ui.send_to import SendToRegistry

log = logging.getLogger(__name__)
ALL = "All"
PAGE_SIZE = 36


def page_text(page: ImagePage) -> str:
    return f"Page {page.page} of {page.pages} ({page.total} images)"


def run_query(index: ImageIndex, folder: str, text: str, seed: str, model: str,
              favourites: bool, sort: str, page: float) -> tuple[ImagePage, str | None]:
    """(the page, or the message of a bad filter)."""
    seed_value = None
    if str(seed or "").strip():
        try:
            seed_value = int(str(seed).strip())
        except ValueError:
            return ImagePage([], 0, 1, 1), f"Seed must be a whole number, not {seed!r}"
    return index.query(folder=None if folder in (None, "", ALL) else folder, text=text or "",
                       seed=seed_value, model=model or "", favourites=bool(favourites),
                       sort=sort or "newest", page=int(page or 1), page_size=PAGE_SIZE), None


def build_image_browser_tab(ctx: "AppContext", send_to: "SendToRegistry | None" = None) -> None:
    index = getattr(ctx, "image_index", None)
    if index is None:       # an app built without one (tests over partial contexts)
        gr.Markdown("The image browser is not available here.", elem_id="image_browser_off")
        return
    with gr.Row():
        folder = gr.Dropdown([ALL], value=ALL, label="Folder", elem_id="image_browser_folder")
        sort = gr.Dropdown(list(SORTS), value="newest", label="Sort by",
                           elem_id="image_browser_sort")
        search = gr.Textbox(label="Prompt contains", elem_id="image_browser_search")
        seed = gr.Textbox(label="Seed", elem_id="image_browser_seed")
        model = gr.Textbox(label="Model", elem_id="image_browser_model")
        favourites = gr.Checkbox(label="Favourites only", elem_id="image_browser_favourites")
        refresh = gr.Button("Refresh", elem_id="image_browser_refresh")
    with gr.Row():
        previous = gr.Button("Previous page", elem_id="image_browser_previous")
        page = gr.Number(1, precision=0, label="Page", elem_id="image_browser_page")
        following = gr.Button("Next page", elem_id="image_browser_next")
        page_info = gr.HTML(elem_id="image_browser_page_info")
    paths = gr.State([])
    with gr.Row(equal_height=False):
        gallery = gr.Gallery(label="Images", columns=6, height=560, allow_preview=False,
                             elem_id="image_browser_gallery")
        with gr.Column():
            large = gr.Image(label="Image", type="pil", interactive=False, height=360,
                             elem_id="image_browser_image")
            parameters = gr.HTML(elem_id="image_browser_parameters")
            infotext = gr.Textbox(visible=False, elem_id="image_browser_infotext")
            selected = gr.Textbox(visible=False, elem_id="image_browser_selected")
            with gr.Row():
                favourite = gr.Button("Favourite", elem_id="image_browser_favourite")
                delete = gr.Button("Delete", variant="stop", elem_id="image_browser_delete")
                undo = gr.Button("Undo delete", elem_id="image_browser_undo")
            if send_to is not None:
                send_to.add_buttons("image_browser", large, infotext)
            status = gr.HTML(elem_id="image_browser_status")

    filters = [folder, search, seed, model, favourites, sort, page]

    def show(folder_value, text, seed_value, model_value, only_favourites, order, number,
             *, rescan: bool = False):
        if rescan:
            added, removed = index.scan()
            log.debug("image browser: %d indexed, %d gone", added, removed)
        found, problem = run_query(index, folder_value, text, seed_value, model_value,
                                   only_favourites, order, number)
        pictures = []
        for record in found.items:
            try:
                with Image.open(index.outputs_dir / record.path) as image:
                    pictures.append((image.copy(), record.path))
            except OSError:
                continue
        info = html.escape(problem) if problem else page_text(found)
        return (pictures, [record.path for record in found.items], found.page, info,
                gr.update(choices=[ALL, *index.folders()]))

    outputs = [gallery, paths, page, page_info, folder]
    refresh.click(lambda *values: show(*values, rescan=True), inputs=filters, outputs=outputs,
                  api_visibility="private")
    for control in (folder, sort, favourites):
        control.change(lambda *values: show(*values[:-1], 1), inputs=filters, outputs=outputs,
                       api_visibility="private")
    for box in (search, seed, model):
        box.submit(lambda *values: show(*values[:-1], 1), inputs=filters, outputs=outputs,
                   api_visibility="private")
    previous.click(lambda *values: show(*values[:-1], max(1, int(values[-1] or 1) - 1)),
                   inputs=filters, outputs=outputs, api_visibility="private")
    following.click(lambda *values: show(*values[:-1], int(values[-1] or 1) + 1),
                    inputs=filters, outputs=outputs, api_visibility="private")

    def select(current: list[str], event: gr.SelectData):
        if not current or event.index is None or event.index >= len(current):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        path = current[event.index]
        record = index.get(path)
        with Image.open(index.outputs_dir / path) as image:
            picture = image.copy()
        text = record.infotext if record else ""
        star = " ★" if record and record.favourite else ""
        head = f"<p class='image-browser-path'>{html.escape(path)}{star}</p>"
        return picture, head + infotext_to_html(text), text, path

    gallery.select(select, inputs=[paths], outputs=[large, parameters, infotext, selected],
                   api_visibility="private")

    def toggle_favourite(path: str) -> str:
        record = index.get(path) if path else None
        if record is None:
            return "Select an image first"
        index.set_favourite(path, not record.favourite)
        return f"{path}: {'favourite' if not record.favourite else 'no longer a favourite'}"

    def remove(path: str, *values):
        if not path:
            return ("Select an image first", *show(*values))
        trashed = index.delete(path)
        return (f"Deleted {path} (moved to the trash as {trashed}; Undo delete brings it "
                f"back)", *show(*values))

    def restore(*values):
        deleted = index.trashed()
        if not deleted:
            return ("Nothing to undo", *show(*values))
        back = index.restore(deleted[-1][0])
        return (f"Restored {back}", *show(*values))

    favourite.click(toggle_favourite, inputs=[selected], outputs=[status],
                    api_visibility="private")
    delete.click(remove, inputs=[selected, *filters], outputs=[status, *outputs],
                 api_visibility="private")
    undo.click(restore, inputs=filters, outputs=[status, *outputs], api_visibility="private")
