""""Send to txt2img / img2img / inpaint / extras" (A1111's `infotext_utils` paste buttons).

A source (PNG Info, a result gallery) asks the build's `SendToRegistry` for its buttons while its
tab is built; once every tab exists, `wire` connects each button to its target, found by the
target's elem_ids: the top-level tab (and the img2img mode sub-tab) is selected, the image goes
into the target's image input, and the fields the infotext names (prompt, sampler, steps, seed,
size …) are filled. A target that is not on the page (a custom tab list) gets no event.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import gradio as gr
from PIL import Image

from modules.processing.infotext import infotext_to_api_fields, parse_generation_parameters

log = logging.getLogger(__name__)


def components_by_elem_id(blocks: gr.Blocks) -> dict[str, Any]:
    """The page's blocks by elem_id (the first one built wins a repeated id)."""
    found: dict[str, Any] = {}
    for block in blocks.blocks.values():
        if getattr(block, "elem_id", None):
            found.setdefault(block.elem_id, block)
    return found


@dataclass(frozen=True)
class SendTarget:
    name: str                        # the button's target: "txt2img", "inpaint" …
    label: str                       # the button's text
    tab_id: str                      # top-level tab to select
    image_elem_id: str | None        # the image input that receives the picture
    fields_prefix: str | None        # elem_id prefix of the prompt/sampler/size fields
    mode_tabs: tuple[str, str] | None = None   # (elem_id of a gr.Tabs, tab id to select in it)
    image_editor: bool = False       # the input is a gr.ImageEditor (value is a dict)


SEND_TARGETS: tuple[SendTarget, ...] = (
    SendTarget("txt2img", "Send to txt2img", "txt2img", None, "txt2img"),
    SendTarget("img2img", "Send to img2img", "img2img", "img2img_image", "img2img",
               ("mode_img2img", "img2img_img2img_tab")),
    SendTarget("inpaint", "Send to inpaint", "img2img", "img2maskimg", "img2img",
               ("mode_img2img", "img2img_inpaint_tab"), image_editor=True),
    SendTarget("extras", "Send to extras", "extras", "extras_image", None,
               ("mode_extras", "extras_single_tab")),
)

#: request field → elem_id suffix of the txt2img / img2img control that shows it
FIELD_ELEM_SUFFIXES: dict[str, str] = {
    "prompt": "prompt", "negative_prompt": "neg_prompt", "steps": "steps",
    "sampler_name": "sampling", "scheduler": "scheduler", "cfg_scale": "cfg_scale",
    "seed": "seed", "width": "width", "height": "height", "batch_size": "batch_size",
}
IMG2IMG_ONLY_FIELDS: dict[str, str] = {"denoising_strength": "denoising_strength"}
SEED_FIELDS = ("seed",)
SIZE_FIELDS = ("width", "height")


def infotext_field_values(infotext: str, prefix: str, *, send_seed: bool = True,
                          send_size: bool = True) -> dict[str, Any]:
    """elem_id → value of the target tab's fields named by `infotext` (A1111's paste). The
    options `send_seed` / `send_size` leave the seed / size untouched when off."""
    if not infotext or not infotext.strip():
        return {}
    fields = infotext_to_api_fields(parse_generation_parameters(infotext))
    suffixes = dict(FIELD_ELEM_SUFFIXES)
    if prefix == "img2img":
        suffixes.update(IMG2IMG_ONLY_FIELDS)
    skipped = (() if send_seed else SEED_FIELDS) + (() if send_size else SIZE_FIELDS)
    return {f"{prefix}_{suffix}": fields[name] for name, suffix in suffixes.items()
            if name in fields and name not in skipped}


def _image_and_infotext(image: Any, infotext: str) -> tuple[Any, str]:
    return image, infotext


@dataclass
class SendSource:
    source_id: str
    inputs: list[gr.components.Component]
    buttons: dict[str, gr.Button]
    #: the inputs' values → (picture to send, its infotext); default: inputs are (image, text)
    resolve: Callable[..., tuple[Any, str]] = _image_and_infotext


