"""Admission checks: a request is held against the server limits before it is queued, so what
cannot finish in reasonable time or memory is refused at once with a message naming the field,
its value, the limit and what sets the limit, and costs no model time.

`limits` is any object with `value(key) -> float` and `source(key) -> str`
(modules/app/server_limits.ServerLimits); the keys are the "Server limits" settings.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable, Protocol

from modules.processing.params import ProcessingParams

if TYPE_CHECKING:
    from modules.processing.memory_guard import JobShape

UNITS = {
    "limit_image_side": "px", "limit_image_pixels": "pixels", "limit_steps": "steps",
    "limit_batch_size": "images", "limit_images_per_request": "images", "limit_hr_scale": "×",
    "limit_upscale_factor": "×", "limit_upscale_side": "px", "limit_input_megapixels": "megapixels",
    "limit_request_mb": "MB", "limit_prompt_chars": "characters",
}
PROMPT_FIELDS = ("prompt", "negative_prompt", "hr_prompt", "hr_negative_prompt")
NO_UPSCALER = (None, "", "None")


def format_number(value: float) -> str:
    """4096.0 → "4096", 10000000 → "10000000", 2.5 → "2.5" (never an exponent)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.4f}".rstrip("0")


class Limits(Protocol):
    def value(self, key: str) -> float: ...

    def source(self, key: str) -> str: ...


class AdmissionError(ValueError):
    """A request above a server limit (HTTP 422, a visible message in the UI)."""

    def __init__(self, field: str, value: float | str, limit: float, key: str,
                 source: str) -> None:
        self.field, self.value, self.limit, self.key = field, value, limit, key
        shown = value if isinstance(value, str) else format_number(value)
        super().__init__(f"{field} {shown} is above the server's limit of "
                         f"{format_number(limit)} {UNITS.get(key, '')} ({source})"
                         .replace(" (", " (", 1).replace("  ", " "))


def check_limit(limits: Limits, key: str, field: str, value: float,
                shown: str | None = None) -> None:
    limit = limits.value(key)
    if value > limit:
        raise AdmissionError(field, shown if shown is not None else value, limit, key,
                             limits.source(key))


def check_image_size(limits: Limits, field: str, width: int, height: int) -> None:
    """One pass's size: each side and the pixel count. `field` names the fields ("width" /
    "height" are named alone when only one is too large)."""
    side = limits.value("limit_image_side")
    for name, value in ((f"{field}width", width), (f"{field}height", height)):
        if value > side:
            raise AdmissionError(name, value, side, "limit_image_side",
                                 limits.source("limit_image_side"))
    check_limit(limits, "limit_image_pixels", f"{field}width × height", width * height,
                shown=f"{width}x{height} = {width * height}")


def check_prompts(limits: Limits, prompts: Iterable[tuple[str, str | list[str] | None]]) -> None:
    """Each prompt (a script may give one per image: a list)."""
    for field, text in prompts:
        for one in (text if isinstance(text, (list, tuple)) else [text]):
            if one:
                check_limit(limits, "limit_prompt_chars", f"{field} length", len(one))


def check_generation(params: ProcessingParams, limits: Limits, *,
                     use_old_hires_fix_width_height: bool = False) -> None:
    """Every size, step count, batch and prompt of a txt2img / img2img request (init images
    are checked as they are decoded: `check_input_image`)."""
    check_prompts(limits, ((field, getattr(params, field, None)) for field in PROMPT_FIELDS))
    check_limit(limits, "limit_steps", "steps", params.steps)
    check_limit(limits, "limit_batch_size", "batch_size", params.batch_size)
    check_limit(limits, "limit_images_per_request", "batch_size × n_iter",
                params.batch_size * params.n_iter,
                shown=f"{params.batch_size} × {params.n_iter} = {params.batch_size * params.n_iter}")
    check_image_size(limits, "", params.width, params.height)
    if getattr(params, "enable_hr", False):
        check_hires(params, limits, use_old_hires_fix_width_height)


