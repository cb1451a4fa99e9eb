"""The image browser's index over an outputs folder: pages, filters by prompt words, seed and
model, favourites, delete to the trash and restore, and a rescan that notices files changed
outside the app."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from modules.app.image_index import ImageIndex

WORDS = ("red cat", "blue dog", "green owl")


def write_png(path: Path, prompt: str, seed: int, model: str = "tiny", mtime: float = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    info.add_text("parameters", f"{prompt}\nNegative prompt: blurry\nSteps: 3, Seed: {seed}, "
                                f"Size: 8x8, Model: {model}")
    Image.new("RGB", (8, 8), (seed % 256, 0, 0)).save(path, pnginfo=info)
    if mtime:
        os.utime(path, (mtime, mtime))


@pytest.fixture
def index(tmp_path):
    outputs = tmp_path / "outputs"
    for number in range(300):
        folder = "txt2img-images" if number % 3 else "img2img-images"
        write_png(outputs / folder / "2026-12-03" / f"{number:05d}-{number}.png",
                  f"a {WORDS[number % 3]}", seed=number, model="tiny" if number < 200
                  else "anime-blend", mtime=1_700_000_000 + number)
    (outputs / "txt2img-images" / "notes.txt").write_text("not a picture")
    built = ImageIndex(tmp_path / "image-index.sqlite3", outputs)
    assert built.scan() == (300, 0)
    yield built
    built.close()


def test_pages_newest_first_and_filters(index):
    page = index.query(page_size=36)
    assert page.total == 300 and page.pages == 9 and len(page.items) == 36
    assert [item.seed for item in page.items[:3]] == [299, 298, 297]
    last = index.query(page=9, page_size=36)
    assert len(last.items) == 300 - 8 * 36 and last.items[-1].seed == 0
    owls = index.query(text="owl", page_size=500)
    assert owls.total == 100 and all("green owl" in item.prompt for item in owls.items)
    assert index.query(text="green owl").total == 100 and index.query(text="owl cat").total == 0
    (hit,) = index.query(seed=123).items
    assert hit.path == "img2img-images/2026-12-03/00123-123.png" and hit.prompt == "a red cat"
    assert hit.negative_prompt == "blurry" and (hit.width, hit.height) == (8, 8)
    assert index.query(model="anime").total == 100
    assert index.query(folder="img2img-images").total == 100
    assert index.folders() == ["img2img-images", "txt2img-images"]
    assert index.query(text="100%").total == 0        # LIKE wildcards are taken literally


def test_favourites_delete_to_trash_and_restore(index, tmp_path):
    outputs = tmp_path / "outputs"
    path = "txt2img-images/2026-12-03/00007-7.png"
    (outputs / path).with_suffix(".txt").write_text("sidecar")
    index.set_favourite(path, True)
    assert [item.seed for item in index.query(favourites=True).items] == [7]
    trashed = index.delete(path)
    assert not (outputs / path).exists() and (outputs / ".trash" / trashed).is_file()
    assert (outputs / ".trash" / trashed).with_suffix(".txt").read_text() == "sidecar"
    assert index.query(seed=7).total == 0 and index.query().total == 299
    assert index.scan() == (0, 0)                      # the trash is not indexed
    assert index.trashed() == [(trashed, path)]
    assert index.restore(trashed) == path
    assert (outputs / path).is_file() and (outputs / path).with_suffix(".txt").is_file()
    assert index.query(seed=7).items[0].favourite and index.trashed() == []
    with pytest.raises(ValueError):
        index.delete("../../etc/passwd")
    with pytest.raises(FileNotFoundError):
        index.restore("nothing.png")


def test_a_rescan_sees_what_changed_outside(index, tmp_path):
    outputs = tmp_path / "outputs"
    (outputs / "txt2img-images" / "2026-12-03" / "00001-1.png").unlink()
    write_png(outputs / "extras-images" / "new.png", "a new moon", seed=5000)
    write_png(outputs / "txt2img-images" / "2026-12-03" / "00002-2.png", "a changed cat",
              seed=2, mtime=1_800_000_000)
    assert index.scan() == (2, 1)
    assert index.query().total == 300
    assert index.query(text="moon").items[0].folder == "extras-images"
    assert index.query(seed=2).items[0].prompt == "a changed cat"
