"""The scripts' part of the txt2img / img2img tabs (A1111's "scripts" section): each always-on
script's controls (their own accordions, as the scripts build them), then the "Script" dropdown
whose choice shows the selected script's controls.

The controls are built in the order of the runner's args array (ScriptRunner.default_args), so
their values, after the dropdown's index, are the job's `script_args` as the API builds them.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from typing import Any, Sequence

import gradio as gr

from modules.scripting.runner import ScriptRunner

log = logging.getLogger(__name__)
NO_SCRIPT = "None"


@dataclass
class ScriptControls:
    runner: ScriptRunner
    dropdown: gr.Dropdown | None
    #: every script's controls in args-array order (after the dropdown's slot)
    controls: list[Any] = field(default_factory=list)
    #: the scripts' `infotext_fields`: (component, infotext key or reader) for pasting
    paste_fields: list[tuple[Any, Any]] = field(default_factory=list)

    @property
    def inputs(self) -> list[Any]:
        """What the Generate event passes on: the dropdown (if any), then every control."""
        return ([self.dropdown] if self.dropdown is not None else []) + self.controls

    def script_args(self, values: Sequence[Any]) -> list[Any]:
        """The job's args array from the `inputs` values: [selected index, *control values]."""
        values = list(values)
        if self.dropdown is None:
            return [0, *values]
        titles = [script.title() for script in self.runner.selectable]
        chosen = values[0]
        index = titles.index(chosen) + 1 if chosen in titles else 0
        return [index, *values[1:]]


def _build_script_ui(script: Any, is_img2img: bool, defaults: list[Any],
                     paste_fields: list[tuple[Any, Any]]) -> list[Any]:
    """The script's controls in the page. An error, or a count other than the one the args
    array was laid out with, is logged and the script keeps its defaults (hidden states).
    The `infotext_fields` a script set in ui() go into `paste_fields`."""
    try:
        controls = list(script.ui(is_img2img) or [])
    except Exception as error:  # noqa: BLE001 - the page still builds
        log.error("Error building the UI of script %s\n%s", script.title(),
                  "".join(traceback.format_exception(error)))
        controls = None
    if controls is None or len(controls) != len(defaults):
        if controls is not None:
            log.error("Script %s built %d controls in the page but %d before: its defaults are "
                      "used", script.title(), len(controls), len(defaults))
        controls = [gr.State(value) for value in defaults]
    else:
        paste_fields.extend((component, key) for component, key in
                            (script.infotext_fields or []) if component is not None)
    return controls


def build_script_controls(runner: ScriptRunner) -> ScriptControls:
    """Inside the tab's left column: always-on scripts, then the Script dropdown and the
    selectable scripts' controls (each shown only while it is chosen)."""
    defaults = runner.default_args()       # lays out the args array first
    is_img2img = runner.is_img2img
    built = ScriptControls(runner, None)
    for script in runner.alwayson:
        with gr.Group():
            built.controls.extend(_build_script_ui(
                script, is_img2img, defaults[script.args_from:script.args_to],
                built.paste_fields))
    if not runner.selectable:
        return _with_defaults(built, defaults)
    titles = [script.title() for script in runner.selectable]
    built.dropdown = gr.Dropdown([NO_SCRIPT, *titles], value=NO_SCRIPT, label="Script",
                                 elem_id=f"{runner.tabname}_script_list")
    groups = []
    for script in runner.selectable:
        with gr.Group(visible=False) as group:
            built.controls.extend(_build_script_ui(
                script, is_img2img, defaults[script.args_from:script.args_to],
                built.paste_fields))
        groups.append(group)

    def show_selected(title: str) -> list[Any]:
        return [gr.update(visible=title == script_title) for script_title in titles]

    built.dropdown.change(show_selected, inputs=[built.dropdown], outputs=groups,
                          queue=False, show_progress="hidden", api_visibility="private")
    return _with_defaults(built, defaults)


def _with_defaults(built: ScriptControls, defaults: list[Any]) -> ScriptControls:
    expected = len(defaults) - 1
    if len(built.controls) != expected:      # cannot happen when every script built its count
        raise RuntimeError(f"script controls: {len(built.controls)} built, {expected} expected")
    return built
