"""`ui-config.json` (A1111's `--ui-config-file`): defaults and limits of every labelled control.

Keys are A1111's: `<tab>/<label>/<field>`, e.g. `txt2img/Sampling steps/value`,
`txt2img/Sampling steps/maximum`, `img2img/Denoising strength/visible`. After the tabs are built
(and before the Blocks close, when Gradio freezes the page config) every labelled control is
walked: a stored field is applied when it is valid (a bad one is ignored with a warning), a
missing one is recorded with the control's current default, and the file is (re)written when
keys were added, so the first start writes the full file, as A1111 does.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import gradio as gr
from gradio.blocks import Block, BlockContext

log = logging.getLogger(__name__)

#: controls whose `value` the file may set (images, galleries and HTML have no useful default)
VALUE_COMPONENTS = (gr.Slider, gr.Number, gr.Checkbox, gr.Textbox, gr.Dropdown, gr.Radio,
                    gr.CheckboxGroup)
LIMIT_FIELDS = ("minimum", "maximum", "step")
#: tabs whose controls mirror config.json (settings) are not part of ui-config.json
EXCLUDED_TABS = frozenset({"settings"})
SETTING_ELEM_PREFIX = "setting_"


@dataclass
class UiConfigReport:
    applied: list[str] = field(default_factory=list)   # keys whose stored value was used
    ignored: list[str] = field(default_factory=list)   # "key: why" for bad stored values
    added: list[str] = field(default_factory=list)     # keys written with the current default


def labelled_components(block: Block) -> Iterator[gr.components.Component]:
    """Every component with a label under `block`, in page order."""
    for child in getattr(block, "children", None) or []:
        if isinstance(child, BlockContext):
            yield from labelled_components(child)
        elif isinstance(child, gr.components.Component) and getattr(child, "label", None):
            if not str(getattr(child, "elem_id", "") or "").startswith(SETTING_ELEM_PREFIX):
                yield child


def component_fields(component: gr.components.Component) -> list[str]:
    """The ui-config fields a control has: visible, value (simple controls), limits (numbers)."""
    fields = ["visible"]
    if isinstance(component, VALUE_COMPONENTS):
        fields.append("value")
    if isinstance(component, (gr.Slider, gr.Number)):
        fields.extend(name for name in LIMIT_FIELDS if getattr(component, name, None) is not None)
    return fields


def _choice_values(component: gr.components.Component) -> list[Any]:
    return [choice[1] if isinstance(choice, (tuple, list)) else choice
            for choice in getattr(component, "choices", None) or []]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_field(component: gr.components.Component, name: str, value: Any) -> str | None:
    """Why `value` cannot be stored in the control's `name` field, or None when it can."""
    if name == "visible":
        return None if isinstance(value, bool) else "expected true or false"
    if name in LIMIT_FIELDS:
        if not _is_number(value):
            return "expected a number"
        if name == "step" and value <= 0:
            return "step must be greater than 0"
        return None
    # name == "value"; None is an empty control (a Textbox or Number without a default)
    if value is None and not isinstance(component, (gr.Checkbox, gr.Slider)):
        return None
    if isinstance(component, gr.Checkbox):
        return None if isinstance(value, bool) else "expected true or false"
    if isinstance(component, (gr.Slider, gr.Number)):
        if not _is_number(value):
            return "expected a number"
        low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{value} is outside {low}..{high}"
        return None
    if isinstance(component, gr.Textbox):
        return None if isinstance(value, str) else "expected text"
    choices = _choice_values(component)
    multiselect = isinstance(component, gr.CheckboxGroup) or getattr(component, "multiselect", False)
    if multiselect:
        if not isinstance(value, list):
            return "expected a list"
        missing = [item for item in value if choices and item not in choices]
        return f"{missing} not among the choices" if missing else None
    if choices and value not in choices and not getattr(component, "allow_custom_value", False):
        return f"{value!r} is not one of {choices}"
    return None


def read_ui_config(path: Path) -> dict[str, Any]:
    """The stored keys; {} (with a warning) when the file is missing or not a JSON object."""
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        log.warning("Ignoring %s: %s", path, error)
        return {}
    if not isinstance(stored, dict):
        log.warning("Ignoring %s: the top level is not an object", path)
        return {}
    return stored


def write_ui_config(path: Path, values: dict[str, Any]) -> None:
    """Atomic write (temp file, then rename), as config.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(values, indent=4, ensure_ascii=False), encoding="utf-8")
    os.replace(temp, path)


def _apply_component(prefix: str, component: gr.components.Component, stored: dict[str, Any],
                     report: UiConfigReport) -> None:
    path = f"{prefix}/{component.label}"
    # limits before the value, so a new maximum lets a larger default in
    for name in sorted(component_fields(component), key=lambda n: n == "value"):
        key = f"{path}/{name}"
        if key not in stored:
            stored[key] = getattr(component, name)
            report.added.append(key)
            continue
        problem = validate_field(component, name, stored[key])
        if problem is not None:
            log.warning("ui-config: ignoring %s = %r (%s)", key, stored[key], problem)
            report.ignored.append(f"{key}: {problem}")
            continue
        setattr(component, name, stored[key])
        report.applied.append(key)


def apply_ui_config(tab_blocks: Sequence[tuple[str, Block]], path: Path) -> UiConfigReport:
    """Apply `path` to the labelled controls of each (tab id, tab block) and write back the
    keys that were missing. Call inside the `gr.Blocks` context, after the tabs are built."""
    path = Path(path)
    stored = read_ui_config(path)
    report = UiConfigReport()
    for prefix, block in tab_blocks:
        if prefix in EXCLUDED_TABS:
            continue
        for component in labelled_components(block):
            _apply_component(prefix, component, stored, report)
    if report.added:
        try:
            write_ui_config(path, stored)
        except OSError as error:
            log.warning("Cannot write %s: %s", path, error)
    return report
