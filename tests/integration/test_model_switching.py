"""Switching checkpoints from the UI's dropdown: the new model loads, a broken file is named and the
model that was loaded stays usable."""
from __future__ import annotations

import json

import pytest

from modules.engine.checkpoint_io import CheckpointLoadError

from modules.ui.quicksettings import change_checkpoint
from tests.integration.conftest import generate


def test_dropdown_switches_and_survives_a_broken_file(app_ctx, tiny_data_dir):
    broken = tiny_data_dir / "models" / "Stable-diffusion" / "zz-truncated.safetensors"
    good = (tiny_data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors").read_bytes()
    broken.write_bytes(good[: len(good) // 2])
    app_ctx.checkpoints.refresh()
    try:
        assert change_checkpoint(app_ctx, "tiny-sd2_v") == ""
        assert app_ctx.model_manager.current_checkpoint().model_name == "tiny-sd2_v"
        assert app_ctx.options.get("sd_model_checkpoint").startswith("tiny-sd2_v.safetensors")
        saved = json.loads(app_ctx.paths.config_file.read_text())
        assert saved["sd_model_checkpoint"].startswith("tiny-sd2_v.safetensors")

        message = change_checkpoint(app_ctx, "zz-truncated")
        assert "zz-truncated.safetensors" in message
        # the previous model is still loaded and still generates
        assert app_ctx.model_manager.current_checkpoint().model_name == "tiny-sd2_v"
        processed = generate(app_ctx, "tiny-sd2_v", prompt="still works", seed=3)
        assert processed.images[0].size == (64, 64)
    finally:
        broken.unlink()
        app_ctx.checkpoints.refresh()


def test_switching_releases_the_previous_model_before_loading_the_next(app_ctx):
    """Two models never sit in memory together (DESIGN: no leak across switches)."""
    import gc
    import weakref

    manager = app_ctx.model_manager
    first = weakref.ref(manager.get("tiny-sd1").model)
    seen_while_loading: list[bool] = []
    original_unload = manager.unload

    def recording_unload() -> None:
        original_unload()
        gc.collect()
        seen_while_loading.append(first() is not None)

    manager.unload = recording_unload       # instance attribute: only this manager, this test
    try:
        manager.get("tiny-sd2_v")
    finally:
        del manager.unload
    assert seen_while_loading and seen_while_loading[0] is False, \
        "the previous model was still alive when the new one was materialised"
    assert manager.current_checkpoint().model_name == "tiny-sd2_v"


def test_a_switch_through_the_job_queue_leaves_no_reference_to_the_old_model(app_ctx):
    """The API's and the UI's switch path (AppContext.load_checkpoint, a job on the worker): once
    the next model is loaded, nothing holds the previous one (finished jobs are kept a while)."""
    import gc
    import weakref

    app_ctx.load_checkpoint(app_ctx.checkpoints.get_closest("tiny-sd1"))
    first = weakref.ref(app_ctx.model_manager.current().model)
    app_ctx.load_checkpoint(app_ctx.checkpoints.get_closest("tiny-sd2_v"))
    gc.collect()
    assert first() is None, gc.get_referrers(first())
    assert app_ctx.model_manager.current_checkpoint().model_name == "tiny-sd2_v"


def test_a_load_that_fails_after_the_release_brings_the_previous_model_back(app_ctx,
                                                                            tiny_data_dir):
    """The file changes between its header check and the reading of its weights (e.g. it is
    being overwritten): the previous model is loaded again and the error says so."""
    manager = app_ctx.model_manager
    ckpt_dir = tiny_data_dir / "models" / "Stable-diffusion"
    changing = ckpt_dir / "zz-changing.safetensors"
    changing.write_bytes((ckpt_dir / "tiny-sd1.safetensors").read_bytes())
    app_ctx.checkpoints.refresh()
    manager.get("tiny-sd2_v")
    original_unload = manager.unload

    def unload_then_overwrite() -> None:
        original_unload()
        changing.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")

    manager.unload = unload_then_overwrite       # instance attribute: only this manager, this test
    try:
        with pytest.raises(CheckpointLoadError) as caught:
            app_ctx.load_checkpoint(app_ctx.checkpoints.get_closest("zz-changing"))
    finally:
        del manager.unload
        changing.unlink()
        app_ctx.checkpoints.refresh()
    message = str(caught.value)
    assert "zz-changing.safetensors" in message and "tiny-sd2_v" in message \
        and "was loaded again" in message, message
    assert manager.current_checkpoint().model_name == "tiny-sd2_v"
    processed = generate(app_ctx, "tiny-sd2_v", prompt="back again", seed=5)
    assert processed.images[0].size == (64, 64)
