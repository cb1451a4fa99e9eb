"""The Extras tab driven through its function: sizes and pixels of single images and folder
batches, metadata kept, saved files, and the face-restorer message."""
from __future__ import annotations

import html

from pathlib import Path

import numpy as np
from PIL import Image

from modules.processing.images import read_info_from_image, write_image
from modules.ui.extras_tab import BATCH_FILES, BATCH_FOLDER, EXTRAS_INPUT_NAMES, SINGLE_IMAGE, \
    face_restorer_notice, run_extras_tab

ROOT = Path(__file__).resolve().parents[2]


def checker(width: int, height: int) -> Image.Image:
    """Black/white 1-pixel checkerboard: nearest-neighbour upscaling keeps exact values."""
    grid = (np.indices((height, width)).sum(axis=0) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.stack([grid] * 3, axis=-1), "RGB")


def values(**overrides) -> dict:
    base = {name: None for name in EXTRAS_INPUT_NAMES}
    base.update(mode=SINGLE_IMAGE, resize_mode=0, upscaling_resize=2.0, upscaling_resize_w=512,
                upscaling_resize_h=512, upscaling_crop=True, upscaler_1="Nearest",
                upscaler_2="None", extras_upscaler_2_visibility=0.0, gfpgan_visibility=0.0,
                codeformer_visibility=0.0, codeformer_weight=0.0, show_results=True)
    base.update(overrides)
    return base


def extras_outputs(ctx) -> list[Path]:
    folder = ctx.paths.data_dir / "outputs" / "extras-images"
    return sorted(folder.glob("*.png")) if folder.exists() else []


def test_scale_by_doubles_size_and_keeps_pixels(ctx):
    before = len(extras_outputs(ctx))
    source = checker(16, 8)
    source.info["parameters"] = "a cat\nSteps: 5, Sampler: Euler, Seed: 3"
    result = run_extras_tab(ctx, values(image=source))
    assert result.error_html == ""
    [image] = result.images
    assert image.size == (32, 16)
    pixels = np.asarray(image)
    assert pixels[0, 0].tolist() == [0, 0, 0] and pixels[0, 2].tolist() == [255, 255, 255]
    assert pixels[0, 1].tolist() == [0, 0, 0]        # (0,1) comes from source (0,0): black
    assert "Postprocess upscale by: 2.0" in result.html_info
    assert "Postprocess upscaler: Nearest" in result.html_info
    saved = extras_outputs(ctx)
    assert len(saved) == before + 1
    with Image.open(saved[-1]) as written:
        geninfo, items = read_info_from_image(written)
        assert written.size == (32, 16)
    assert geninfo == "a cat\nSteps: 5, Sampler: Euler, Seed: 3"
    assert "Postprocess upscale by: 2.0" in items["postprocessing"]


def test_scale_to_crops_to_the_exact_size(ctx):
    result = run_extras_tab(ctx, values(image=checker(20, 20), resize_mode=1,
                                        upscaling_resize_w=80, upscaling_resize_h=40,
                                        upscaler_1="Lanczos"))
    assert result.error_html == ""
    assert [image.size for image in result.images] == [(80, 40)]
    assert "Postprocess crop to: 80x40" in result.html_info


def test_second_upscaler_is_blended_in(ctx):
    source = checker(8, 8)
    nearest = run_extras_tab(ctx, values(image=source, upscaler_1="Nearest")).images[0]
    blended = run_extras_tab(ctx, values(image=source, upscaler_1="Nearest",
                                         upscaler_2="Lanczos",
                                         extras_upscaler_2_visibility=0.5))
    assert "Postprocess upscaler 2: Lanczos" in blended.html_info
    difference = np.abs(np.asarray(blended.images[0], np.int16) - np.asarray(nearest, np.int16))
    assert difference.max() > 0


