"""A1111 compatibility view: `modules.devices` — the device and dtypes the app runs on, and
torch_gc(); read from the running app (modules.shared)."""
from __future__ import annotations

import contextlib
import gc
from typing import Any

import torch

cpu = torch.device("cpu")


def _plan() -> Any:
    from modules import shared
    return shared._context.model_manager.plan if shared._context is not None else None


def get_optimal_device() -> torch.device:
    plan = _plan()
    return plan.device if plan is not None else cpu


def torch_gc() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def autocast(disable: bool = False) -> Any:
    """The app runs in the model's own dtype: nothing to switch on."""
    return contextlib.nullcontext()


def __getattr__(name: str) -> Any:
    plan = _plan()
    if name in ("device", "device_interrogate", "device_gfpgan", "device_esrgan",
                "device_codeformer"):
        return plan.device if plan is not None else cpu
    if name in ("dtype", "dtype_unet"):
        return plan.dtype if plan is not None else torch.float32
    if name == "dtype_vae":
        return plan.vae_dtype if plan is not None else torch.float32
    raise AttributeError(f"module 'modules.devices' has no attribute {name!r}")