@dataclass
class SendToRegistry:
    """One per built UI: the sources and their buttons, wired to targets after all tabs exist."""
    sources: list[SendSource] = field(default_factory=list)

    def add_buttons(self, source_id: str, image: gr.components.Component,
                    infotext: gr.components.Component,
                    targets: Sequence[str] = ("txt2img", "img2img", "inpaint", "extras"),
                    ) -> dict[str, gr.Button]:
        """Create the buttons (in a new row of the current layout) and remember them for
        `wire`: `image` and the infotext text box are sent as they are."""
        with gr.Row(elem_id=f"{source_id}_send_to_buttons"):
            return self.add_source(source_id, [image, infotext], _image_and_infotext, targets)

    def add_source(self, source_id: str, inputs: Sequence[gr.components.Component],
                   resolve: Callable[..., tuple[Any, str]],
                   targets: Sequence[str]) -> dict[str, gr.Button]:
        """Buttons (in the current layout) that send what `resolve(*input values)` picks, e.g.
        the selected image of a gallery and its own infotext."""
        by_name = {target.name: target for target in SEND_TARGETS}
        buttons = {name: gr.Button(by_name[name].label, elem_id=f"{source_id}_send_to_{name}",
                                   size="sm") for name in targets}
        self.sources.append(SendSource(source_id, list(inputs), buttons, resolve))
        return buttons

    def wire(self, blocks: gr.Blocks, main_tabs: gr.Tabs,
             options_flags: Callable[[], tuple[bool, bool]] = lambda: (True, True)) -> list[str]:
        """Connect every button whose target is on the page; returns "source->target" names.
        `options_flags()` gives (send_seed, send_size) at click time. Call inside `blocks`."""
        by_elem_id = components_by_elem_id(blocks)
        wired: list[str] = []
        for source in self.sources:
            for name, button in source.buttons.items():
                target = next(t for t in SEND_TARGETS if t.name == name)
                if not _tab_exists(main_tabs, target.tab_id):
                    continue
                _wire_button(source, button, target, main_tabs, by_elem_id, options_flags)
                wired.append(f"{source.source_id}->{name}")
        return wired


def _tab_exists(main_tabs: gr.Tabs, tab_id: str) -> bool:
    return any(getattr(child, "id", None) == tab_id for child in main_tabs.children)


def _target_fields(target: SendTarget, by_elem_id: dict[str, Any]) -> dict[str, Any]:
    if target.fields_prefix is None:
        return {}
    suffixes = dict(FIELD_ELEM_SUFFIXES)
    if target.fields_prefix == "img2img":
        suffixes.update(IMG2IMG_ONLY_FIELDS)
    names = (f"{target.fields_prefix}_{suffix}" for suffix in suffixes.values())
    return {name: by_elem_id[name] for name in names if name in by_elem_id}


def send_values(target: SendTarget, image: Any, infotext: str, field_ids: Sequence[str], *,
                send_seed: bool = True, send_size: bool = True) -> tuple[Any, list[Any]]:
    """(value for the image input, field values in `field_ids` order): what one click puts into
    the target. Fields the infotext does not name are left as they are (gr.update())."""
    picture = image
    if target.image_editor and isinstance(picture, Image.Image):
        picture = {"background": picture, "layers": [], "composite": picture}
    values = infotext_field_values(infotext or "", target.fields_prefix or "",
                                   send_seed=send_seed, send_size=send_size) \
        if target.fields_prefix else {}
    return picture, [values.get(elem_id, gr.update()) for elem_id in field_ids]


def _wire_button(source: SendSource, button: gr.Button, target: SendTarget, main_tabs: gr.Tabs,
                 by_elem_id: dict[str, Any],
                 options_flags: Callable[[], tuple[bool, bool]]) -> None:
    fields = _target_fields(target, by_elem_id)
    image_input = by_elem_id.get(target.image_elem_id) if target.image_elem_id else None
    mode_tabs = by_elem_id.get(target.mode_tabs[0]) if target.mode_tabs else None
    outputs: list[Any] = [main_tabs]
    if mode_tabs is not None:
        outputs.append(mode_tabs)
    if image_input is not None:
        outputs.append(image_input)
    outputs.extend(fields.values())
    field_ids = list(fields)

    def send(*values: Any) -> list[Any]:
        image, infotext = source.resolve(*values)
        send_seed, send_size = options_flags()
        picture, field_values = send_values(target, image, infotext, field_ids,
                                               send_seed=send_seed, send_size=send_size)
        updates: list[Any] = [gr.Tabs(selected=target.tab_id)]
        if mode_tabs is not None:
            updates.append(gr.Tabs(selected=target.mode_tabs[1]))
        if image_input is not None:
            updates.append(picture if picture is not None else gr.update())
        return updates + field_values

    button.click(send, inputs=source.inputs, outputs=outputs,
                 show_progress="hidden", api_visibility="private")
