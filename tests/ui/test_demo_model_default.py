"""The shipped demo model: chosen only when the user has no checkpoint of their own, and the UI
says what it is and where real checkpoints go."""
from __future__ import annotations

from modules.app.checkpoints import DEMO_CHECKPOINT_FILE
from modules.ui.quicksettings import _status_html
from tests.engine.tiny_checkpoints import write_tiny_checkpoint
from tests.ui.conftest import app_context


def test_only_the_demo_model_is_selected_and_explained(tmp_path):
    ckpt_dir = tmp_path / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / DEMO_CHECKPOINT_FILE, "sd1", seed=1)
    with app_context(tmp_path) as ctx:
        assert ctx.model_manager.resolve(None).is_demo
        status = _status_html(ctx)
        assert "demo model" in status and str(ckpt_dir) in status


def test_a_user_checkpoint_is_preferred_over_the_demo(tmp_path):
    ckpt_dir = tmp_path / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / DEMO_CHECKPOINT_FILE, "sd1", seed=1)
    write_tiny_checkpoint(ckpt_dir / "zz-my-model.safetensors", "sd1", seed=2)
    with app_context(tmp_path) as ctx:
        chosen = ctx.model_manager.resolve(None)
        assert chosen.name == "zz-my-model.safetensors" and not chosen.is_demo
        assert _status_html(ctx) == ""
        # asked for by name, the demo is still there to use
        assert ctx.model_manager.resolve("demo-shapes").is_demo


def test_a_page_opens_with_the_demo_models_native_size(tmp_path):
    from modules.ui.app import build_ui
    ckpt_dir = tmp_path / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / DEMO_CHECKPOINT_FILE, "sd1", seed=1,
                          metadata={"modelspec.resolution": "64x64"})
    write_tiny_checkpoint(ckpt_dir / "mine.safetensors", "sd1", seed=2)
    with app_context(tmp_path) as ctx:
        [demo] = [info for info in ctx.checkpoints.list() if info.is_demo]
        assert demo.native_size() == (64, 64)
        blocks = build_ui(ctx)
        [load_event] = [fn for fn in blocks.fns.values()
                        if any(target[1] == "load" for target in fn.targets)]

        def page_sizes() -> dict:
            values = dict(zip((c.elem_id for c in load_event.outputs), load_event.fn()))
            return {key: values[key] for key in ("txt2img_width", "txt2img_height",
                                                 "img2img_width", "img2img_height")}

        ctx.load_checkpoint(demo)
        assert set(page_sizes().values()) == {64}
        ctx.load_checkpoint(ctx.checkpoints.get_closest("mine"))
        assert all(not isinstance(value, int) for value in page_sizes().values())   # untouched
