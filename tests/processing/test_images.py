"""Saving images with A1111 names and metadata, grids, base64, reading infotext back."""
import base64
import io
import json
from datetime import datetime

import pytest
from PIL import Image, PngImagePlugin

from modules.processing.images import (FilenameGenerator, decode_base64_to_image,
                                       encode_image_to_base64, image_grid, read_info_from_image,
                                       save_image, write_params_txt)

INFOTEXT = ("a cat, 猫 \"quoted\"\nNegative prompt: blurry\n"
            "Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 1234, Size: 16x8")


def _image(color=(200, 30, 30), size=(16, 8)):
    return Image.new("RGB", size, color)


def test_counter_and_default_pattern(tmp_path):
    first, _ = save_image(_image(), tmp_path, seed=1234, dir_pattern=None)
    second, _ = save_image(_image(), tmp_path, seed=1235, dir_pattern=None)
    assert first.endswith("/00000-1234.png") and second.endswith("/00001-1235.png")
    (tmp_path / "00041-999.png").write_bytes(b"")
    (tmp_path / "notes-7.txt").write_bytes(b"")          # no number prefix: ignored
    third, _ = save_image(_image(), tmp_path, seed=5, dir_pattern=None)
    assert third.endswith("/00042-5.png")
    assert not list(tmp_path.glob("*.tmp"))


def test_date_directory_and_grid_names(tmp_path):
    path, _ = save_image(_image(), tmp_path, seed=7)
    today = datetime.now().strftime("%Y-%m-%d")
    assert path == str(tmp_path / today / "00000-7.png")
    grid1, _ = save_image(_image(), tmp_path, basename="grid", seed=7, filename_pattern="",
                          dir_pattern=None)
    grid2, _ = save_image(_image(), tmp_path, basename="grid", seed=7, short_filename=True,
                          dir_pattern=None)
    assert grid1.endswith("/grid-0000.png") and grid2.endswith("/grid-0001.png")


def test_filename_pattern_tags_and_sanitising(tmp_path):
    context = {"steps": 20, "cfg": 7.5, "width": 512, "height": 768, "sampler": "DPM++ 2M",
               "model_name": "sub/evil:name", "model_hash": "0123456789", "styles": ["A", "B"],
               "job_timestamp": "20240801120000", "batch_number": 2}
    path, _ = save_image(
        _image(), tmp_path, seed=42, prompt='a photo, of: "cat"!  big/small',
        filename_pattern="[seed]-[steps]-[cfg]-[width]x[height]-[sampler]-[model_name]-"
                         "[prompt_words]-[styles]-[job_timestamp]-[batch_number]-[unknown_tag]",
        dir_pattern="[model_hash]", namegen_context=context)
    name = path.rsplit("/", 1)[1]
    assert path.startswith(str(tmp_path / "0123456789") + "/")
    assert name == ("00000-42-20-7.5-512x768-DPM++ 2M-sub_evil_name-a photo of cat big small-"
                    "A, B-20240801120000-2-[unknown_tag].png")


def test_filename_generator_prompt_forms():
    gen = FilenameGenerator({"prompt": "Hello, World: a/b", "seed": 3}, max_prompt_words=2,
                            now=datetime(2024, 5, 6, 7, 8, 9))
    assert gen.apply("[prompt]") == "Hello,_World__a_b"
    assert gen.apply("[prompt_spaces]") == "Hello, World_ a_b"
    assert gen.apply("[prompt_words]") == "Hello World"
    assert gen.apply("[date]-[datetime]-[datetime<%H%M>]") == "2024-05-06-20240506070809-0708"
    assert gen.apply("x[none]y[seed]") == "xy3"
    assert FilenameGenerator({}).apply("[prompt_words]") == "empty"


@pytest.mark.parametrize("extension", ["png", "jpg", "jpeg", "webp", "gif"])
def test_metadata_is_readable_back(tmp_path, extension):
    path, _ = save_image(_image(), tmp_path, seed=1, extension=extension, infotext=INFOTEXT,
                         dir_pattern=None)
    assert path.endswith("." + extension)
    with Image.open(path) as image:
        geninfo, _ = read_info_from_image(image)
        assert geninfo == INFOTEXT
        assert image.size == (16, 8)


def test_png_uses_itxt_for_cjk_and_text_for_latin1(tmp_path):
    cjk, _ = save_image(_image(), tmp_path, seed=1, infotext=INFOTEXT, dir_pattern=None)
    latin, _ = save_image(_image(), tmp_path, seed=2, infotext="café\nSteps: 1", dir_pattern=None)
    assert b"iTXtparameters" in open(cjk, "rb").read()
    assert b"tEXtparameters" in open(latin, "rb").read()


