"""Device and precision chosen from A1111's flags (--use-cpu, --device-id, --no-half, --precision,
--no-half-vae). fp16 on CUDA, fp32 on CPU unless told otherwise."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DevicePlan:
    device: torch.device
    dtype: torch.dtype          # UNet and text encoders
    vae_dtype: torch.dtype

    def describe(self) -> str:
        return f"{self.device} ({str(self.dtype).removeprefix('torch.')}, VAE {str(self.vae_dtype).removeprefix('torch.')})"


def _wants_cpu(args: argparse.Namespace) -> bool:
    use_cpu = getattr(args, "use_cpu", None) or []
    return any(item.lower() in ("all", "sd") for item in use_cpu)


def plan_devices(args: argparse.Namespace) -> DevicePlan:
    if not _wants_cpu(args) and torch.cuda.is_available():
        device_id = getattr(args, "device_id", None)
        device = torch.device(f"cuda:{device_id}" if device_id not in (None, "") else "cuda")
        full = getattr(args, "no_half", False) or getattr(args, "precision", "autocast") == "full"
        dtype = torch.float32 if full else torch.float16
        vae_dtype = torch.float32 if full or getattr(args, "no_half_vae", False) else dtype
        return DevicePlan(device, dtype, vae_dtype)
    return DevicePlan(torch.device("cpu"), torch.float32, torch.float32)
