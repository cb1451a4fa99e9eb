"""The Gradio helpers A1111 extensions build their UI with (A1111's modules.ui_components):
FormRow, FormColumn, FormGroup, FormHTML, ToolButton, DropdownMulti and InputAccordion.

Each names the Gradio component it is drawn as (`get_block_name`): a subclass defined outside
Gradio would otherwise be taken for a custom component, whose frontend the page cannot load."""
from __future__ import annotations

from typing import Any

import gradio as gr


def _drawn_as(block_name: str):
    def get_block_name(self) -> str:
        return block_name
    return get_block_name


class FormRow(gr.Row):
    """A row of form controls."""
    get_block_name = _drawn_as("row")


class FormColumn(gr.Column):
    """A column of form controls."""
    get_block_name = _drawn_as("column")


class FormGroup(gr.Group):
    """A group of form controls."""
    get_block_name = _drawn_as("group")


class FormHTML(gr.HTML):
    """HTML inside a form."""
    get_block_name = _drawn_as("html")


class ToolButton(gr.Button):
    """A small button with an icon next to a control."""
    get_block_name = _drawn_as("button")

    def __init__(self, value: str = "", *args: Any, **kwargs: Any) -> None:
        classes = list(kwargs.pop("elem_classes", []) or []) + ["tool"]
        kwargs.setdefault("scale", 0)
        kwargs.setdefault("min_width", 40)
        super().__init__(value, *args, elem_classes=classes, **kwargs)


class DropdownMulti(gr.Dropdown):
    """A dropdown that takes several values."""
    get_block_name = _drawn_as("dropdown")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(multiselect=True, **kwargs)


class InputAccordion(gr.Checkbox):
    """An accordion whose state is an input: `with InputAccordion(False, label="X") as on:`
    puts controls in the accordion, and `on` is a checkbox (inside it, at the top) whose value
    says whether the feature is on — what scripts pass to their hooks."""
    get_block_name = _drawn_as("checkbox")

    def __init__(self, value: bool, **kwargs: Any) -> None:
        label = kwargs.pop("label", "Enable")
        elem_id = kwargs.get("elem_id")
        self.accordion = gr.Accordion(label, open=kwargs.pop("open", bool(value)),
                                      elem_id=f"{elem_id}-accordion" if elem_id else None)
        with self.accordion:
            super().__init__(value, label=f"Enable {label}" if label else "Enable", **kwargs)

    def __enter__(self) -> "InputAccordion":
        self.accordion.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.accordion.__exit__(*exc_info)
