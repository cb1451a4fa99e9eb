"""A1111 compatibility view: `modules.script_callbacks` as extensions import it.

Each `on_<kind>(callback, *, name=None)` registers with the application's callback registry
(modules/scripting/callbacks.py); this module holds only which registry is in use (the app sets it
at start-up, tests may swap it). No logic lives here.
"""
from __future__ import annotations

from typing import Any, Callable

from modules.processing.images import ImageSaveParams  # noqa: F401 - re-exported for extensions
from modules.scripting.callback_params import (  # noqa: F401 - re-exported for extensions
    AfterCFGCallbackParams, BeforeTokenCounterParams, CFGDenoisedParams, CFGDenoiserParams,
    ExtraNoiseParams, ImageGridLoopParams, UiTrainTabParams)
from modules.scripting.callbacks import CallbackRegistry

_registry = CallbackRegistry()


def registry() -> CallbackRegistry:
    """The registry extensions register with now."""
    return _registry


def use_registry(new_registry: CallbackRegistry) -> CallbackRegistry:
    """Make `new_registry` the one extensions register with; returns the previous one."""
    global _registry
    previous, _registry = _registry, new_registry
    return previous


def _register(kind: str) -> Callable[..., None]:
    def register(callback: Callable[..., Any], *, name: str | None = None) -> None:
        _registry.add(kind, callback, name=name)
    register.__name__ = f"on_{kind}"
    register.__doc__ = f"Register `callback` for the {kind} event (A1111's on_{kind})."
    return register


on_app_started = _register("app_started")
on_before_reload = _register("before_reload")
on_model_loaded = _register("model_loaded")
on_ui_tabs = _register("ui_tabs")
on_ui_train_tabs = _register("ui_train_tabs")
on_ui_settings = _register("ui_settings")
on_before_image_saved = _register("before_image_saved")
on_image_saved = _register("image_saved")
on_extra_noise = _register("extra_noise")
on_cfg_denoiser = _register("cfg_denoiser")
on_cfg_denoised = _register("cfg_denoised")
on_cfg_after_cfg = _register("cfg_after_cfg")
on_before_component = _register("before_component")
on_after_component = _register("after_component")
on_image_grid = _register("image_grid")
on_infotext_pasted = _register("infotext_pasted")
on_script_unloaded = _register("script_unloaded")
on_before_ui = _register("before_ui")
on_list_optimizers = _register("list_optimizers")
on_list_unets = _register("list_unets")
on_before_token_counter = _register("before_token_counter")


def remove_current_script_callbacks() -> None:
    """Remove the callbacks of the script file being loaded (A1111 reloads scripts this way)."""
    _registry.remove_script(_registry.current_script)


def remove_callbacks_for_function(callback: Callable[..., Any]) -> None:
    _registry.remove_function(callback)
