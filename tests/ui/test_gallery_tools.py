"""The row under the result galleries: Save / Zip write the chosen images with their infotext and
a log.csv line, Send to passes the selected image with its own infotext, 📂 explains itself when it
cannot open a folder."""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from modules.processing.images import read_info_from_image
from modules.ui.gallery_tools import open_folder_message, save_gallery_images, \
    selected_image_and_infotext
from tests.ui.conftest import app_context


@pytest.fixture()
def ctx(tmp_path):
    with app_context(tmp_path / "data") as context:
        yield context


def gallery_of(tmp_path: Path, colours: list[tuple[int, int, int]]) -> list[tuple[str, None]]:
    """A gallery value as Gradio passes it to a handler: (file path, caption) pairs."""
    entries = []
    for number, colour in enumerate(colours):
        path = tmp_path / f"gallery-{number}.png"
        Image.new("RGB", (32, 24), colour).save(path)
        entries.append((str(path), None))
    return entries


def generation_info(count: int) -> str:
    return json.dumps({
        "prompt": "a cat", "negative_prompt": "dog", "seed": 100,
        "all_seeds": [100 + i for i in range(count)],
        "width": 32, "height": 24, "sampler_name": "Euler", "cfg_scale": 7.0, "steps": 5,
        "sd_model_name": "tiny", "sd_model_hash": "0123456789", "index_of_first_image": 0,
        "infotexts": [f"a cat\nSteps: 5, Seed: {100 + i}" for i in range(count)]})


def test_send_to_takes_the_selected_image_and_its_own_infotext(tmp_path):
    gallery = gallery_of(tmp_path, [(255, 0, 0), (0, 0, 255)])
    image, infotext = selected_image_and_infotext(gallery, generation_info(2), 1)
    assert image.size == (32, 24) and image.getpixel((0, 0)) == (0, 0, 255)
    assert infotext.endswith("Seed: 101")
    # nothing selected (or an index from an older result): the first image
    image, infotext = selected_image_and_infotext(gallery, generation_info(2), None)
    assert image.getpixel((0, 0)) == (255, 0, 0) and infotext.endswith("Seed: 100")
    assert selected_image_and_infotext(gallery, generation_info(2), 7)[1].endswith("Seed: 100")
    assert selected_image_and_infotext([], "", None) == (None, "")


def test_save_writes_the_selected_image_with_infotext_and_a_log_line(ctx, tmp_path):
    gallery = gallery_of(tmp_path, [(255, 0, 0), (0, 0, 255)])
    files = save_gallery_images(ctx, gallery, generation_info(2), 1, make_zip=False)
    assert len(files) == 1
    saved = Path(files[0])
    assert saved.parent == ctx.paths.data_dir / "log" / "images"
    assert saved.name.endswith("-101.png")
    with Image.open(saved) as image:
        assert image.getpixel((0, 0)) == (0, 0, 255)
        assert read_info_from_image(image)[0] == "a cat\nSteps: 5, Seed: 101"
    rows = list(csv.reader((saved.parent / "log.csv").open(encoding="utf-8")))
    assert rows[0][:3] == ["prompt", "seed", "width"]
    assert rows[1][:2] == ["a cat", "101"] and rows[1][7] == saved.name


def test_save_without_a_selection_saves_all_and_zip_packs_them(ctx, tmp_path):
    gallery = gallery_of(tmp_path, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    assert len(save_gallery_images(ctx, gallery, generation_info(3), None, make_zip=False)) == 3
    [archive] = save_gallery_images(ctx, gallery, generation_info(3), None, make_zip=True)
    assert archive.endswith(".zip")
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
    assert len(names) == 3 and all(name.endswith(".png") for name in names)
    log_lines = (ctx.paths.data_dir / "log" / "images" / "log.csv").read_text().splitlines()
    assert len(log_lines) == 1 + 6     # header + three Save + three Zip
    assert save_gallery_images(ctx, [], "", None, make_zip=True) == []


def test_open_folder_explains_what_it_cannot_do(tmp_path):
    missing = tmp_path / "not-yet"
    assert "does not exist yet" in open_folder_message(missing, hidden=False)
    assert "--hide-ui-dir-config" in open_folder_message(tmp_path, hidden=True)


def test_result_galleries_get_send_to_buttons(ctx):
    from modules.ui.app import build_ui
    from modules.ui.send_to import SendToRegistry
    registry = SendToRegistry()
    blocks = build_ui(ctx, send_to=registry)
    by_elem = {block.elem_id: block for block in blocks.blocks.values()
               if getattr(block, "elem_id", None)}
    for tab in ("txt2img", "img2img"):
        for target in ("img2img", "inpaint", "extras"):
            assert f"{tab}_gallery_send_to_{target}" in by_elem
        assert by_elem[f"save_{tab}"].value == "Save"
        assert by_elem[f"save_zip_{tab}"].value == "Zip"


def test_images_sent_between_tabs_stay_lossless(ctx):
    """Gradio's default transport format (WEBP) is lossy: a picture sent to inpaint would come
    back with changed pixels outside the mask. Every image input uses PNG."""
    from modules.ui.app import build_ui
    blocks = build_ui(ctx)
    by_elem = {block.elem_id: block for block in blocks.blocks.values()
               if getattr(block, "elem_id", None)}
    for elem_id in ("img2img_image", "img2img_sketch", "img2maskimg", "inpaint_sketch",
                    "img_inpaint_base", "img_inpaint_mask", "extras_image", "pnginfo_image"):
        assert by_elem[elem_id].format == "png", elem_id
