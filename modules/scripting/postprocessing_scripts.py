"""Postprocessing scripts (A1111's `scripts_postprocessing`): classes extensions subclass to add
a step to the Extras pipeline, and the runner that orders them, lays out their controls and
runs them on each image after the built-in upscale and face-restoration steps.

A script's `ui()` returns a dict of name → component; `process(pp, **values)` gets those values
by name (the API, which has no fields for them, runs every script with its UI defaults, as A1111
does). A script that raises is logged with its name and traceback, its message is kept on the
image (`pp.script_errors`, shown with the result), and the other scripts and the job go on.
"""
from __future__ import annotations

import logging
import traceback
from typing import Any, Sequence

from modules.scripting.loader import ScriptClass

log = logging.getLogger(__name__)


class ScriptPostprocessing:
    """Subclass: set `name` (and `order`: lower runs first), build controls in `ui()`, and edit
    `pp.image` / `pp.info` in `process()`."""
    filename: str | None = None
    controls: dict[str, Any] | None = None
    args_from: int | None = None
    args_to: int | None = None
    order = 1000
    name: str | None = None
    group: Any = None

    def ui(self) -> dict[str, Any]:
        return {}

    def process(self, pp: Any, **args: Any) -> None:
        pass

    def process_firstpass(self, pp: Any, **args: Any) -> None:
        """Before any script's process(); may set pp.shared.target_width / target_height."""

    def image_changed(self) -> None:
        pass


class PostprocessingScripts:
    """The postprocessing scripts of the app, in run order (order, then name)."""

    def __init__(self, classes: Sequence[ScriptClass]) -> None:
        self.scripts: list[ScriptPostprocessing] = []
        self.load_errors: list[str] = []
        for entry in classes:
            try:
                script = entry.script_class()
            except Exception as error:  # noqa: BLE001 - a broken script is left out
                self.load_errors.append(f"{entry.file.path}: {type(error).__name__}: {error}")
                log.error("Error creating postprocessing script %s\n%s",
                          entry.script_class.__name__, "".join(traceback.format_exception(error)))
                continue
            script.filename = str(entry.file.path)
            script.name = script.name or entry.script_class.__name__
            self.scripts.append(script)
        self.scripts.sort(key=lambda script: (script.order, script.name or ""))
        self._defaults: dict[str, dict[str, Any]] | None = None

    def build_controls(self, script: ScriptPostprocessing) -> dict[str, Any]:
        """The script's controls, built in the Blocks that is open now."""
        try:
            return dict(script.ui() or {})
        except Exception as error:  # noqa: BLE001 - the script runs with no arguments
            log.error("Error in ui() of postprocessing script %s (%s)\n%s", script.name,
                      script.filename, "".join(traceback.format_exception(error)))
            self.load_errors.append(f"{script.filename}: ui(): {type(error).__name__}: {error}")
            return {}

    def default_values(self) -> dict[str, dict[str, Any]]:
        """Each script's UI defaults (its controls built once in a page that is never shown)."""
        if self._defaults is None:
            import gradio as gr
            with gr.Blocks(analytics_enabled=False):
                self._defaults = {
                    script.name: {key: getattr(control, "value", None)
                                  for key, control in self.build_controls(script).items()}
                    for script in self.scripts}
        return {name: dict(values) for name, values in self._defaults.items()}

    def run(self, pp: Any, values: dict[str, dict[str, Any]] | None = None) -> None:
        """Every script on `pp`: first passes, then the steps; `values` by script name (a
        script not in it runs with its defaults)."""
        chosen = self.default_values()
        for name, script_values in (values or {}).items():
            chosen.setdefault(name, {}).update(script_values)
        for hook in ("process_firstpass", "process"):
            for script in self.scripts:
                if hook == "process" and getattr(pp, "disable_processing", False):
                    break
                try:
                    getattr(script, hook)(pp, **chosen.get(script.name, {}))
                except Exception as error:  # noqa: BLE001 - one script must not stop the job
                    message = (f"Postprocessing script '{script.name}' failed in {hook}(): "
                               f"{type(error).__name__}: {error}")
                    log.error("%s (%s)\n%s", message, script.filename,
                              "".join(traceback.format_exception(error)))
                    pp.script_errors.append(message)