def test_existing_info_kept_and_metadata_can_be_disabled(tmp_path):
    path, _ = save_image(_image(), tmp_path, seed=1, infotext=INFOTEXT, dir_pattern=None,
                         existing_info={"postprocessing": "Postprocess upscale by: 2"})
    with Image.open(path) as image:
        geninfo, items = read_info_from_image(image)
    assert geninfo == INFOTEXT and items["postprocessing"] == "Postprocess upscale by: 2"
    bare, _ = save_image(_image(), tmp_path, seed=1, infotext=INFOTEXT, dir_pattern=None,
                         embed_infotext=False, extension="jpg")
    with Image.open(bare) as image:
        assert read_info_from_image(image)[0] is None


def test_txt_sidecar_and_params_txt(tmp_path):
    path, txt = save_image(_image(), tmp_path, seed=1, infotext=INFOTEXT, dir_pattern=None,
                           save_txt=True)
    assert txt == path[:-4] + ".txt"
    assert open(txt, encoding="utf-8").read() == INFOTEXT + "\n"
    assert save_image(_image(), tmp_path, seed=1, infotext=INFOTEXT, dir_pattern=None)[1] is None
    write_params_txt(tmp_path / "params.txt", INFOTEXT)
    assert (tmp_path / "params.txt").read_text(encoding="utf-8") == INFOTEXT


def test_unsupported_format_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="Invalid image format"):
        save_image(_image(), tmp_path, seed=1, extension="bmp", dir_pattern=None)
    assert list(tmp_path.iterdir()) == []


def test_forced_filename_and_rgba_to_jpeg(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (0, 0, 255, 128))
    path, _ = save_image(rgba, tmp_path, forced_filename="custom", extension="jpg",
                         dir_pattern=None)
    assert path == str(tmp_path / "custom.jpg")
    with Image.open(path) as image:
        assert image.mode == "RGB"


@pytest.mark.parametrize("count, rows, batch_size, grid_size", [
    (4, -1, 1, (32, 16)),       # 2 x 2
    (3, -1, 1, (32, 16)),       # round(sqrt 3) = 2 rows, 2 cols
    (5, None, 1, (48, 16)),     # 2 rows, 3 cols
    (6, 0, 3, (32, 24)),        # rows = batch size 3 → 2 cols
    (3, 1, 1, (48, 8)),         # one row
    (2, 9, 1, (16, 16)),        # rows capped at the image count
])
def test_grid_sizes(count, rows, batch_size, grid_size):
    grid = image_grid([_image() for _ in range(count)], rows=rows, batch_size=batch_size)
    assert grid.size == grid_size


def test_grid_places_images_and_centres_smaller_ones():
    red, green = _image((255, 0, 0), (16, 8)), _image((0, 255, 0), (8, 4))
    grid = image_grid([red, green], rows=1)
    assert grid.size == (32, 8)
    assert grid.getpixel((0, 0)) == (255, 0, 0)
    assert grid.getpixel((16 + 4, 2)) == (0, 255, 0)        # centred in its cell
    assert grid.getpixel((16, 0)) == (255, 255, 255)        # background around it


def test_base64_round_trip_with_and_without_data_url():
    encoded = encode_image_to_base64(_image(), infotext=INFOTEXT)
    assert not encoded.startswith("data:")
    for text in (encoded, "data:image/png;base64," + encoded):
        decoded = decode_base64_to_image(text)
        assert decoded.size == (16, 8) and decoded.getpixel((0, 0)) == (200, 30, 30)
        assert read_info_from_image(decoded)[0] == INFOTEXT
    jpeg = decode_base64_to_image(encode_image_to_base64(_image(), fmt="jpeg", infotext="x, y"))
    assert jpeg.format == "JPEG" and read_info_from_image(jpeg)[0] == "x, y"


@pytest.mark.parametrize("bad", ["", "not base64 at all!!", base64.b64encode(b"hello").decode(),
                                 "data:image/png;base64," + base64.b64encode(b"\x89PNG..").decode()])
def test_invalid_base64_image_raises(bad):
    with pytest.raises(ValueError, match="Invalid encoded image"):
        decode_base64_to_image(bad)


def test_novelai_png_is_converted():
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "NovelAI")
    info.add_text("Description", "1girl, smile")
    info.add_text("Comment", json.dumps({"uc": "lowres", "steps": 28, "sampler": "k_euler_ancestral",
                                         "scale": 11, "seed": 99}))
    buffer = io.BytesIO()
    _image(size=(64, 32)).save(buffer, format="PNG", pnginfo=info)
    geninfo, items = read_info_from_image(Image.open(buffer))
    assert geninfo == ("1girl, smile\nNegative prompt: lowres\nSteps: 28, Sampler: Euler a, "
                       "CFG scale: 11, Seed: 99, Size: 64x32, Clip skip: 2, ENSD: 31337")
    assert items["Software"] == "NovelAI"


def test_ignored_info_keys_are_dropped():
    buffer = io.BytesIO()
    _image().save(buffer, format="JPEG", dpi=(72, 72))
    geninfo, items = read_info_from_image(Image.open(buffer))
    assert geninfo is None
    assert not {"jfif", "jfif_version", "dpi", "jfif_unit", "jfif_density"} & set(items)
