"""One tab's scripts (A1111's ScriptRunner): which are selectable and which always on, the global
script-args array and each script's slice of it, the API's way of filling it (a1111-compat.md
§8.3), and calling the hooks.

A hook that raises is logged with the script's title, file and traceback, and its message is
added to the job's `script_errors` (shown with the result); the other scripts and the job go on.
"""
from __future__ import annotations

import logging
import traceback
from typing import Any, Sequence

from modules.scripting.loader import ScriptClass
from modules.scripting.script import AlwaysVisible, Script

log = logging.getLogger(__name__)


class ScriptArgsError(ValueError):
    """A request's script_name / alwayson_scripts that A1111 answers with 422 (its texts)."""


class ScriptDisabledError(ScriptArgsError):
    """A request names a script this server keeps off (its show() is False, and it says why
    in `disabled_reason`, as Custom code does without --allow-code): the API answers 403."""


class ScriptRunFailed(RuntimeError):
    """A selectable script's run() raised: the message names the script. `bad_input` when it
    refused its arguments (a ValueError: an unknown sampler, a range it cannot read, a job above
    the server limits), which the API answers with 422 rather than 500."""

    def __init__(self, message: str, *, bad_input: bool = False) -> None:
        super().__init__(message)
        self.bad_input = bad_input


class ScriptArgsError(ValueError):
    """Raised by an always-on script whose arguments cannot be used (a ControlNet unit naming an
    unknown model): unlike other always-on failures, which are reported and skipped as in
    A1111, it stops the job, and the API answers 422 with the message."""


def _default_value(control: Any) -> Any:
    return getattr(control, "value", None)