def test_batch_from_folder_saves_with_original_names(ctx, tmp_path):
    # batch folders lie inside the data folder (or a --gradio-allowed-path one)
    source_dir = ctx.paths.data_dir / f"extras-{tmp_path.name}" / "in"
    output_dir = source_dir.parent / "out"
    source_dir.mkdir(parents=True)
    checker(10, 6).save(source_dir / "first.png")
    write_image(checker(6, 10), source_dir / "second.jpg", "JPEG", infotext="a dog")
    (source_dir / "notes.txt").write_text("not an image")
    result = run_extras_tab(ctx, values(mode=BATCH_FOLDER, input_dir=str(source_dir),
                                        output_dir=str(output_dir), upscaling_resize=3.0))
    assert result.error_html == ""
    assert [image.size for image in result.images] == [(24, 16), (16, 24)]
    written = sorted(path.name for path in output_dir.iterdir())
    assert written == ["first.png", "second.png"]
    with Image.open(output_dir / "second.png") as image:
        assert read_info_from_image(image)[0] == "a dog"

    hidden = run_extras_tab(ctx, values(mode=BATCH_FOLDER, input_dir=str(source_dir),
                                        output_dir=str(output_dir), show_results=False))
    assert hidden.images == [] and hidden.error_html == ""


def test_batch_of_uploaded_files(ctx, tmp_path):
    paths = []
    for index in range(2):
        path = tmp_path / f"upload{index}.png"
        checker(8 + index * 8, 8).save(path)
        paths.append(str(path))
    result = run_extras_tab(ctx, values(mode=BATCH_FILES, image_files=paths))
    assert [image.size for image in result.images] == [(16, 16), (32, 16)]


def test_errors_are_shown_in_the_tab(ctx, tmp_path):
    assert "No image" in run_extras_tab(ctx, values(image=None)).error_html
    missing = run_extras_tab(ctx, values(mode=BATCH_FOLDER,
                                         input_dir=str(ctx.paths.data_dir / "nope")))
    assert "Input directory not found" in missing.error_html
    (tmp_path / "photo.png").write_bytes(b"")
    outside = run_extras_tab(ctx, values(mode=BATCH_FOLDER, input_dir=str(tmp_path)))
    assert "is outside the allowed folders" in outside.error_html
    assert str(tmp_path) in html.unescape(outside.error_html)
    inside = ctx.paths.data_dir / f"extras-{tmp_path.name}-src"
    inside.mkdir()
    checker(4, 4).save(inside / "a.png")
    escaping = run_extras_tab(ctx, values(mode=BATCH_FOLDER, input_dir=str(inside),
                                          output_dir=str(inside / ".." / ".." / "..")))
    assert "Output directory" in escaping.error_html and "outside" in escaping.error_html
    unknown = run_extras_tab(ctx, values(image=checker(8, 8), upscaler_1="NoSuchUpscaler"))
    assert "could not find upscaler named NoSuchUpscaler" in unknown.error_html


def test_face_restorer_sliders_say_not_installed(ctx):
    assert face_restorer_notice(ctx, 0.0, 0.0) == ""
    assert "Face restoration is not available" in face_restorer_notice(ctx, 0.0, 0.4)
    result = run_extras_tab(ctx, values(image=checker(8, 8), gfpgan_visibility=1.0))
    assert result.images == []
    assert "Face restoration is not available" in result.error_html
    assert "models/GFPGAN" in result.error_html


def test_an_upscale_above_the_server_limits_is_refused_in_the_tab(ctx):
    result = run_extras_tab(ctx, values(image=checker(4096, 8), upscaling_resize=8.0))
    assert result.images == []
    assert "upscaled size 32768x64 is above the server's limit of 16384 px" in \
        html.unescape(result.error_html)
    with ctx.options.override({"limit_upscale_factor": 4.0}):
        result = run_extras_tab(ctx, values(image=checker(8, 8), upscaling_resize=6.0))
    assert "upscaling_resize 6 is above the server's limit of 4 ×" in \
        html.unescape(result.error_html)


def test_a_scale_of_0_or_100_is_a_message_in_the_tab(ctx):
    zero = run_extras_tab(ctx, values(image=checker(8, 8), upscaling_resize=0))
    assert zero.images == [] and "upscaling_resize" in zero.error_html
    huge = run_extras_tab(ctx, values(image=checker(8, 8), upscaling_resize=100))
    assert huge.images == [] and "upscaling_resize" in huge.error_html
