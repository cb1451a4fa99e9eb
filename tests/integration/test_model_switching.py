"""Switching checkpoints from the UI's dropdown: the new model loads, a broken file is named and the
model that was loaded stays usable."""
from __future__ import annotations

import json

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
