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
