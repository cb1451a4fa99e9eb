"""The row under a result gallery (A1111's): 📂 open the output folder, Save and Zip (copy the
selected image, or all, into the `outdir_save` folder with a line in its log.csv, and offer the
files for download), and "Send to img2img / inpaint / extras" with the selected image and its own
infotext. Which image is selected is tracked from the gallery's select event."""
from __future__ import annotations

import csv
import datetime
import html
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import gradio as gr
from PIL import Image

from modules.processing.images import save_image
from modules.processing.pipeline import output_folder

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.ui.common import ResultPanel
    from modules.ui.send_to import SendToRegistry

log = logging.getLogger(__name__)

OPEN_FOLDER_SYMBOL = "\U0001f4c2"    # 📂
GALLERY_SEND_TARGETS = ("img2img", "inpaint", "extras")
#: the columns of A1111's log.csv next to the images saved with the Save button
LOG_CSV_FIELDS = ("prompt", "seed", "width", "height", "sampler", "cfgs", "steps", "filename",
                  "negative_prompt", "sd_model_name", "sd_model_hash")


@dataclass
class GalleryTools:
    selected_index: gr.Number       # hidden: the gallery image the user clicked (None: none)
    open_folder: gr.Button
    save: gr.Button
    save_zip: gr.Button
    download: gr.File
    message: gr.HTML


def gallery_entry_path(entry: Any) -> str | None:
    """The file of one gallery value entry: Gradio passes (path, caption) pairs or paths."""
    if isinstance(entry, (tuple, list)):
        entry = entry[0] if entry else None
    if isinstance(entry, dict):
        entry = entry.get("path") or (entry.get("image") or {}).get("path")
    return str(entry) if entry else None


def open_gallery_entry(entry: Any) -> Image.Image | None:
    """The picture of one gallery entry, read into memory (None when its file is gone)."""
    path = gallery_entry_path(entry)
    if not path or not Path(path).is_file():
        return None
    with Image.open(path) as opened:
        return opened.copy()


def pick_index(count: int, selected: Any) -> int | None:
    """The selected index when valid, else the first image; None for an empty gallery."""
    if count <= 0:
        return None
    try:
        index = int(selected)
    except (TypeError, ValueError):
        return 0
    return index if 0 <= index < count else 0


def selected_image_and_infotext(gallery: Sequence[Any] | None, generation_info: str | None,
                                selected: Any) -> tuple[Image.Image | None, str]:
    """The picture "Send to" passes on and the infotext that belongs to it (a grid first in the
    gallery has its own infotext entry, so indexes line up)."""
    gallery = list(gallery or [])
    index = pick_index(len(gallery), selected)
    if index is None:
        return None, ""
    image = open_gallery_entry(gallery[index])
    infotexts = _info(generation_info).get("infotexts") or []
    infotext = infotexts[index] if index < len(infotexts) else (infotexts[0] if infotexts else "")
    return image, infotext


def _info(generation_info: str | None) -> dict[str, Any]:
    try:
        info = json.loads(generation_info or "")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def save_gallery_images(ctx: "AppContext", gallery: Sequence[Any] | None,
                        generation_info: str | None, selected: Any, *,
                        make_zip: bool) -> list[str]:
    """A1111's Save / Zip: write the selected image (or every image when `save_selected_only` is
    off or nothing is selected) into `outdir_save` with its infotext, add a log.csv line per
    image, and return the files to offer for download (the zip alone for Zip)."""
    options = ctx.options
    gallery = list(gallery or [])
    info = _info(generation_info)
    if not gallery:
        return []
    save_dir = ctx.paths.resolve_output(options.get("outdir_save") or "log/images")
    save_dir.mkdir(parents=True, exist_ok=True)
    chosen_one = selected is not None and options.get("save_selected_only")
    indexes = [pick_index(len(gallery), selected)] if chosen_one else range(len(gallery))
    infotexts = info.get("infotexts") or []
    seeds = info.get("all_seeds") or [info.get("seed")]
    first_image = int(info.get("index_of_first_image") or 0)
    saved: list[str] = []
    for index in indexes:
        image = open_gallery_entry(gallery[index])
        if image is None:
            continue
        image_no = max(0, index - first_image)
        seed = seeds[image_no] if image_no < len(seeds) else info.get("seed")
        infotext = infotexts[index] if index < len(infotexts) else None
        file_path, _ = save_image(
            image, save_dir, seed=seed, prompt=info.get("prompt"),
            extension=options.get("samples_format") or "png", infotext=infotext,
            jpeg_quality=options.get("jpeg_quality"),
            filename_pattern=options.get("samples_filename_pattern") or "[seed]",
            dir_pattern=(options.get("directories_filename_pattern")
                         if options.get("use_save_to_dirs_for_ui") else None))
        saved.append(file_path)
        _append_log_row(save_dir / "log.csv", info, seed, Path(file_path).name)
    if make_zip and saved:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        zip_path = save_dir / f"images_{stamp}.zip"
        with zipfile.ZipFile(zip_path, "w") as archive:
            for file_path in saved:
                archive.write(file_path, arcname=Path(file_path).name)
        return [str(zip_path)]
    return saved


