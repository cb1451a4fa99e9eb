"""Functions with A1111's signatures for the compat modules (modules.images, modules.sd_samplers,
modules.sd_models, modules.errors, modules.devices): each adapts an extension's call to ours,
with the application bound in modules.shared (that binding is the compat layer's one global)."""
from __future__ import annotations

import logging
import traceback
from collections import namedtuple
from pathlib import Path
from typing import Any

log = logging.getLogger("extensions")

SamplerData = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])


def _context() -> Any:
    from modules import shared
    if shared._context is None:
        raise RuntimeError("the application is not started (modules.shared is not bound)")
    return shared._context


# -- modules.images ------------------------------------------------------------------------------
def save_image(image, path, basename, seed=None, prompt=None, extension="png", info=None,
               short_filename=False, no_prompt=False, grid=False,
               pnginfo_section_name="parameters", p=None, existing_info=None,
               forced_filename=None, suffix="", save_to_dirs=None):
    """A1111's images.save_image → (file path, .txt path or None), with the settings' file name
    patterns and the extensions' image-saved callbacks."""
    from modules.processing import images
    from modules.processing.script_hooks import save_callbacks
    context = _context()
    opts = context.options
    if save_to_dirs is None:
        save_to_dirs = bool(opts.get("grid_save_to_dirs" if grid else "save_to_dirs"))
    pattern = "" if grid else (opts.get("samples_filename_pattern") or "[seed]")
    if no_prompt and "[prompt" in pattern:
        pattern = "[seed]"
    return images.save_image(
        image, context.paths.resolve_output(Path(path)), basename="grid" if grid and not basename else basename, seed=seed,
        prompt=prompt, extension=extension, infotext=info,
        pnginfo_section=pnginfo_section_name, short_filename=short_filename,
        forced_filename=forced_filename, suffix=suffix,
        jpeg_quality=int(opts.get("jpeg_quality") or 80), filename_pattern=pattern,
        dir_pattern=opts.get("directories_filename_pattern") if save_to_dirs else None,
        existing_info=existing_info, embed_infotext=bool(opts.get("enable_pnginfo")),
        save_txt=bool(opts.get("save_txt")),
        **save_callbacks(context.scripts.callbacks, p))


def image_grid(imgs, batch_size=1, rows=None):
    """A1111's images.image_grid: rows None = the n_rows setting; on_image_grid may change the
    layout."""
    from modules.processing import images
    from modules.scripting.callback_params import ImageGridLoopParams
    context = _context()
    opts = context.options
    rows = images.grid_rows(len(imgs), rows=opts.get("n_rows") if rows is None else rows,
                            batch_size=batch_size,
                            prevent_empty_spots=bool(opts.get("grid_prevent_empty_spots")))
    params = ImageGridLoopParams(list(imgs), -(-len(imgs) // rows), rows)
    context.scripts.callbacks.run("image_grid", params)
    return images.image_grid(params.imgs, rows=params.rows,
                             background=opts.get("grid_background_color") or "#ffffff")


def resize_image(resize_mode, im, width, height, upscaler_name=None):
    from modules.processing.resize import resize_image as ours
    return ours(int(resize_mode), im, int(width), int(height))


def read_info_from_image(image):
    from modules.processing.images import read_info_from_image as ours
    return ours(image)


# -- modules.sd_samplers -------------------------------------------------------------------------
def sampler_table() -> list[SamplerData]:
    from modules.engine.samplers import SAMPLERS
    return [SamplerData(info.name, None, list(info.aliases), dict(info.options))
            for info in SAMPLERS]


def samplers_map() -> dict[str, str]:
    """Every lower-case name and alias → the sampler's name (A1111's samplers_map)."""
    mapping = {}
    for sampler in sampler_table():
        for alias in (sampler.name, *sampler.aliases):
            mapping[alias.lower()] = sampler.name
    return mapping


def find_sampler_config(name):
    from modules.engine.samplers import find_sampler
    found = find_sampler(name)
    return None if found is None else next(s for s in sampler_table() if s.name == found.name)


# -- modules.sd_models ---------------------------------------------------------------------------
def checkpoints_list() -> dict[str, Any]:
    return {info.title: info for info in _context().checkpoints.list()}


def get_closest_checkpoint_match(search_string):
    return _context().checkpoints.get_closest(search_string)


def select_checkpoint():
    return _context().active_checkpoint()


def reload_model_weights(sd_model=None, info=None):
    """Load `info` (or the setting's checkpoint) on the job worker, as a switch does."""
    context = _context()
    target = info or context.active_checkpoint()
    if target is not None:
        context.load_checkpoint(target)
    loaded = context.model_manager.current()
    return loaded.model if loaded is not None else None


# -- modules.errors ------------------------------------------------------------------------------
def report(message: str, *, exc_info: bool = False) -> None:
    """Log an extension's error (with the traceback of the exception being handled)."""
    log.error(message, exc_info=exc_info)


def print_error_explanation(message: str) -> None:
    log.error(message)


def display(e: BaseException, task: str, *, full_traceback: bool = False) -> None:
    log.error("%s: %s\n%s", task, e, "".join(traceback.format_exception(e)))


def display_once(e: BaseException, task: str) -> None:
    display(e, task)


def run(code, task: str):
    try:
        code()
    except Exception as error:  # noqa: BLE001 - A1111's errors.run reports and goes on
        display(error, task)
