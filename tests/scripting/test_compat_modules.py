"""The module names A1111 extensions import resolve, with the app bound, to working views:
shared (opts.add_option with A1111's OptionInfo, cmd_opts, state, sd_model, device),
processing, images, sd_samplers, sd_models, errors, devices, paths, ui_components,
script_callbacks (every on_* of a1111-compat §8.4)."""
from __future__ import annotations

import logging

import gradio as gr
import pytest
from PIL import Image

from modules.scripting.callbacks import CALLBACK_KINDS
from tests.ui.conftest import app_context


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with app_context(tmp_path_factory.mktemp("compat"), tiny_checkpoint=True) as context:
        yield context


def test_shared_settings_flags_state_and_model(app):
    from modules import shared
    assert shared.opts is app.options and shared.cmd_opts is app.args
    shared.opts.add_option("my_ext_strength", shared.OptionInfo(
        0.5, "Strength", gr.Slider, {"minimum": 0, "maximum": 1, "step": 0.1},
        section=("my-ext", "My extension")).info("how strong").needs_reload_ui())
    info = app.options.info("my_ext_strength")
    assert info.component == "slider" and info.section == ("my-ext", "My extension")
    assert "how strong" in info.comment and "Reload UI" in info.comment
    assert shared.opts.my_ext_strength == 0.5
    shared.opts.my_ext_strength = 0.8
    assert app.options.get("my_ext_strength") == 0.8
    assert shared.state.interrupted is False and shared.state.job_count == 0
    assert shared.sd_model is None
    app.model_manager.get("tiny-sd1")
    assert shared.sd_model is app.model_manager.current().model
    assert shared.device.type == "cpu"


def test_processing_objects_take_a1111_constructor_arguments(app):
    from modules import processing, shared
    p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=shared.sd_model, outpath_samples="out", prompt="a cat", steps=2, width=64,
        height=64, do_not_save_samples=True, do_not_save_grid=True)
    assert (p.prompt, p.steps, p.outpath_samples, p.all_prompts) == ("a cat", 2, "out", None)
    assert isinstance(processing.StableDiffusionProcessingImg2Img(
        init_images=[Image.new("RGB", (8, 8))], image_mask=None), processing.StableDiffusionProcessing)
    with pytest.raises(RuntimeError, match="inside a generation job"):
        processing.process_images(p)


def test_images_save_and_grid(app, tmp_path):
    from modules import images, script_callbacks
    seen = []
    script_callbacks.on_image_saved(lambda params: seen.append(params.filename))
    path, text_path = images.save_image(Image.new("RGB", (16, 16), (255, 0, 0)), str(tmp_path),
                                        "", seed=7, prompt="red", info="red\nSeed: 7")
    assert Image.open(path).info["parameters"] == "red\nSeed: 7" and seen == [path]
    grid = images.image_grid([Image.new("RGB", (16, 16))] * 4, rows=2)
    assert grid.size == (32, 32)


def test_samplers_models_errors_devices_paths(app, caplog):
    from modules import devices, errors, paths, sd_models, sd_samplers
    assert sd_samplers.samplers_map["euler a"] == "Euler a"
    assert sd_samplers.find_sampler_config("k_euler").name == "Euler"
    assert [s.name for s in sd_samplers.samplers][:1] == ["DPM++ 2M"]
    assert list(sd_models.checkpoints_list)[0].startswith("tiny-sd1.safetensors")
    assert sd_models.get_closest_checkpoint_match("tiny-sd1").model_name == "tiny-sd1"
    with caplog.at_level(logging.ERROR):
        try:
            raise ValueError("bad thing")
        except ValueError:
            errors.report("my extension failed", exc_info=True)
    assert "my extension failed" in caplog.text and "ValueError: bad thing" in caplog.text
    assert devices.device.type == "cpu" and devices.dtype_vae is not None
    assert paths.models_path == str(app.paths.models_dir)


def test_ui_components_and_every_callback_name():
    from modules import script_callbacks, ui_components
    with gr.Blocks():
        with ui_components.InputAccordion(True, label="Extra") as enabled:
            gr.Slider(1, 2, value=1, label="inside")
        with ui_components.FormRow():
            ui_components.ToolButton("↻")
    assert enabled.value is True and isinstance(enabled.accordion, gr.Accordion)
    for kind in CALLBACK_KINDS:
        assert callable(getattr(script_callbacks, f"on_{kind}"))


def test_call_queue_runs_a_handler_as_a_job_and_nested_ones_directly(app, tmp_path):
    from modules import call_queue, paths, shared
    seen = []

    def inner(value):
        seen.append(("inner", app.jobs.current().kind if app.jobs.current() else None))
        return value * 2

    def outer(value):
        seen.append(("outer", app.jobs.current().kind))
        return call_queue.wrap_gradio_gpu_call(inner)(value) + 1   # no wait on itself

    assert call_queue.wrap_gradio_gpu_call(outer)(20) == 41
    assert seen == [("outer", "extension"), ("inner", "extension")]
    assert shared.interrogator is app.interrogators
    assert paths.allowed_folder("outputs", "Folder") == (app.paths.data_dir / "outputs").resolve()
    with pytest.raises(ValueError, match="outside the allowed folders"):
        paths.allowed_folder(str(tmp_path), "Folder")
