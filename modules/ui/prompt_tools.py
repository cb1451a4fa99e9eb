"""Conveniences of the prompt row, as A1111 has them: the live token counter of each prompt box,
the styles row (apply, save, edit, delete; styles.csv), "Read generation parameters" (↙️) from an
infotext in the prompt box. Generate forever, Ctrl+Up / Ctrl+Down attention editing and the
mouse-over hints are browser-side (javascript/)."""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import gradio as gr
from PIL import Image

from modules.engine.conditioning import count_prompt_tokens, target_token_count, tokenize_prompt
from modules.engine.prompt_parser import strip_prompt_comments
from modules.engine.samplers import get_sampler_and_scheduler
from modules.engine.tokenizer import ClipTokenizer, get_clip_tokenizer
from modules.processing.images import read_info_from_image
from modules.processing.infotext import infotext_to_api_fields, parse_generation_parameters
from modules.processing.styles import PromptStyle, StyleDatabase

if TYPE_CHECKING:
    from modules.app.context import AppContext
    from modules.ui.common import PromptControls

log = logging.getLogger(__name__)

PASTE_SYMBOL = "\u2199\ufe0f"        # ↙️
CLEAR_PROMPT_SYMBOL = "\U0001f5d1\ufe0f"   # 🗑️
APPLY_STYLE_SYMBOL = "\u270d\ufe0f"   # ✍️
DEFAULT_COUNTER_STEPS = 20           # schedules are expanded over this many steps without a slider
USE_SAME_CHECKPOINT = "Use same checkpoint"


# -- token counter -------------------------------------------------------------------------------
class TokenCounter:
    """Counts the tokens of prompt texts with the CLIP BPE rules of the conditioning code
    (chunks of 75, BREAK, comma backtrack) without loading a model: the interface of
    PromptEncoder.count_tokens, so count_prompt_tokens can use it."""

    def __init__(self, tokenizer: ClipTokenizer, *, emphasis: str = "Original",
                 comma_padding_backtrack: int = 20) -> None:
        self.tokenizer = tokenizer
        self.emphasis = emphasis
        self.comma_padding_backtrack = comma_padding_backtrack

    def count_tokens(self, text: str) -> tuple[int, int]:
        _, token_count = tokenize_prompt(text, self.tokenizer, emphasis=self.emphasis,
                                         comma_padding_backtrack=self.comma_padding_backtrack)
        return token_count, target_token_count(token_count)


def token_counter_for_options(options: Any, tokenizer: Any = None) -> TokenCounter:
    """A counter following the current settings (emphasis mode, comma backtrack), with CLIP's
    tokenizer unless the loaded model brings its own (Alt-Diffusion)."""
    return TokenCounter(tokenizer or get_clip_tokenizer(), emphasis=str(options.get("emphasis")),
                        comma_padding_backtrack=int(options.get("comma_padding_backtrack")))


def count_ui_prompt_tokens(counter: TokenCounter, prompt: str, steps: float | None, *,
                           is_positive: bool = True, strip_comments: bool = True) -> tuple[int, int]:
    """(tokens, limit) the counter shows: comments removed, then A1111's rules (extra-network
    tags removed, AND split, the longest text of the prompt-editing schedule)."""
    text = strip_prompt_comments(prompt or "") if strip_comments else (prompt or "")
    schedule_steps = max(1, int(steps or DEFAULT_COUNTER_STEPS))
    return count_prompt_tokens(counter, text, schedule_steps, is_positive=is_positive)


def token_counter_html(tokens: int, limit: int) -> str:
    """The counter's text: "12/75", "80/150"."""
    return f"<span>{tokens}/{limit}</span>"


