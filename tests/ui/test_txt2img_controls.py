"""The txt2img tab's "Hires. fix" and "Refiner" accordions reach GenerationParams: through the
conversion functions and through the Generate event as the built UI wires it."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from PIL import Image

from modules.ui.common import refiner_fields
from modules.ui.txt2img_tab import TXT2IMG_INPUT_NAMES, hires_fields, \
    hires_upscaler_names, params_from_ui

ROOT = Path(__file__).resolve().parents[2]


class CapturingRunner:
    """Records the request and answers with one image of the requested size."""

    def __init__(self) -> None:
        self.params = []

    def __call__(self, params, processing_context):
        self.params.append(params)
        image = Image.new("RGB", (params.width, params.height), (1, 2, 3))
        return SimpleNamespace(images=[image], infotexts=["a prompt\nSteps: 3"],
                               js=lambda: json.dumps({"seed": params.seed}))


def test_hires_and_refiner_values_become_request_fields():
    values = dict(zip(TXT2IMG_INPUT_NAMES, (
        "a cat", "blurry", "Euler a", "Karras", 12.0, 6.5, 320.0, 256.0, 42.0, 2.0, 1.0,
        True, "Latent (nearest)", 7.0, 0.45, 1.5, 0.0, 640.0, "other [abc]", "DPM++ 2M",
        "Use same scheduler", "a dog", "",
        True, "refiner [123]", 0.7)))
    params = params_from_ui(values)
    assert (params.prompt, params.sampler_name, params.scheduler) == ("a cat", "Euler a", "Karras")
    assert (params.steps, params.width, params.height, params.n_iter) == (12, 320, 256, 2)
    assert params.enable_hr is True and params.hr_upscaler == "Latent (nearest)"
    assert (params.hr_second_pass_steps, params.denoising_strength, params.hr_scale) == \
        (7, 0.45, 1.5)
    assert (params.hr_resize_x, params.hr_resize_y) == (0, 640)
    assert params.hr_checkpoint_name == "other [abc]" and params.hr_sampler_name == "DPM++ 2M"
    assert params.hr_scheduler is None          # "Use same scheduler"
    assert (params.hr_prompt, params.hr_negative_prompt) == ("a dog", "")
    assert (params.refiner_checkpoint, params.refiner_switch_at) == ("refiner [123]", 0.7)


def test_same_choices_and_disabled_refiner_send_nothing():
    fields = hires_fields(False, None, 0, 0.7, 2.0, 0, 0, "Use same checkpoint",
                          "Use same sampler", "Use same scheduler", "", "")
    assert fields["enable_hr"] is False and fields["hr_upscaler"] == "Latent"
    assert fields["hr_checkpoint_name"] is None and fields["hr_sampler_name"] is None
    assert refiner_fields(False, "refiner [123]", 0.8) == {"refiner_checkpoint": None,
                                                          "refiner_switch_at": None}
    assert refiner_fields(True, "None", 0.8)["refiner_checkpoint"] is None


def test_upscaler_dropdown_lists_latent_modes_and_pixel_upscalers():
    names = hires_upscaler_names()
    latent_modes = ["Latent", "Latent (antialiased)", "Latent (bicubic)",
                    "Latent (bicubic antialiased)", "Latent (nearest)", "Latent (nearest-exact)"]
    assert names[:len(latent_modes)] == latent_modes
    assert {"Lanczos", "Nearest"} <= set(names)


def test_generate_event_of_the_built_ui_passes_the_accordion_values(ctx):
    from modules.ui.app import build_ui
    runner = CapturingRunner()
    blocks = build_ui(ctx, txt2img_runner=runner)
    event = next(fn for fn in blocks.fns.values() if fn.api_name == "txt2img")
    labels = [getattr(component, "label", None) for component in event.inputs]
    values = [component.value for component in event.inputs]
    changes = {"Prompt": "a castle", "Enable hires. fix": True, "Hires steps": 5,
               "Upscale by": 1.25, "Hires prompt": "a big castle", "Enable refiner": True,
               "Switch at": 0.6, "Width": 64, "Height": 48}
    for label, value in changes.items():
        values[labels.index(label)] = value
    checkpoint_index = labels.index("Checkpoint")
    values[checkpoint_index] = "some-refiner [0123456789]"

    updates = list(event.fn(*values))
    images, info, info_html, error_html, task_id, bar, preview = updates[-1]
    assert error_html == "" and [image.size for image in images] == [(64, 48)]
    params = runner.params[0]
    assert params.prompt == "a castle" and params.enable_hr is True
    assert (params.hr_second_pass_steps, params.hr_scale, params.hr_prompt) == \
        (5, 1.25, "a big castle")
    assert params.hr_upscaler == "Latent" and params.denoising_strength == 0.7
    assert (params.refiner_checkpoint, params.refiner_switch_at) == \
        ("some-refiner [0123456789]", 0.6)
    assert task_id.startswith("task(txt2img-")