def _append_log_row(csv_path: Path, info: dict[str, Any], seed: Any, filename: str) -> None:
    new_file = not csv_path.exists()
    with open(csv_path, "a", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(LOG_CSV_FIELDS)
        writer.writerow([info.get("prompt"), seed, info.get("width"), info.get("height"),
                         info.get("sampler_name"), info.get("cfg_scale"), info.get("steps"),
                         filename, info.get("negative_prompt"), info.get("sd_model_name"),
                         info.get("sd_model_hash")])


def open_folder_message(folder: Path, *, hidden: bool) -> str:
    """Open `folder` in the desktop's file manager (the server is the user's own machine);
    returns what to tell the user when that is not possible, or ""."""
    if hidden:
        return "Opening folders is disabled on this server (--hide-ui-dir-config)."
    if not folder.is_dir():
        return f'Folder "{folder}" does not exist yet: it is created when the first image is saved.'
    if sys.platform == "win32":
        os.startfile(folder)   # type: ignore[attr-defined]  # noqa: S606 - Windows only
        return ""
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    if shutil.which(opener) is None:
        return f'Cannot open a file manager on this server; the images are in "{folder}".'
    subprocess.Popen([opener, str(folder)], stdout=subprocess.DEVNULL,  # noqa: S603
                     stderr=subprocess.DEVNULL)
    return ""


def _message_html(text: str) -> str:
    return f"<div class='gallery-message'>{html.escape(text)}</div>" if text else ""


def gallery_tools(ctx: "AppContext", tab_id: str, results: "ResultPanel",
                  send_to: "SendToRegistry | None") -> GalleryTools:
    """Build the row (in the current layout, under the gallery) and wire it."""
    selected_index = gr.Number(value=None, visible=False, elem_id=f"{tab_id}_selected_index")
    folders_hidden = bool(getattr(ctx.args, "hide_ui_dir_config", False))
    with gr.Row(elem_id=f"image_buttons_{tab_id}", elem_classes=["image-buttons"]):
        open_folder = gr.Button(OPEN_FOLDER_SYMBOL, elem_id=f"{tab_id}_open_folder", size="sm",
                                min_width=40, visible=not folders_hidden)
        save = gr.Button("Save", elem_id=f"save_{tab_id}", size="sm")
        save_zip = gr.Button("Zip", elem_id=f"save_zip_{tab_id}", size="sm")
        if send_to is not None:
            send_to.add_source(f"{tab_id}_gallery", [results.gallery, results.generation_info,
                                                     selected_index],
                               selected_image_and_infotext, GALLERY_SEND_TARGETS)
    download = gr.File(None, file_count="multiple", interactive=False, visible=False,
                       elem_id=f"download_files_{tab_id}", label="Saved files")
    message = gr.HTML(elem_id=f"gallery_message_{tab_id}")
    tools = GalleryTools(selected_index, open_folder, save, save_zip, download, message)
    _wire(ctx, tab_id, results, tools, folders_hidden=folders_hidden)
    return tools


def _wire(ctx: "AppContext", tab_id: str, results: "ResultPanel", tools: GalleryTools, *,
          folders_hidden: bool) -> None:
    def on_select(event: gr.SelectData) -> int:
        return int(event.index)

    def on_save(gallery: Any, generation_info: str, selected: Any, make_zip: bool) -> tuple:
        try:
            files = save_gallery_images(ctx, gallery, generation_info, selected,
                                        make_zip=make_zip)
        except OSError as error:
            return gr.update(visible=False), _message_html(f"Could not save: {error}")
        if not files:
            return gr.update(visible=False), _message_html("There is no image to save.")
        names = ", ".join(Path(f).name for f in files)
        return gr.update(value=files, visible=True), _message_html(f"Saved: {names}")

    def on_open_folder() -> str:
        folder = output_folder(ctx.options, ctx.paths, tab_id)
        return _message_html(open_folder_message(folder, hidden=folders_hidden))

    results.gallery.select(on_select, outputs=[tools.selected_index], show_progress="hidden",
                           api_visibility="private", queue=False)
    # a new result replaces the images: nothing is selected any more
    results.gallery.change(lambda: None, outputs=[tools.selected_index], show_progress="hidden",
                           api_visibility="private", queue=False)
    inputs = [results.gallery, results.generation_info, tools.selected_index]
    tools.save.click(lambda g, i, s: on_save(g, i, s, False), inputs=inputs,
                     outputs=[tools.download, tools.message], api_visibility="private")
    tools.save_zip.click(lambda g, i, s: on_save(g, i, s, True), inputs=inputs,
                         outputs=[tools.download, tools.message], api_visibility="private")
    tools.open_folder.click(on_open_folder, outputs=[tools.message], show_progress="hidden",
                            api_visibility="private", queue=False)
