"""The CPU precision mode: bfloat16 UNet and text encoders where the processor computes bf16
natively (or when asked), the VAE with them unless the setting says float32, --precision full
and --cpu-precision fp32 keeping float32; the plan is made again at each checkpoint load, and
the VAE weights are read straight into their own dtype."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from modules.app import devices
from modules.app.cmd_args import parse_args
from modules.app.devices import cpu_flags, has_native_bf16, plan_devices
from modules.engine.sd_model import load_model
from tests.engine.tiny_checkpoints import write_tiny_checkpoint

NATIVE = has_native_bf16() and devices.bf16_agrees_with_fp32()
AUTO = torch.bfloat16 if NATIVE else torch.float32


def test_the_default_settings_put_the_vae_in_bf16_with_the_unet(app_ctx):
    assert app_ctx.options.get("cpu_precision") == "Automatic"
    assert app_ctx.options.get("cpu_vae_precision") == "bfloat16"


@pytest.mark.parametrize("argv, setting, vae_setting, expected", [
    ([], "float32", "float32", (torch.float32, torch.float32)),
    ([], "bfloat16", "float32", (torch.bfloat16, torch.float32)),
    ([], "bfloat16", "bfloat16", (torch.bfloat16, torch.bfloat16)),
    ([], "Automatic", "float32", (AUTO, torch.float32)),
    ([], "Automatic", "bfloat16", (AUTO, AUTO)),      # the defaults: the VAE follows the UNet
    ([], "float32", "bfloat16", (torch.float32, torch.float32)),
    (["--cpu-precision", "fp32"], "bfloat16", "float32", (torch.float32, torch.float32)),
    (["--cpu-precision", "bf16"], "float32", "float32", (torch.bfloat16, torch.float32)),
    (["--precision", "full"], "bfloat16", "bfloat16", (torch.float32, torch.float32)),
    (["--no-half-vae"], "bfloat16", "bfloat16", (torch.bfloat16, torch.float32)),
])
def test_cpu_plan_follows_the_flags_and_settings(monkeypatch, argv, setting, vae_setting,
                                                 expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args, _ = parse_args(argv)
    plan = plan_devices(args, cpu_precision=setting, cpu_vae_precision=vae_setting)
    assert (plan.device.type, plan.dtype, plan.vae_dtype) == ("cpu", *expected)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    flags = cpu_flags(cpuinfo)
    assert "avx512_bf16" in flags
    assert has_native_bf16(flags) is True
    assert has_native_bf16({"fpu", "avx2", "avx512f"}) is False
    assert cpu_flags(tmp_path / "missing") == set()
    assert devices.bf16_agrees_with_fp32() in (True, False)   # a finite numeric check


def test_bf16_load_keeps_the_vae_weights_exact(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "tiny.safetensors", "sd1")
    stored = load_file(str(path))
    model = load_model(path, dtype=torch.bfloat16, vae_dtype=torch.float32)
    assert model.dtype == torch.bfloat16
    vae = dict(model.first_stage_model.named_parameters())
    key = "decoder.conv_out.weight"
    assert vae[key].dtype == torch.float32
    assert torch.equal(vae[key], stored[f"first_stage_model.{key}"])
    encoder = next(model.text_encoders[0][0].parameters())
    assert encoder.dtype == torch.bfloat16


def test_the_setting_applies_at_the_next_load(app_ctx):
    manager = app_ctx.model_manager
    try:
        with app_ctx.options.override({"cpu_precision": "bfloat16"}):
            manager.unload()
            assert manager.get("tiny-sd1").model.dtype == torch.bfloat16
            assert "bfloat16" in manager.plan.describe()
    finally:
        with app_ctx.options.override({"cpu_precision": "float32"}):
            manager.unload()
            assert manager.get("tiny-sd1").model.dtype == torch.float32