def check_hires(params: ProcessingParams, limits: Limits,
                use_old_hires_fix_width_height: bool) -> None:
    from modules.processing.hires import plan_hires_size   # pulls in torch and the pipeline

    if not (params.hr_resize_x or params.hr_resize_y):
        check_limit(limits, "limit_hr_scale", "hr_scale", params.hr_scale)
    for name in ("hr_resize_x", "hr_resize_y", "firstphase_width", "firstphase_height"):
        check_limit(limits, "limit_image_side", name, getattr(params, name) or 0)
    check_limit(limits, "limit_steps", "hr_second_pass_steps", params.hr_second_pass_steps)
    size = plan_hires_size(params, use_old_hires_fix_width_height)
    check_image_size(limits, "hires ", size.upscale_width, size.upscale_height)


def job_shape_for(params: ProcessingParams, *,
                  use_old_hires_fix_width_height: bool = False) -> "JobShape":
    """The sizes a request will sample and VAE-encode at (for the memory guard), before its
    images are decoded: img2img encodes at the requested size."""
    from modules.processing.hires import plan_hires_size
    from modules.processing.memory_guard import JobShape
    from modules.processing.setup import round_to_multiple_of_8

    first = (round_to_multiple_of_8(params.width), round_to_multiple_of_8(params.height))
    images = params.batch_size * params.n_iter
    if getattr(params, "enable_hr", False):
        size = plan_hires_size(params, use_old_hires_fix_width_height)
        upscaled = (size.upscale_width, size.upscale_height)
        return JobShape(passes=((size.first_width, size.first_height), upscaled),
                        batch_size=params.batch_size, encodes=(upscaled,), images=images)
    encodes = (first,) if hasattr(params, "init_images") else ()
    return JobShape(passes=(first,), batch_size=params.batch_size, encodes=encodes,
                    images=images)


def input_pixel_limit(limits: Limits) -> int:
    return int(limits.value("limit_input_megapixels") * 1_000_000)


def check_input_image(limits: Limits, field: str, width: int, height: int) -> None:
    """An uploaded image (init image, mask, Extras input), from its header, before decoding."""
    megapixels = width * height / 1_000_000
    check_limit(limits, "limit_input_megapixels", field, megapixels,
                shown=f"{width}x{height} ({megapixels:.1f} megapixels)")


_PIL_BOMB_PIXELS = re.compile(r"Image size \((\d+) pixels\)")


def pixels_in_decompression_bomb_error(error: Exception) -> int | None:
    """PIL refuses images above twice its own limit before their size is returned; its message
    says how many pixels the image has."""
    match = _PIL_BOMB_PIXELS.search(str(error))
    return int(match.group(1)) if match else None


def check_extras(limits: Limits, settings, sizes: Iterable[tuple[int, int]]) -> None:
    """An Extras request (`settings`: postprocessing.ExtrasSettings) for images of `sizes`: the
    upscale factor and the size of what the upscaler makes."""
    from modules.processing.postprocessing import RESIZE_TO_SIZE

    if settings.upscaler_1 in NO_UPSCALER:
        return
    if settings.resize_mode != RESIZE_TO_SIZE:
        check_limit(limits, "limit_upscale_factor", "upscaling_resize", settings.upscaling_resize)
    else:
        for name in ("upscaling_resize_w", "upscaling_resize_h"):
            check_limit(limits, "limit_upscale_side", name, getattr(settings, name))
    for width, height in sizes:
        if settings.resize_mode == RESIZE_TO_SIZE:
            scale = max(settings.upscaling_resize_w / max(width, 1),
                        settings.upscaling_resize_h / max(height, 1))
        else:
            scale = settings.upscaling_resize
        check_limit(limits, "limit_upscale_side", "upscaled size",
                    max(width, height) * scale,
                    shown=f"{round(width * scale)}x{round(height * scale)}")
