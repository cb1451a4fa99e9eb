"""The cross-attention choice (setting and A1111's flags) reaches the loaded model's layers at the
next job, and the checkpoint cache (`sd_checkpoints_limit`) keeps switched-away models loaded."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from modules.app.cmd_args import parse_args
from modules.app.devices import attention_choices, choose_attention
from modules.engine.attention import ATTENTION_KERNELS
from modules.engine.checkpoint_io import CheckpointLoadError
from tests.integration.conftest import generate


@pytest.mark.parametrize("flags, setting, expected", [
    ([], "Automatic", "sdp"),
    (["--opt-sdp-attention"], "Automatic", "sdp"),
    (["--opt-sdp-no-mem-attention"], "Automatic", "sdp-no-mem"),
    (["--opt-split-attention"], "Automatic", "Doggettx"),
    (["--opt-sub-quad-attention"], "Automatic", "sub-quadratic"),
    (["--opt-split-attention-v1"], "Automatic", "V1"),
    (["--opt-split-attention-invokeai"], "Automatic", "InvokeAI"),
    (["--opt-split-attention", "--opt-sub-quad-attention"], "Automatic", "Doggettx"),
    (["--disable-opt-split-attention"], "Automatic", "None"),
    (["--opt-sub-quad-attention"], "V1", "V1"),          # a chosen setting beats the flags
    ([], "None", "None"),
])
def test_the_setting_and_the_flags_choose_the_kernel(flags, setting, expected):
    args, _ = parse_args(flags)
    assert choose_attention(setting, args) == expected


def test_xformers_without_the_package_falls_back_to_sdp():
    args, _ = parse_args(["--xformers"])
    if "xformers" in attention_choices():
        pytest.skip("xformers is installed here")
    assert choose_attention("Automatic", args) == "sdp"
    assert choose_attention("xformers", args) == "sdp"


def test_changing_the_setting_applies_at_the_next_job_without_a_reload(app_ctx):
    manager = app_ctx.model_manager
    plain = generate(app_ctx, "tiny-sd1", prompt="a red square", seed=11)
    model = manager.current().model
    with app_ctx.options.override({"cross_attention_optimization": "sub-quadratic"}):
        chunked = generate(app_ctx, "tiny-sd1", prompt="a red square", seed=11)
        assert manager.current().model is model           # the same weights, not reloaded
        layers = [m for m in model.modules() if hasattr(m, "attention_kernel")]
        assert all(m.attention_kernel is ATTENTION_KERNELS["sub-quadratic"] for m in layers)
    again = generate(app_ctx, "tiny-sd1", prompt="a red square", seed=11)
    assert all(m.attention_kernel is ATTENTION_KERNELS["sdp"] for m in layers)
    a, b = (np.asarray(p.images[0], dtype=np.int16) for p in (plain, chunked))
    # the same image up to rounding (under the CPU's bf16 default the kernels round differently)
    mse = float(np.mean((a - b).astype(np.float64) ** 2))
    assert 10 * np.log10(255 ** 2 / max(mse, 1e-12)) > 35
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(plain.images[0]))
    assert plain.infotexts == chunked.infotexts


def test_upcast_attn_wraps_the_chosen_kernel_in_float32(app_ctx):
    manager = app_ctx.model_manager
    with app_ctx.options.override({"upcast_attn": True}):
        processed = generate(app_ctx, "tiny-sd1", prompt="a red square", seed=11)
        layers = [m for m in manager.current().model.modules()
                  if hasattr(m, "attention_kernel")]
        assert all(m.attention_kernel.upcasts is ATTENTION_KERNELS["sdp"] for m in layers)
    assert processed.images[0].size == (64, 64)
    generate(app_ctx, "tiny-sd1", prompt="a red square", seed=11)
    assert all(m.attention_kernel is ATTENTION_KERNELS["sdp"] for m in layers)


def loads_counted(manager):
    loads: list[str] = []
    previous = manager.on_loaded
    manager.on_loaded = lambda model: loads.append(manager.current_checkpoint().model_name)
    return loads, previous


def test_with_a_limit_of_two_switching_back_takes_no_load(app_ctx):
    manager = app_ctx.model_manager
    loads, previous_callback = loads_counted(manager)
    try:
        with app_ctx.options.override({"sd_checkpoints_limit": 2}):
            first = generate(app_ctx, "tiny-sd1", prompt="a blue circle", seed=5)
            sd1 = manager.current().model
            generate(app_ctx, "tiny-sd2_v", prompt="a blue circle", seed=5)
            assert [info.model_name for info in manager.cached_checkpoints()] == ["tiny-sd1"]
            back = generate(app_ctx, "tiny-sd1", prompt="a blue circle", seed=5)
            assert manager.current().model is sd1
            assert [info.model_name for info in manager.cached_checkpoints()] == ["tiny-sd2_v"]
            assert loads.count("tiny-sd1") <= 1 and loads.count("tiny-sd2_v") == 1
            assert np.array_equal(np.asarray(first.images[0]), np.asarray(back.images[0]))

            # a third checkpoint pushes out the least recently used one
            sd2 = weakref.ref(manager.get("tiny-sd2_v").model)      # sd2 active again
            manager.get("tiny-sd1")                                  # sd2 least recent
            generate(app_ctx, "tiny-sdxl", prompt="a blue circle", seed=5)
            gc.collect()
            assert sd2() is None
            assert [info.model_name for info in manager.cached_checkpoints()] == ["tiny-sd1"]
        # the limit back at 1: the next job releases the cached model
        generate(app_ctx, "tiny-sdxl", prompt="a blue circle", seed=5)
        assert manager.cached_checkpoints() == []
    finally:
        manager.on_loaded = previous_callback
        manager.clear_cache()
    assert manager.cached_checkpoints() == []


def test_with_the_default_limit_a_switch_releases_the_model(app_ctx):
    manager = app_ctx.model_manager
    generate(app_ctx, "tiny-sd1", prompt="a green star", seed=2)
    sd1 = weakref.ref(manager.current().model)
    generate(app_ctx, "tiny-sd2_v", prompt="a green star", seed=2)
    gc.collect()
    assert sd1() is None and manager.cached_checkpoints() == []


def test_a_broken_file_with_the_cache_on_keeps_the_previous_model_active(app_ctx, tiny_data_dir):
    broken = tiny_data_dir / "models" / "Stable-diffusion" / "zz-cut.safetensors"
    good = (tiny_data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors").read_bytes()
    broken.write_bytes(good[: len(good) // 2])
    app_ctx.checkpoints.refresh()
    manager = app_ctx.model_manager
    try:
        with app_ctx.options.override({"sd_checkpoints_limit": 3}):
            manager.get("tiny-sd1")
            manager.clear_cache()
            # the header is whole, so sd1 is parked in the cache before the reads fail
            with pytest.raises(CheckpointLoadError, match="zz-cut.safetensors"):
                manager.get("zz-cut")
            assert manager.current_checkpoint().model_name == "tiny-sd1"
            assert manager.cached_checkpoints() == []
            processed = generate(app_ctx, "tiny-sd1", prompt="still here", seed=1)
            assert processed.images[0].size == (64, 64)
    finally:
        broken.unlink()
        app_ctx.checkpoints.refresh()
        manager.clear_cache()