def token_counter_update(ctx: "AppContext", prompt: str, steps: float | None,
                         is_positive: bool) -> str:
    """The counter's HTML; extensions' on_before_token_counter may change the prompt counted
    (a wildcard extension counts what it will put there)."""
    from modules.scripting.callback_params import BeforeTokenCounterParams
    params = BeforeTokenCounterParams(prompt or "", int(steps or 0), [], is_positive)
    ctx.scripts.callbacks.run("before_token_counter", params)
    prompt = params.prompt
    loaded = ctx.model_manager.current() if ctx.model_manager is not None else None
    try:
        counter = token_counter_for_options(ctx.options,
                                            getattr(loaded.model, "tokenizer", None)
                                            if loaded else None)
        tokens, limit = count_ui_prompt_tokens(
            counter, prompt, steps, is_positive=is_positive,
            strip_comments=bool(ctx.options.get("enable_prompt_comments")))
    except Exception as error:  # noqa: BLE001 - a counter must never break typing
        log.warning("token counter failed: %s", error)
        return token_counter_html(0, 75)
    return token_counter_html(tokens, limit)


# -- styles --------------------------------------------------------------------------------------
def apply_selected_styles(style_db: StyleDatabase, prompt: str, negative_prompt: str,
                          names: Sequence[str] | None) -> tuple[str, str, list[str]]:
    """A1111's "Apply styles": the selected styles are merged into the prompt texts and the
    selection is cleared (so generation does not apply them a second time)."""
    names = list(names or [])
    return (style_db.apply_styles_to_prompt(prompt or "", names),
            style_db.apply_negative_styles_to_prompt(negative_prompt or "", names), [])


def save_style(style_db: StyleDatabase, name: str, prompt: str, negative_prompt: str) -> None:
    """Add or replace the style `name` and rewrite styles.csv (atomically)."""
    name = (name or "").strip()
    if not name:
        raise ValueError("Give the style a name")
    style_db.set_style(PromptStyle(name, prompt or "", negative_prompt or ""))
    style_db.save()


def delete_style(style_db: StyleDatabase, name: str) -> None:
    style_db.delete_style((name or "").strip())
    style_db.save()


def style_texts(style_db: StyleDatabase, name: str | None) -> tuple[Any, Any]:
    """(prompt, negative prompt) of a style for the editor. A new name keeps what is in the boxes:
    the dropdown commits a typed name on blur, often after the user started on the prompt."""
    style = style_db.get((name or "").strip())
    if style is None:
        return gr.skip(), gr.skip()
    return style.prompt, style.negative_prompt


# -- read generation parameters ------------------------------------------------------------------
def parse_pasted_infotext(text: str, *, options: Any, style_db: StyleDatabase | None = None,
                          on_parsed: Any = None) -> dict[str, Any]:
    """The infotext's fields as pasting reads them (skipped fields and styles per the settings);
    `on_parsed(text, params)` may edit them (the extensions' on_infotext_pasted)."""
    styles_mode = str(options.get("infotext_styles"))
    params = parse_generation_parameters(
        text, skip_fields=list(options.get("infotext_skip_pasting") or []),
        style_db=style_db if styles_mode != "Ignore" else None, infotext_styles=styles_mode)
    if on_parsed is not None:
        on_parsed(text, params)
    return params


def infotext_ui_values(text: str, *, options: Any, style_db: StyleDatabase | None = None,
                       checkpoint_title: Any = None, on_parsed: Any = None,
                       params: dict[str, Any] | None = None) -> dict[str, Any]:
    """An infotext (or its already parsed `params`) as values of the tab's controls, keyed by
    the tabs' input names (the request field names, plus `enable_refiner`).
    `checkpoint_title(alias)` maps a "name [hash]" to a title of the checkpoint dropdowns (None
    when unknown)."""
    styles_mode = str(options.get("infotext_styles"))
    if params is None:
        params = parse_pasted_infotext(text, options=options, style_db=style_db,
                                       on_parsed=on_parsed)
    values = infotext_to_api_fields(params)
    if "Sampler" in params:
        # legacy names such as "DPM++ 2M Karras" carry the schedule type
        values["sampler_name"], values["scheduler"] = get_sampler_and_scheduler(
            params["Sampler"], params.get("Schedule type"), convert_automatic=False)
    if "styles" in values and styles_mode == "Discard":
        del values["styles"]
    refiner = values.pop("refiner_checkpoint", None)
    values["enable_refiner"] = bool(refiner)
    if refiner:
        values["refiner_checkpoint"] = _checkpoint_title(refiner, checkpoint_title)
    hires_checkpoint = values.get("hr_checkpoint_name")
    if hires_checkpoint and hires_checkpoint != USE_SAME_CHECKPOINT:
        values["hr_checkpoint_name"] = _checkpoint_title(hires_checkpoint, checkpoint_title)
    if "inpaint_full_res" in values:
        values["inpaint_full_res"] = int(values["inpaint_full_res"])   # the radio's index
    return values


