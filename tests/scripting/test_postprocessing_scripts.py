"""Postprocessing scripts (scripts_postprocessing.ScriptPostprocessing) from an extension run in
the Extras pipeline: after the upscale, with their UI defaults through the API and with the
values set in the Extras tab's controls through the UI; a script that raises is named and the
image still comes back."""
from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.app import create_api_app
from modules.processing.images import read_info_from_image
from modules.ui.extras_tab import EXTRAS_INPUT_NAMES
from tests.ui.conftest import app_context

EXTENSION = Path(__file__).resolve().parents[1] / "extensions" / "sd-unit-reader"
BLUE = (0, 0, 255)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    data = tmp_path_factory.mktemp("postprocessing-scripts")
    shutil.copytree(EXTENSION, data / "extensions" / EXTENSION.name)
    with app_context(data) as context:
        yield context


def encoded(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decoded(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_the_script_runs_after_the_upscale_with_its_defaults_in_the_api(ctx):
    assert [script.name for script in ctx.scripts.postprocessing.scripts] == ["Frame"]
    client = TestClient(create_api_app(ctx))
    answer = client.post("/sdapi/v1/extra-single-image", json={
        "image": encoded(Image.new("RGB", (16, 16), BLUE)), "upscaling_resize": 2,
        "upscaler_1": "Nearest"})
    assert answer.status_code == 200, answer.text
    image = decoded(answer.json()["image"])
    pixels = np.asarray(image.convert("RGB"))
    assert image.size == (32, 32)
    assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[1, 16].tolist() == [255, 0, 0]
    assert pixels[2, 16].tolist() == list(BLUE)            # a 2 px frame (the default)
    assert "Frame: 2" in answer.json()["html_info"]
    assert "Frame: 2" in read_info_from_image(image)[1]["postprocessing"]


def _extras_submit(blocks):
    button = next(b for b in blocks.blocks.values()
                  if getattr(b, "elem_id", None) == "extras_generate")
    for index, dependency in enumerate(blocks.config["dependencies"]):
        if any(target[0] == button._id for target in dependency["targets"]):
            by_id = {block._id: block for block in blocks.blocks.values()}
            return [by_id[i] for i in dependency["inputs"]], blocks.fns[index].fn
    raise AssertionError("no Generate event in Extras")


def run_tab(ctx, image, **frame):
    """Generate in the Extras tab with the frame controls set to `frame`."""
    from modules.ui.app import build_ui
    inputs, submit = _extras_submit(build_ui(ctx))
    base = dict(mode=0, image=image, image_files=None, input_dir="", output_dir="",
                show_results=True, resize_mode=0, upscaling_resize=1.0, upscaling_resize_w=512,
                upscaling_resize_h=512, upscaling_crop=True, upscaler_1="None",
                upscaler_2="None", extras_upscaler_2_visibility=0.0, gfpgan_visibility=0.0,
                codeformer_visibility=0.0, codeformer_weight=0.0, upscale_first=False)
    script_values = {f"extras_frame_{key}": value for key, value in frame.items()}
    values = [base[name] for name in EXTRAS_INPUT_NAMES]
    values += [script_values.get(control.elem_id, control.value)
               for control in inputs[len(EXTRAS_INPUT_NAMES):]]
    assert [control.elem_id for control in inputs[len(EXTRAS_INPUT_NAMES):]] == \
        ["extras_frame_width", "extras_frame_color", "extras_frame_copy"]
    return submit(*values)


def test_the_tab_passes_the_scripts_controls_and_shows_extra_images(ctx):
    images, html_info, error_html = run_tab(ctx, Image.new("RGB", (20, 20), BLUE),
                                            width=4, color="#00ff00", copy=True)
    assert error_html == ""
    framed, plain = (np.asarray(image.convert("RGB")) for image in images)
    assert framed[3, 10].tolist() == [0, 255, 0] and framed[4, 10].tolist() == list(BLUE)
    assert (plain == np.array(BLUE)).all()
    assert "Frame: 4" in html_info


def test_a_failing_script_is_named_and_the_image_still_comes_back(ctx):
    images, _, error_html = run_tab(ctx, Image.new("RGB", (20, 20), BLUE), color="fail")
    assert "Postprocessing script &#x27;Frame&#x27; failed in process(): ValueError: asked " \
           "to fail" in error_html
    assert len(images) == 1 and (np.asarray(images[0]) == np.array(BLUE)).all()
    images, _, error_html = run_tab(ctx, Image.new("RGB", (20, 20), BLUE))
    assert error_html == "" and np.asarray(images[0])[0, 0].tolist() == [255, 0, 0]