class ScriptRunner:
    def __init__(self, classes: Sequence[ScriptClass], *, is_img2img: bool) -> None:
        self.is_img2img = is_img2img
        self.tabname = "img2img" if is_img2img else "txt2img"
        self.alwayson: list[Script] = []
        self.selectable: list[Script] = []
        self.load_errors: list[str] = []
        self.hidden: list[Script] = []       # show() was False on this tab
        for entry in classes:
            script = self._create(entry)
            if script is None:
                continue
            (self.alwayson if script.alwayson else self.selectable).append(script)
        self._default_args: list[Any] | None = None

    def _create(self, entry: ScriptClass) -> Script | None:
        try:
            script = entry.script_class()
            script.filename = str(entry.file.path)
            script.is_txt2img, script.is_img2img = not self.is_img2img, self.is_img2img
            script.tabname = self.tabname
            visibility = script.show(self.is_img2img)
            if not visibility:
                self.hidden.append(script)
                return None
            script.alwayson = visibility is AlwaysVisible
            script.name = script.title().lower()
            return script
        except Exception as error:  # noqa: BLE001 - a broken script is left out, not fatal
            message = f"{entry.file.path}: {type(error).__name__}: {error}"
            log.error("Error creating script %s\n%s", entry.script_class.__name__,
                      "".join(traceback.format_exception(error)))
            self.load_errors.append(message)
            return None

    @property
    def scripts(self) -> list[Script]:
        """Always-on scripts first, then selectable ones: the order of the args array."""
        return [*self.alwayson, *self.selectable]

    # -- the global args array ------------------------------------------------------------------
    def default_args(self) -> list[Any]:
        """[selected script index (0 = none), then each script's UI defaults in its slice]; the
        scripts' ui() is called once, in a page of its own that is never shown (as A1111's API
        does), so layout blocks (`with gr.Accordion(...)`) work in API-only mode too."""
        if self._default_args is None:
            import gradio as gr     # scripts' ui() builds Gradio components

            args: list[Any] = [0]
            with gr.Blocks(analytics_enabled=False):
                for script in self.scripts:
                    controls = self._create_controls(script)
                    script.controls = controls
                    script.args_from = len(args)
                    args.extend(_default_value(control) for control in controls)
                    script.args_to = len(args)
            self._default_args = args
        return list(self._default_args)

    def _create_controls(self, script: Script) -> list[Any]:
        try:
            return list(script.ui(self.is_img2img) or [])
        except Exception as error:  # noqa: BLE001 - its args stay empty
            log.error("Error in ui() of script %s (%s)\n%s", script.title(), script.filename,
                      "".join(traceback.format_exception(error)))
            self.load_errors.append(f"{script.filename}: ui(): {type(error).__name__}: {error}")
            return []

    def find(self, title: str) -> Script | None:
        wanted = title.lower()
        return next((script for script in self.scripts if script.title().lower() == wanted), None)

    def _refuse_hidden(self, title: str) -> None:
        wanted = title.lower()
        for script in self.hidden:
            reason = getattr(script, "disabled_reason", None)
            if reason and script.title().lower() == wanted:
                raise ScriptDisabledError(f"Script '{script.title()}' is disabled: {reason}")

    def request_args(self, script_name: str | None, script_args: Sequence[Any] | None,
                     alwayson_scripts: dict[str, Any] | None) -> list[Any]:
        """§8.3: the args array for an API request; ScriptArgsError with A1111's 422 texts."""
        args = self.default_args()
        if script_name:
            script = self.find(script_name)
            if script is None:
                self._refuse_hidden(script_name)
                raise ScriptArgsError(f"Script '{script_name}' not found")
            if script.alwayson:
                raise ScriptArgsError("Cannot have a selectable script in the always on "
                                      "scripts params")
            args[script.args_from:script.args_to] = list(script_args or [])
            args[0] = self.selectable.index(script) + 1
        for title, entry in (alwayson_scripts or {}).items():
            script = self.find(title)
            if script is None:
                raise ScriptArgsError(f"always on script {title} not found")
            if not script.alwayson:
                raise ScriptArgsError("Cannot have a selectable script in the always on scripts "
                                      "params")
            given = list((entry or {}).get("args", [])) if isinstance(entry, dict) else []
            for offset, value in enumerate(given[:script.args_to - script.args_from]):
                args[script.args_from + offset] = value
        return args

    def request_fields(self, args: Sequence[Any]) -> tuple[str | None, list[Any],
                                                            dict[str, Any]]:
        """The inverse of `request_args`: a UI args array as an API request's (script_name,
        script_args, alwayson_scripts), so a UI job can travel like an API one."""
        self.default_args()   # lays out the slices
        chosen = self.selected(args)
        script_args = list(args[chosen.args_from:chosen.args_to]) if chosen else []
        alwayson = {script.title(): {"args": list(args[script.args_from:script.args_to])}
                    for script in self.alwayson if script.args_to > script.args_from}
        return (chosen.title() if chosen else None), script_args, alwayson

    def selected(self, args: Sequence[Any]) -> Script | None:
        index = int(args[0] or 0) if args else 0
        return self.selectable[index - 1] if 0 < index <= len(self.selectable) else None

    # -- hooks ---------------------------------------------------------------------------------
    def run(self, p, args: Sequence[Any]):
        """The selected script's run(p, *its args): its Processed, or None when none is chosen."""
        script = self.selected(args)
        if script is None:
            return None
        try:
            return script.run(p, *args[script.args_from:script.args_to])
        except Exception as error:
            log.error("Error running script %s (%s)\n%s", script.title(), script.filename,
                      "".join(traceback.format_exception(error)))
            raise ScriptRunFailed(f"Script '{script.title()}' failed: "
                                  f"{type(error).__name__}: {error}",
                                  bad_input=isinstance(error, ValueError)) from error

    def call(self, hook: str, p, *leading: Any, **kwargs: Any) -> None:
        """`script.<hook>(p, *leading, *script_args, **kwargs)` for every always-on script, in
        load order (a selectable script does its work in run())."""
        args = list(getattr(p, "script_args", None) or self.default_args())
        for script in self.alwayson:
            try:
                getattr(script, hook)(p, *leading, *args[script.args_from:script.args_to],
                                      **kwargs)
            except ScriptArgsError as error:
                raise ScriptRunFailed(f"Script '{script.title()}': {error}",
                                      bad_input=True) from error
            except Exception as error:  # noqa: BLE001 - one script must not break the job
                message = (f"Script '{script.title()}' failed in {hook}(): "
                           f"{type(error).__name__}: {error}")
                log.error("%s (%s)\n%s", message, script.filename,
                          "".join(traceback.format_exception(error)))
                errors = getattr(p, "script_errors", None)
                if isinstance(errors, list):
                    errors.append(message)