def _checkpoint_title(alias: str, checkpoint_title: Any) -> str:
    found = checkpoint_title(alias) if checkpoint_title is not None else None
    return found or alias


def _choice_values(component: Any) -> list[Any] | None:
    """The values a Dropdown / Radio accepts (None for other components)."""
    choices = getattr(component, "choices", None)
    if choices is None:
        return None
    return [choice[1] if isinstance(choice, (tuple, list)) else choice for choice in choices]


def fit_value(component: Any, value: Any) -> Any:
    """`value` as `component` accepts it, or gr.skip() when it cannot: a choice the dropdown
    lacks is left alone (Gradio would reject the next Generate), numbers are clamped to a
    slider's range, a Radio of type "index" gets an index."""
    choices = _choice_values(component)
    if choices is not None:
        if getattr(component, "type", "value") == "index":
            if isinstance(value, int) and 0 <= value < len(choices):
                return value
            return choices.index(value) if value in choices else gr.skip()
        if getattr(component, "multiselect", False):
            kept = [item for item in (value or []) if item in choices]
            return kept
        if value in choices or getattr(component, "allow_custom_value", False):
            return value
        log.info("pasted value %r is not a choice of %s; kept the current one", value,
                 getattr(component, "label", component))
        return gr.skip()
    minimum, maximum = getattr(component, "minimum", None), getattr(component, "maximum", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and minimum is not None and maximum is not None:
        return min(max(value, minimum), maximum)
    return value


def pasted_updates(values: Mapping[str, Any], components: Mapping[str, Any]) -> list[Any]:
    """One output per component (in `components` order): the pasted value, or gr.skip()."""
    return [fit_value(component, values[name]) if name in values else gr.skip()
            for name, component in components.items()]


def script_field_updates(params: Mapping[str, Any],
                         script_fields: Sequence[tuple[Any, Any]]) -> list[Any]:
    """The scripts' own `infotext_fields` (A1111's Script API): (component, infotext key or
    function of the parsed infotext) → one output per component; absent → unchanged."""
    updates = []
    for component, key in script_fields:
        try:
            value = key(params) if callable(key) else params.get(key)
        except Exception as error:  # noqa: BLE001 - an extension's reader must not stop pasting
            log.error("pasting into %s failed: %s", getattr(component, "label", component),
                      error)
            value = None
        updates.append(gr.skip() if value is None else fit_value(component, value))
    return updates


def read_generation_parameters(ctx: "AppContext", text: str, components: Mapping[str, Any],
                               script_fields: Sequence[tuple[Any, Any]] = ()) -> list[Any]:
    """The ↙️ button: the infotext in the prompt box (or, when the box is empty, the last
    generation's params.txt) sets every control of the tab it names, and the scripts' controls
    their `infotext_fields` name (outputs: `components`, then the scripts' components)."""
    if not (text or "").strip():
        params_file = ctx.paths.params_file
        text = params_file.read_text(encoding="utf-8") if params_file.is_file() else ""
    if not text.strip():
        return [gr.skip() for _ in range(len(components) + len(script_fields))]

    def checkpoint_title(alias: str) -> str | None:
        info = ctx.checkpoints.get_closest(alias)
        return info.title if info is not None else None

    params = parse_pasted_infotext(text, options=ctx.options, style_db=ctx.styles,
                                   on_parsed=ctx.scripts.infotext_pasted)
    values = infotext_ui_values(text, options=ctx.options, checkpoint_title=checkpoint_title,
                                params=params)
    return pasted_updates(values, components) + script_field_updates(params, script_fields)


# -- layout and wiring ---------------------------------------------------------------------------
@dataclass
class StylesControls:
    """The styles dropdown beside Generate and the styles editor below the prompts."""
    selected: gr.Dropdown
    apply: gr.Button
    edit_name: gr.Dropdown
    edit_prompt: gr.Textbox
    edit_negative: gr.Textbox
    copy: gr.Button
    save: gr.Button
    delete: gr.Button
    message: gr.HTML


def styles_dropdown(tab_id: str, style_names: Sequence[str]) -> gr.Dropdown:
    return gr.Dropdown(list(style_names), value=[], multiselect=True, label="Styles",
                       show_label=False, elem_id=f"{tab_id}_styles", container=False)


def styles_editor(tab_id: str, style_names: Sequence[str], selected: gr.Dropdown,
                  apply: gr.Button) -> StylesControls:
    """The "Styles" accordion (A1111's styles edit dialog): pick or type a name, edit, save."""
    with gr.Accordion("Styles editor", open=False, elem_id=f"{tab_id}_styles_edit"):
        with gr.Row():
            edit_name = gr.Dropdown(list(style_names), value=None, allow_custom_value=True,
                                    label="Style", elem_id=f"{tab_id}_edit_style_name")
            copy = gr.Button("Copy from prompt", elem_id=f"{tab_id}_style_copy", scale=0)
            save = gr.Button("Save", variant="primary", elem_id=f"{tab_id}_style_save", scale=0)
            delete = gr.Button("Delete", variant="stop", elem_id=f"{tab_id}_style_delete",
                               scale=0)
        edit_prompt = gr.Textbox(label="Prompt", lines=2, elem_id=f"{tab_id}_edit_style_prompt")
        edit_negative = gr.Textbox(label="Negative prompt", lines=2,
                                   elem_id=f"{tab_id}_edit_style_neg_prompt")
        message = gr.HTML(elem_id=f"{tab_id}_style_message")
    return StylesControls(selected, apply, edit_name, edit_prompt, edit_negative, copy, save,
                          delete, message)


def _quiet(**event: Any) -> dict[str, Any]:
    """Small UI helpers run outside the generation queue and out of the public API."""
    return dict(show_progress="hidden", api_visibility="private", queue=False, **event)


def wire_token_counter(ctx: "AppContext", textbox: gr.Textbox, counter: gr.HTML,
                       steps: gr.Slider | None, *, is_positive: bool) -> None:
    """Recount on every change of the text (and of the steps, which move schedule switches);
    "always_last" drops the intermediate keystrokes of fast typing."""
    inputs = [textbox] + ([steps] if steps is not None else [])

    def recount(prompt: str, step_count: float | None = None) -> str:
        return token_counter_update(ctx, prompt, step_count, is_positive)

    textbox.change(fn=recount, inputs=inputs, outputs=[counter], trigger_mode="always_last",
                   **_quiet())
    if steps is not None:
        steps.change(fn=recount, inputs=inputs, outputs=[counter], trigger_mode="always_last",
                     **_quiet())


def wire_styles(ctx: "AppContext", controls: StylesControls, prompt: gr.Textbox,
                negative_prompt: gr.Textbox) -> None:
    style_db = ctx.styles

    def on_save(name: str, style_prompt: str, style_negative: str,
                selected: list[str]) -> tuple[Any, ...]:
        try:
            save_style(style_db, name, style_prompt, style_negative)
        except (ValueError, OSError) as error:
            return gr.skip(), gr.skip(), f"<span class='error'>{html.escape(str(error))}</span>"
        names = style_db.names()
        return (gr.update(choices=names, value=[s for s in selected or [] if s in names]),
                gr.update(choices=names), f"Saved style '{html.escape(name.strip())}'")

    def on_delete(name: str, selected: list[str]) -> tuple[Any, ...]:
        if not (name or "").strip() or style_db.get(name.strip()) is None:
            return gr.skip(), gr.skip(), "", "", "<span class='error'>No such style</span>"
        try:
            delete_style(style_db, name)
        except OSError as error:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), html.escape(str(error))
        names = style_db.names()
        return (gr.update(choices=names, value=[s for s in selected or [] if s in names]),
                gr.update(choices=names, value=None), "", "",
                f"Deleted style '{html.escape(name.strip())}'")

    controls.apply.click(
        fn=lambda text, negative, names: apply_selected_styles(style_db, text, negative, names),
        inputs=[prompt, negative_prompt, controls.selected],
        outputs=[prompt, negative_prompt, controls.selected], **_quiet())
    controls.edit_name.change(fn=lambda name: style_texts(style_db, name),
                              inputs=[controls.edit_name],
                              outputs=[controls.edit_prompt, controls.edit_negative], **_quiet())
    controls.copy.click(fn=lambda text, negative: (text, negative),
                        inputs=[prompt, negative_prompt],
                        outputs=[controls.edit_prompt, controls.edit_negative], **_quiet())
    controls.save.click(fn=on_save, inputs=[controls.edit_name, controls.edit_prompt,
                                            controls.edit_negative, controls.selected],
                        outputs=[controls.selected, controls.edit_name, controls.message],
                        **_quiet())
    controls.delete.click(fn=on_delete, inputs=[controls.edit_name, controls.selected],
                          outputs=[controls.selected, controls.edit_name, controls.edit_prompt,
                                   controls.edit_negative, controls.message], **_quiet())


