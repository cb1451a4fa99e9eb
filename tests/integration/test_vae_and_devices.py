"""External VAE selection (setting sd_vae) end to end, a refiner-only checkpoint, and the device /
precision plan from A1111's flags."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.app.cmd_args import parse_args
from modules.app.devices import plan_devices
from modules.processing.infotext import parse_generation_parameters
from tests.engine.tiny_checkpoints import write_tiny_checkpoint, write_tiny_vae
from tests.integration.conftest import generate


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_external_vae_is_used_written_and_undone(app_ctx, tiny_data_dir):
    vae_dir = tiny_data_dir / "models" / "VAE"
    vae_dir.mkdir(parents=True, exist_ok=True)
    write_tiny_vae(vae_dir / "other.vae.safetensors", seed=9)
    app_ctx.vaes.refresh()
    own = generate(app_ctx, "tiny-sd1", prompt="vae", seed=8)
    with app_ctx.options.override({"sd_vae": "other.vae.safetensors"}):
        external = generate(app_ctx, "tiny-sd1", prompt="vae", seed=8)
    back = generate(app_ctx, "tiny-sd1", prompt="vae", seed=8)
    assert not np.array_equal(pixels(own.images[0]), pixels(external.images[0]))
    assert np.array_equal(pixels(own.images[0]), pixels(back.images[0]))
    parsed = parse_generation_parameters(external.infotexts[0])
    assert parsed["VAE"] == "other.vae.safetensors"
    assert len(parsed["VAE hash"]) == 10
    assert external.sd_vae_name == "other.vae.safetensors"
    assert "VAE" not in parse_generation_parameters(own.infotexts[0])


def test_sdxl_refiner_checkpoint_generates(app_ctx, tiny_data_dir):
    path = write_tiny_checkpoint(
        tiny_data_dir / "models" / "Stable-diffusion" / "tiny-refiner.safetensors", "sdxl_refiner")
    app_ctx.checkpoints.refresh()
    try:
        processed = generate(app_ctx, "tiny-refiner", prompt="refined", seed=2)
        assert processed.images[0].size == (64, 64)
        assert pixels(processed.images[0]).std() > 1.0
    finally:
        path.unlink()
        app_ctx.checkpoints.refresh()


@pytest.mark.parametrize("argv, cuda, expected", [
    ([], False, ("cpu", torch.float32, torch.float32)),
    ([], True, ("cuda", torch.float16, torch.float16)),
    (["--no-half-vae"], True, ("cuda", torch.float16, torch.float32)),
    (["--no-half"], True, ("cuda", torch.float32, torch.float32)),
    (["--precision", "full"], True, ("cuda", torch.float32, torch.float32)),
    (["--use-cpu", "all"], True, ("cpu", torch.float32, torch.float32)),
    (["--device-id", "1"], True, ("cuda:1", torch.float16, torch.float16)),
])
def test_device_plan_follows_the_flags(monkeypatch, argv, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    args, _ = parse_args(argv)
    plan = plan_devices(args)
    assert (str(plan.device), plan.dtype, plan.vae_dtype) == expected


def test_half_precision_unet_with_full_precision_vae_generates(app_ctx):
    """The dtype plumbing of --no-half-vae (bf16 stands in for CUDA's fp16 on this CPU)."""
    import dataclasses

    from modules.app.devices import DevicePlan
    from modules.app.model_manager import ModelManager
    from modules.processing.params import GenerationParams
    from modules.processing.txt2img import run_txt2img

    manager = ModelManager(app_ctx.checkpoints,
                           DevicePlan(torch.device("cpu"), torch.bfloat16, torch.float32),
                           checkpoint_dir=app_ctx.paths.ckpt_dir)
    params = GenerationParams(prompt="half", seed=1, steps=3, width=64, height=64,
                              sampler_name="Euler a")
    with app_ctx.options.override({"sd_model_checkpoint": "tiny-sdxl", "samples_save": False,
                                   "grid_save": False}):
        processed = app_ctx.jobs.run("txt2img", lambda progress: run_txt2img(
            params, dataclasses.replace(app_ctx.processing_context(progress),
                                        model_manager=manager)))
    model = manager.current().model
    assert model.dtype == torch.bfloat16
    assert next(model.first_stage_model.parameters()).dtype == torch.float32
    assert processed.images[0].size == (64, 64)
    assert pixels(processed.images[0]).std() > 1.0


def test_automatic_takes_the_vae_beside_the_checkpoint_and_the_card_preference(
        app_ctx, tiny_data_dir):
    """A1111's order: `<checkpoint>.vae.safetensors` for "Automatic"; a named file beside it
    only when it overrides per-model preferences; "None" the checkpoint's own; the
    checkpoint card's `vae` before the file beside it."""
    checkpoints = tiny_data_dir / "models" / "Stable-diffusion"
    vae_dir = tiny_data_dir / "models" / "VAE"
    vae_dir.mkdir(parents=True, exist_ok=True)
    beside = write_tiny_vae(checkpoints / "tiny-sd1.vae.safetensors", seed=21)
    write_tiny_vae(vae_dir / "chosen.safetensors", seed=22)
    app_ctx.vaes.refresh()
    try:
        own = generate(app_ctx, "tiny-sd1", prompt="vae", seed=3)        # sd_vae: Automatic
        assert parse_generation_parameters(own.infotexts[0])["VAE"] == beside.name
        with app_ctx.options.override({"sd_vae": "None"}):
            plain = generate(app_ctx, "tiny-sd1", prompt="vae", seed=3)
        assert "VAE" not in parse_generation_parameters(plain.infotexts[0])
        assert not np.array_equal(pixels(own.images[0]), pixels(plain.images[0]))
        with app_ctx.options.override({"sd_vae": "chosen.safetensors",
                                       "sd_vae_overrides_per_model_preferences": False}):
            kept = generate(app_ctx, "tiny-sd1", prompt="vae", seed=3)
        assert parse_generation_parameters(kept.infotexts[0])["VAE"] == beside.name
        with app_ctx.options.override({"sd_vae": "chosen.safetensors"}):
            chosen = generate(app_ctx, "tiny-sd1", prompt="vae", seed=3)
        assert parse_generation_parameters(chosen.infotexts[0])["VAE"] == "chosen.safetensors"
        (checkpoints / "tiny-sd1.json").write_text('{"vae": "chosen.safetensors"}')
        carded = generate(app_ctx, "tiny-sd1", prompt="vae", seed=3)
        assert parse_generation_parameters(carded.infotexts[0])["VAE"] == "chosen.safetensors"
        assert np.array_equal(pixels(carded.images[0]), pixels(chosen.images[0]))
    finally:
        beside.unlink()
        (checkpoints / "tiny-sd1.json").unlink(missing_ok=True)
        app_ctx.vaes.refresh()


def test_a_half_vae_that_decodes_nans_is_turned_to_float32(tmp_path):
    """A1111's auto_vae_precision: latents large enough to overflow float16 inside the VAE
    decode NaNs; with the fallback the VAE runs in float32 from then on and the image is
    finite."""
    from modules.engine.sd_model import load_model
    from modules.processing.pipeline import decode_latents

    model = load_model(write_tiny_checkpoint(tmp_path / "nan.safetensors", "sd1", seed=4))
    model.first_stage_model.to(torch.float16)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 3e4
    assert torch.isnan(decode_latents(model, latents)).any()
    assert next(model.first_stage_model.parameters()).dtype == torch.float16
    decoded = decode_latents(model, latents, upcast_on_nan=True)
    assert not torch.isnan(decoded).any()
    assert next(model.first_stage_model.parameters()).dtype == torch.float32
    assert torch.equal(decoded, decode_latents(model, latents))
