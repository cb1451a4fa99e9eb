"""SDXL refiner on the tiny checkpoints: the switch, its infotext, and the base coming back."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from modules.processing.context import UnsupportedRequestError
from modules.processing.infotext import parse_generation_parameters
from tests.engine.tiny_checkpoints import write_tiny_checkpoint
from tests.integration.conftest import generate


@pytest.fixture(scope="module")
def refiners(app_ctx, tiny_data_dir):
    """A tiny refiner and an exact copy of the tiny SDXL base (a 'refiner' with the base's
    weights), removed again afterwards so other tests see the usual checkpoint list."""
    folder = tiny_data_dir / "models" / "Stable-diffusion"
    refiner = write_tiny_checkpoint(folder / "tiny-sdxl_refiner.safetensors", "sdxl_refiner",
                                    seed=2)
    twin = folder / "tiny-sdxl-twin.safetensors"
    shutil.copyfile(folder / "tiny-sdxl.safetensors", twin)
    app_ctx.checkpoints.refresh()
    yield
    refiner.unlink()
    twin.unlink()
    app_ctx.checkpoints.refresh()


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def test_refiner_changes_the_image_writes_keys_and_the_base_comes_back(app_ctx, refiners):
    common = dict(prompt="a castle", negative_prompt="blurry", seed=11, steps=6)
    before = generate(app_ctx, "tiny-sdxl", **common)
    refined = generate(app_ctx, "tiny-sdxl", refiner_checkpoint="tiny-sdxl_refiner",
                       refiner_switch_at=0.5, **common)
    after = generate(app_ctx, "tiny-sdxl", **common)

    assert refined.images[0].size == (64, 64)
    assert np.abs(_pixels(before.images[0]) - _pixels(refined.images[0])).max() > 1
    parsed = parse_generation_parameters(refined.infotexts[0])
    assert parsed["Refiner"].startswith("tiny-sdxl_refiner [")
    assert parsed["Refiner switch at"] == "0.5"
    assert parsed["Model"] == "tiny-sdxl"
    # the next plain job reloads the base and gives the image it gave before
    assert np.array_equal(_pixels(before.images[0]), _pixels(after.images[0]))
    assert "Refiner" not in after.infotexts[0]


def test_base_is_used_again_for_the_next_batch(app_ctx, refiners):
    common = dict(prompt="a castle", seed=11, steps=4, n_iter=2, do_not_save_grid=True)
    refined = generate(app_ctx, "tiny-sdxl", refiner_checkpoint="tiny-sdxl_refiner",
                       refiner_switch_at=0.5, **common)
    single = generate(app_ctx, "tiny-sdxl", refiner_checkpoint="tiny-sdxl_refiner",
                      refiner_switch_at=0.5, prompt="a castle", seed=12, steps=4)
    # the second batch (seed 12) is what a job of its own gives
    assert np.abs(_pixels(refined.images[1]) - _pixels(single.images[0])).max() <= 1


def test_switching_to_a_copy_of_the_base_continues_the_same_denoising(app_ctx, refiners):
    """The split is exact: handing over to identical weights gives the unsplit result."""
    common = dict(prompt="a castle", seed=21, steps=6, sampler_name="Euler")
    plain = generate(app_ctx, "tiny-sdxl", **common)
    split = generate(app_ctx, "tiny-sdxl", refiner_checkpoint="tiny-sdxl-twin",
                     refiner_switch_at=0.4, **common)
    assert "Refiner: tiny-sdxl-twin" in split.infotexts[0]
    assert np.abs(_pixels(plain.images[0]) - _pixels(split.images[0])).max() <= 2


def test_switch_at_one_never_switches(app_ctx, refiners):
    common = dict(prompt="a castle", seed=11, steps=4)
    plain = generate(app_ctx, "tiny-sdxl", **common)
    never = generate(app_ctx, "tiny-sdxl", refiner_checkpoint="tiny-sdxl_refiner",
                     refiner_switch_at=1.0, **common)
    assert np.array_equal(_pixels(plain.images[0]), _pixels(never.images[0]))
    assert "Refiner" not in never.infotexts[0]


def test_refiner_in_the_hires_pass(app_ctx, refiners):
    processed = generate(app_ctx, "tiny-sdxl", prompt="a castle", seed=11, steps=4,
                         enable_hr=True, hr_scale=1.5, refiner_checkpoint="tiny-sdxl_refiner",
                         refiner_switch_at=0.5)
    assert processed.images[0].size == (96, 96)
    parsed = parse_generation_parameters(processed.infotexts[0])
    assert parsed["Refiner"].startswith("tiny-sdxl_refiner")
    assert "Hires refiner" not in parsed          # "second pass" is the default


def test_off_values_and_unknown_names(app_ctx, refiners):
    plain = generate(app_ctx, "tiny-sdxl", prompt="a castle", seed=11, steps=2)
    for off in ("None", ""):
        same = generate(app_ctx, "tiny-sdxl", prompt="a castle", seed=11, steps=2,
                        refiner_checkpoint=off, refiner_switch_at=0.5)
        assert np.array_equal(_pixels(plain.images[0]), _pixels(same.images[0]))
    with pytest.raises(UnsupportedRequestError, match="no-such-refiner"):
        generate(app_ctx, "tiny-sdxl", prompt="a castle", refiner_checkpoint="no-such-refiner",
                 refiner_switch_at=0.5)