def wire_paste(ctx: "AppContext", paste: gr.Button, prompt: gr.Textbox,
               components: Mapping[str, Any],
               script_fields: Sequence[tuple[Any, Any]] = ()) -> None:
    """↙️ reads the prompt box's infotext into `components` (name → control of the tab) and
    the scripts' `infotext_fields`."""
    targets, fields = dict(components), list(script_fields)
    paste.click(fn=lambda text: read_generation_parameters(ctx, text, targets, fields),
                inputs=[prompt], outputs=[*targets.values(), *(c for c, _ in fields)],
                **_quiet())


def dropped_image_infotext(path: str | None) -> str:
    """The generation parameters an image dropped on a prompt box carries; a gr.Error (shown to
    the user) when it is no image or has none."""
    if not path:
        raise gr.Error("Nothing was dropped.")
    try:
        with Image.open(path) as image:
            image.load()
            infotext, _ = read_info_from_image(image)
    except (OSError, ValueError) as error:
        raise gr.Error(f"The dropped file is not an image: {error}") from error
    if not infotext:
        raise gr.Error("The dropped image holds no generation parameters.")
    return infotext


def wire_image_drop(ctx: "AppContext", dropped: gr.File, prompt: gr.Textbox,
                    components: Mapping[str, Any],
                    script_fields: Sequence[tuple[Any, Any]] = ()) -> None:
    """An image dropped on a prompt box: its infotext goes into the prompt box and sets every
    control it names, as if it had been pasted and ↙️ pressed (A1111's drag and drop)."""
    targets, fields = dict(components), list(script_fields)
    dropped.upload(fn=lambda path: (dropped_image_infotext(path), None), inputs=[dropped],
                   outputs=[prompt, dropped], **_quiet()).success(
        fn=lambda text: read_generation_parameters(ctx, text, targets, fields),
        inputs=[prompt], outputs=[*targets.values(), *(c for c, _ in fields)], **_quiet())


