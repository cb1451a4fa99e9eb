"""Server limits: what one request may ask of the machine, as settings ("Server limits" section)
that a command-line flag can tighten.

The defaults let every ordinary A1111 request through (its UI allows 2048 px sides, 150 steps,
batch 8 x count 100, hires fix up to 4x); what is far beyond them is refused before it is queued
(modules/processing/admission.py), so one request cannot take the service down.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modules.app.options import Options

SECTION = ("server-limits", "Server limits")


@dataclass(frozen=True)
class LimitSpec:
    key: str                 # the setting
    label: str
    default: int | float     # the type the setting keeps (ints stay ints)
    flag: str                # the command-line flag that can only tighten it
    unit: str
    zero_is_off: bool = False   # 0 switches the limit off (a flag of 0 never loosens it)

    @property
    def dest(self) -> str:
        """The flag's attribute name on the parsed arguments."""
        return self.flag.lstrip("-").replace("-", "_")


LIMIT_SPECS: tuple[LimitSpec, ...] = (
    LimitSpec("limit_image_side", "Largest width or height of an image in any pass (txt2img, "
              "img2img, hires fix target), px", 4096, "--max-image-side", "px"),
    LimitSpec("limit_image_pixels", "Largest image in any pass, width × height in pixels",
              4096 * 4096, "--max-image-pixels", "pixels"),
    LimitSpec("limit_steps", "Most sampling steps of one pass (steps, hires steps)", 500,
              "--max-steps", "steps"),
    LimitSpec("limit_batch_size", "Largest batch size", 32, "--max-batch-size", "images"),
    LimitSpec("limit_images_per_request", "Most images of one request (batch size × batch "
              "count)", 800, "--max-images-per-request", "images"),
    LimitSpec("limit_hr_scale", "Largest hires fix scale", 8.0, "--max-hr-scale", "×"),
    LimitSpec("limit_upscale_factor", "Largest Extras upscale factor", 8.0,
              "--max-upscale-factor", "×"),
    LimitSpec("limit_upscale_side", "Largest width or height of an Extras result, px", 16384,
              "--max-upscale-side", "px"),
    LimitSpec("limit_input_megapixels", "Largest input image (init image, mask, Extras input), "
              "megapixels", 64.0, "--max-input-megapixels", "megapixels"),
    LimitSpec("limit_request_mb", "Largest request body, MB", 200.0, "--max-request-mb", "MB"),
    LimitSpec("limit_prompt_chars", "Longest prompt or negative prompt, characters", 30000,
              "--max-prompt-chars", "characters"),
    LimitSpec("limit_queue_size", "Most jobs waiting in the queue; more are answered 429 Too Many "
              "Requests", 100, "--max-queue-size", "jobs"),
    LimitSpec("limit_job_seconds", "Time limit of one job, seconds (0 = none); a job past it is "
              "interrupted and says so", 0.0, "--max-job-seconds", "s", zero_is_off=True),
)
SPECS_BY_KEY = {spec.key: spec for spec in LIMIT_SPECS}

MEMORY_RESERVE_KEY = "limit_memory_reserve_mb"
MEMORY_RESERVE_DEFAULT_MB = 1024


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server limits (tighten the 'Server limits' settings)")
    for spec in LIMIT_SPECS:
        group.add_argument(spec.flag, type=float, default=None, metavar="N",
                           help=f"{spec.label} (setting {spec.key}, default {spec.default:g})")


class ServerLimits:
    """The limits in force: each setting, tightened by its flag when one was given."""

    def __init__(self, options: "Options", args: argparse.Namespace | None = None) -> None:
        self.options = options
        self.args = args

    def _flag(self, spec: LimitSpec) -> float | None:
        value = getattr(self.args, spec.dest, None) if self.args is not None else None
        return None if value is None or (spec.zero_is_off and value <= 0) else float(value)

    def value(self, key: str) -> float:
        """The limit for `key`; for a zero_is_off limit, 0 means none."""
        spec = SPECS_BY_KEY[key]
        setting = self.options.get(key)
        setting = spec.default if setting is None else float(setting)
        flag = self._flag(spec)
        if flag is None:
            return setting
        if spec.zero_is_off and setting <= 0:
            return flag
        return min(setting, flag)

    def source(self, key: str) -> str:
        """Where the limit comes from, for an error message: the flag when it is the tighter one,
        else the setting (and where to change it)."""
        spec = SPECS_BY_KEY[key]
        flag = self._flag(spec)
        if flag is not None and flag == self.value(key) and flag != self.options.get(key):
            return f"set by {spec.flag} {flag:g} on the command line"
        return f"setting '{key}' in Settings → Server limits raises it"

    def memory_reserve_bytes(self) -> int:
        megabytes = self.options.get(MEMORY_RESERVE_KEY)
        return int(float(MEMORY_RESERVE_DEFAULT_MB if megabytes is None else megabytes) * 1024 ** 2)
