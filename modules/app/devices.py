"""Device and precision chosen from A1111's flags (--use-cpu, --device-id, --no-half, --precision,
--no-half-vae) and, on the CPU, the `cpu_precision` / `cpu_vae_precision` settings (or
--cpu-precision): fp16 on CUDA; on the CPU bfloat16 for the UNet and text encoders where the
processor computes bf16 natively (AVX512-BF16 / AMX, or Arm's BF16) and a quick numeric check
agrees, else float32. Sampling math stays float32 either way (the denoiser casts per call)."""
from __future__ import annotations

import argparse
import functools
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from modules.engine.attention import xformers_available

AUTOMATIC, FLOAT32, BFLOAT16 = "Automatic", "float32", "bfloat16"
CPU_PRECISIONS = (AUTOMATIC, FLOAT32, BFLOAT16)
CPU_VAE_PRECISIONS = (FLOAT32, BFLOAT16)
#: --cpu-precision values → the setting's
CPU_PRECISION_FLAGS = {"auto": AUTOMATIC, "fp32": FLOAT32, "bf16": BFLOAT16}
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class DevicePlan:
    device: torch.device
    dtype: torch.dtype          # UNet and text encoders
    vae_dtype: torch.dtype

    @property
    def auxiliary_dtype(self) -> torch.dtype:
        """Upscalers, face restorers, interrogators: the UNet's half precision on CUDA, float32
        on the CPU (the CPU's bfloat16 mode is for the UNet and text encoders only)."""
        return torch.float32 if self.device.type == "cpu" else self.dtype

    def describe(self) -> str:
        return (f"{self.device} ({str(self.dtype).removeprefix('torch.')}, "
                f"VAE {str(self.vae_dtype).removeprefix('torch.')})")


def _wants_cpu(args: argparse.Namespace) -> bool:
    use_cpu = getattr(args, "use_cpu", None) or []
    return any(item.lower() in ("all", "sd") for item in use_cpu)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The processor's feature flags as the kernel lists them (empty when unknown)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def has_native_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU computes bfloat16 in hardware (else torch emulates it, slower than fp32)."""
    flags = cpu_flags() if flags is None else flags
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return any(flag in flags for flag in _NATIVE_BF16_FLAGS)


@functools.lru_cache(maxsize=1)
def bf16_agrees_with_fp32() -> bool:
    """A convolution and an attention-sized matmul in bf16 stay within bf16's rounding of the
    fp32 result (a broken kernel or library would not)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 16, 16, generator=generator)
    weight = torch.randn(64, 64, 3, 3, generator=generator) / 24
    a, b = torch.randn(256, 320, generator=generator), torch.randn(320, 256, generator=generator)
    for exact, low in ((torch.nn.functional.conv2d(x, weight, padding=1),
                        torch.nn.functional.conv2d(x.bfloat16(), weight.bfloat16(), padding=1)),
                       (a @ b, a.bfloat16() @ b.bfloat16())):
        error = (low.float() - exact).norm() / exact.norm()
        if not torch.isfinite(error) or error > 0.02:
            return False
    return True


def cpu_compute_dtype(choice: str) -> torch.dtype:
    """The UNet / text-encoder dtype on the CPU for a `cpu_precision` choice."""
    if choice == BFLOAT16:
        return torch.bfloat16
    if choice == AUTOMATIC and has_native_bf16() and bf16_agrees_with_fp32():
        return torch.bfloat16
    return torch.float32


def plan_devices(args: argparse.Namespace, *, cpu_precision: str = FLOAT32,
                 cpu_vae_precision: str = FLOAT32) -> DevicePlan:
    """`cpu_precision` / `cpu_vae_precision`: the settings' values (--cpu-precision wins over the
    first; --precision full keeps everything in float32)."""
    full = getattr(args, "precision", "autocast") == "full"
    if not _wants_cpu(args) and torch.cuda.is_available():
        device_id = getattr(args, "device_id", None)
        device = torch.device(f"cuda:{device_id}" if device_id not in (None, "") else "cuda")
        full = full or getattr(args, "no_half", False)
        dtype = torch.float32 if full else torch.float16
        vae_dtype = torch.float32 if full or getattr(args, "no_half_vae", False) else dtype
        return DevicePlan(device, dtype, vae_dtype)
    flag = getattr(args, "cpu_precision", None)
    choice = CPU_PRECISION_FLAGS.get(flag, cpu_precision) if flag else cpu_precision
    dtype = torch.float32 if full else cpu_compute_dtype(choice)
    vae_dtype = torch.bfloat16 if (dtype == torch.bfloat16 and cpu_vae_precision == BFLOAT16
                                   and not getattr(args, "no_half_vae", False)) \
        else torch.float32
    return DevicePlan(torch.device("cpu"), dtype, vae_dtype)


# -- cross-attention choice (A1111's `cross_attention_optimization` and its flags) ------------
#: flags in A1111's priority order, each with the choice it makes under "Automatic"
_ATTENTION_FLAGS = (("xformers", "xformers"), ("force_enable_xformers", "xformers"),
                    ("opt_split_attention", "Doggettx"),
                    ("opt_sdp_no_mem_attention", "sdp-no-mem"), ("opt_sdp_attention", "sdp"),
                    ("opt_sub_quad_attention", "sub-quadratic"),
                    ("opt_split_attention_v1", "V1"),
                    ("opt_split_attention_invokeai", "InvokeAI"))


def attention_choices() -> list[str]:
    """The setting's choices: "Automatic", the kernels usable here, "None"."""
    kernels = ["sdp", "sdp-no-mem", "Doggettx", "sub-quadratic", "V1", "InvokeAI"]
    if xformers_available():
        kernels.insert(0, "xformers")
    return [AUTOMATIC, *kernels, "None"]


def choose_attention(setting: str, args: argparse.Namespace) -> str:
    """The attention kernel for the setting: a named one as chosen (SDPA when it is not usable
    here); "Automatic" follows the first A1111 flag given (--disable-opt-split-attention: the
    plain layer), else SDPA, the fastest and leanest on current torch."""
    usable = attention_choices()
    if setting != AUTOMATIC:
        return setting if setting in usable else "sdp"
    if getattr(args, "disable_opt_split_attention", False):
        return "None"
    for flag, choice in _ATTENTION_FLAGS:
        if getattr(args, flag, False) and choice in usable:
            return choice
    return "sdp"