def wire_prompt_tools(ctx: "AppContext", prompts: "PromptControls",
                      components: Mapping[str, Any], steps: gr.Slider | None,
                      script_fields: Sequence[tuple[Any, Any]] = ()) -> None:
    """Wire the prompt row's conveniences of one tab. `components`: the tab's controls by
    input name (what ↙️ may set); `steps`: the sampling steps slider (schedules in counts);
    `script_fields`: the scripts' (component, infotext key or reader) pairs."""
    if prompts.token_counter is not None:
        wire_token_counter(ctx, prompts.prompt, prompts.token_counter, steps, is_positive=True)
    if prompts.negative_token_counter is not None:
        wire_token_counter(ctx, prompts.negative_prompt, prompts.negative_token_counter, steps,
                           is_positive=False)
    if prompts.styles is not None:
        wire_styles(ctx, prompts.styles, prompts.prompt, prompts.negative_prompt)
    if prompts.paste is not None:
        wire_paste(ctx, prompts.paste, prompts.prompt, components, script_fields)
    if prompts.dropped_image is not None:
        wire_image_drop(ctx, prompts.dropped_image, prompts.prompt, components, script_fields)
    if prompts.clear_prompt is not None:
        prompts.clear_prompt.click(fn=lambda: ("", ""), inputs=[],
                                   outputs=[prompts.prompt, prompts.negative_prompt], **_quiet())
