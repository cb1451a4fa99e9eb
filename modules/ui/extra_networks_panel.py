"""The extra-networks panel of txt2img / img2img (A1111's cards): tabs Textual Inversion,
Hypernetworks, Checkpoints and Lora; search, sort and refresh; a click on a card adds its tag
(and activation text) to the prompt or takes it out again, and opens the card's metadata in the
editor below (saved to `name.json` beside the file, as A1111 does); a checkpoint card loads
that checkpoint."""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image, ImageDraw

from modules.app.network_cards import PAGES, SORTS, Card, NetworkCards, toggle_in_prompt, \
    write_user_metadata

if TYPE_CHECKING:
    from modules.app.context import AppContext

CARD_SIZE = 160


def network_cards(ctx: "AppContext") -> NetworkCards:
    current = ctx.model_manager.current
    # a context without the libraries (a UI built for tests of other parts) shows empty pages
    return NetworkCards(loras=getattr(ctx, "loras", None),
                        embeddings=getattr(ctx, "embeddings", None), checkpoints=ctx.checkpoints,
                        hypernetworks=getattr(ctx, "hypernetworks", None), options=ctx.options,
                        current_model=lambda: current().model if current() else None)


def _placeholder(name: str) -> Image.Image:
    """A card without a preview image: its initial on grey."""
    image = Image.new("RGB", (CARD_SIZE, CARD_SIZE), (72, 76, 84))
    draw = ImageDraw.Draw(image)
    draw.text((CARD_SIZE // 2, CARD_SIZE // 2), (name[:1] or "?").upper(), fill=(230, 230, 230),
              anchor="mm", font_size=64)
    return image


def gallery_items(cards: list[Card]) -> list[tuple[Any, str]]:
    return [(str(card.preview) if card.preview else _placeholder(card.name), card.name)
            for card in cards]


def _slug(page: str) -> str:
    return page.lower().replace(" ", "_")


def _editor_values(card: Card | None) -> list[Any]:
    if card is None:
        return ["", "", "", "", 0, "", ""]
    meta = card.metadata
    try:
        weight = float(meta.get("preferred weight") or 0)
    except (TypeError, ValueError):
        weight = 0.0
    return [str(card.path), f"{card.page}: {card.name}", str(meta.get("description") or ""),
            str(meta.get("activation text") or ""), weight, str(meta.get("negative text") or ""),
            str(meta.get("notes") or "")]


def extra_networks_panel(ctx: "AppContext", tab_id: str, prompt: gr.Textbox,
                         negative_prompt: gr.Textbox) -> None:
    """The panel (inside the open tab, under the prompts), wired to the tab's prompt boxes."""
    cards = network_cards(ctx)
    with gr.Accordion("Extra networks", open=False, elem_id=f"{tab_id}_extra_networks"):
        with gr.Row():
            search = gr.Textbox(show_label=False, placeholder="Search…", container=False,
                                elem_id=f"{tab_id}_extra_search", scale=3)
            sort = gr.Dropdown(list(SORTS), value="Name", show_label=False, container=False,
                               elem_id=f"{tab_id}_extra_sort", scale=1)
            descending = gr.Checkbox(label="Descending", elem_id=f"{tab_id}_extra_descending",
                                     scale=0)
            refresh = gr.Button("Refresh", elem_id=f"{tab_id}_extra_refresh", scale=0)
        galleries, shown = [], []
        with gr.Tabs(elem_id=f"{tab_id}_extra_tabs"):
            for page in PAGES:
                listed = cards.listing(page)
                with gr.Tab(page, elem_id=f"{tab_id}_{_slug(page)}_cards_tab"):
                    galleries.append(gr.Gallery(
                        value=gallery_items(listed), show_label=False,
                        columns=6, height=380, allow_preview=False, object_fit="cover",
                        elem_id=f"{tab_id}_{_slug(page)}_cards", elem_classes=["extra-cards"]))
                    shown.append(gr.State([str(card.path) for card in listed]))
        with gr.Accordion("Card metadata", open=False, elem_id=f"{tab_id}_extra_editor"):
            selected = gr.Textbox(visible=False, elem_id=f"{tab_id}_extra_selected_path")
            card_name = gr.Textbox(label="Card", interactive=False,
                                   elem_id=f"{tab_id}_extra_card_name")
            description = gr.Textbox(label="Description", lines=2,
                                     elem_id=f"{tab_id}_extra_description")
            activation = gr.Textbox(label="Activation text",
                                    elem_id=f"{tab_id}_extra_activation_text")
            weight = gr.Number(label="Preferred weight (0: the default multiplier)", value=0,
                               elem_id=f"{tab_id}_extra_preferred_weight")
            negative_text = gr.Textbox(label="Negative text",
                                       elem_id=f"{tab_id}_extra_negative_text")
            notes = gr.Textbox(label="Notes", lines=2, elem_id=f"{tab_id}_extra_notes")
            save = gr.Button("Save metadata", elem_id=f"{tab_id}_extra_save")
        message = gr.HTML(elem_id=f"{tab_id}_extra_message")
    editor = [selected, card_name, description, activation, weight, negative_text, notes]

    def relist(text: str, order: str, reverse: bool) -> list[Any]:
        updates, paths = [], []
        for page in PAGES:
            listed = cards.listing(page, text, order, bool(reverse))
            updates.append(gr.update(value=gallery_items(listed)))
            paths.append([str(card.path) for card in listed])
        return updates + paths

    def on_refresh(text: str, order: str, reverse: bool) -> list[Any]:
        for registry in (cards.loras, cards.embeddings):
            if registry is not None:
                registry.refresh()
        ctx.checkpoints.refresh()
        return relist(text, order, reverse)

    listing_inputs = [search, sort, descending]
    for trigger in (search.change, sort.change, descending.change):
        trigger(relist, listing_inputs, galleries + shown, show_progress="hidden")
    refresh.click(on_refresh, listing_inputs, galleries + shown, show_progress="hidden")

    for page, gallery, paths in zip(PAGES, galleries, shown):
        def on_select(paths_shown: list[str], text: str, negative: str,
                      event: gr.SelectData, page: str = page) -> list[Any]:
            card = cards.find(page, paths_shown[event.index]) \
                if 0 <= event.index < len(paths_shown) else None
            # the gallery stays a grid of cards (no large preview of the clicked one)
            grid = gr.update(selected_index=None)
            if card is None:
                return [text, negative, *_editor_values(None),
                        "<p class='error'>That card is gone; press Refresh.</p>", grid]
            note = ""
            separator = str(ctx.options.get("extra_networks_add_text_separator") or " ")
            if page == "Checkpoints":
                from modules.ui.quicksettings import change_checkpoint
                note = change_checkpoint(ctx, card.title) or \
                    f"<p>Loaded {html.escape(card.title)}</p>"
            else:
                text = toggle_in_prompt(text, card.prompt_text(separator), separator)
                negative_extra = str(card.metadata.get("negative text") or "").strip()
                if negative_extra:
                    negative = toggle_in_prompt(negative, negative_extra, separator)
            return [text, negative, *_editor_values(card), note, grid]

        gallery.select(on_select, [paths, prompt, negative_prompt],
                       [prompt, negative_prompt, *editor, message, gallery],
                       show_progress="hidden")

    def on_save(path: str, description_text: str, activation_text: str, preferred: float,
                negative: str, note_text: str, text: str, order: str,
                reverse: bool) -> list[Any]:
        if not path or not Path(path).is_file():
            return ["<p class='error'>Click a card first.</p>",
                    *relist(text, order, reverse)]
        write_user_metadata(Path(path), {
            "description": description_text.strip(), "activation text": activation_text.strip(),
            "preferred weight": float(preferred or 0), "negative text": negative.strip(),
            "notes": note_text.strip()})
        return [f"<p>Saved {html.escape(Path(path).stem)}.json</p>", *relist(text, order, reverse)]

    save.click(on_save, [selected, description, activation, weight, negative_text, notes,
                         *listing_inputs], [message, *galleries, *shown])
