"""The extra-networks cards (A1111's panel under the prompts): one card per embedding,
hypernetwork, checkpoint and LoRA, with its preview (`name.preview.png`, `name.png`, …), its
description and the user metadata A1111 keeps beside the file in `name.json` (description,
activation text, preferred weight, negative text, notes, sd version, vae); what a click adds to
the prompt; search and sort.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAGES = ("Textual Inversion", "Hypernetworks", "Checkpoints", "Lora")
PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")
SORTS = ("Name", "Date modified", "Path")
#: the keys of A1111's user-metadata editor (what `name.json` holds)
USER_METADATA_KEYS = ("description", "activation text", "preferred weight", "negative text",
                      "notes", "sd version", "vae")


def metadata_path(path: Path) -> Path:
    return path.with_name(path.stem + ".json")


def read_user_metadata(path: Path) -> dict[str, Any]:
    """`name.json` beside a network file ({} when absent or unreadable)."""
    try:
        data = json.loads(metadata_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_user_metadata(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Merge `values` into `name.json` (other keys kept; empty values dropped), written
    atomically; returns what the file now holds."""
    data = read_user_metadata(path)
    for key, value in values.items():
        if value in (None, "") or (key == "preferred weight" and not value):
            data.pop(key, None)
        else:
            data[key] = value
    target = metadata_path(path)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=4, ensure_ascii=False)
    os.replace(temporary, target)
    return data


def find_preview(path: Path) -> Path | None:
    """A1111's preview search: `name.<ext>` then `name.preview.<ext>` (an embedding stored in a
    PNG is its own preview)."""
    if path.suffix.lower() in (".png", ".webp"):
        return path
    base = path.with_suffix("")
    for middle in ("", ".preview"):
        for extension in PREVIEW_EXTENSIONS:
            candidate = Path(f"{base}{middle}.{extension}")
            if candidate.is_file():
                return candidate
    return None


@dataclass
class Card:
    page: str
    name: str                   # shown on the card
    path: Path
    tag: str                    # what a click adds to the prompt ("" for checkpoints)
    metadata: dict[str, Any] = field(default_factory=dict)
    preview: Path | None = None
    title: str = ""             # checkpoints: the title a click loads

    @property
    def description(self) -> str:
        text_file = self.path.with_suffix(".txt")
        if self.metadata.get("description"):
            return str(self.metadata["description"])
        try:
            return text_file.read_text(encoding="utf-8").strip() if text_file.is_file() else ""
        except OSError:
            return ""

    def prompt_text(self, separator: str = " ") -> str:
        """The tag plus the card's activation text (A1111's click)."""
        activation = str(self.metadata.get("activation text") or "").strip()
        return separator.join(part for part in (self.tag, activation) if part)

    def matches(self, search: str) -> bool:
        words = search.lower().split()
        haystack = " ".join((self.name, str(self.path), self.description,
                             str(self.metadata.get("activation text") or ""))).lower()
        return all(word in haystack for word in words)


def _weight(metadata: dict[str, Any], default: float) -> str:
    try:
        weight = float(metadata.get("preferred weight") or 0) or default
    except (TypeError, ValueError):
        weight = default
    return f"{weight:g}"


class NetworkCards:
    """The cards of each page, read from the app's registries on every call (files added since
    show up on refresh)."""

    def __init__(self, *, loras: Any, embeddings: Any, checkpoints: Any,
                 hypernetworks: Any, options: Any, current_model=lambda: None) -> None:
        self.loras = loras
        self.embeddings = embeddings
        self.checkpoints = checkpoints
        self.hypernetworks = hypernetworks
        self.options = options
        self.current_model = current_model

    def _multiplier(self) -> float:
        return float(self.options.get("extra_networks_default_multiplier") or 1.0)

    def _make(self, page: str, name: str, path: Path, tag: str, title: str = "") -> Card:
        return Card(page, name, path, tag, read_user_metadata(path), find_preview(path), title)

    def cards(self, page: str) -> list[Card]:
        if page == "Lora":
            if self.loras is None:
                return []
            use_alias = self.options.get("lora_preferred_name") != "Filename"
            made = []
            for item in self.loras.files():
                metadata = read_user_metadata(item.path)
                name = item.alias if use_alias else item.name
                made.append(self._make(page, item.name, item.path,
                                       f"<lora:{name}:{_weight(metadata, self._multiplier())}>"))
            return made
        if page == "Textual Inversion":
            if self.embeddings is None:
                return []
            from modules.processing.textual_inversion import model_encoders
            model = self.current_model()
            sets = self.embeddings.sets_for(model_encoders(model) if model is not None else [])
            return [self._make(page, name, embedding.path, name)
                    for name, embedding in sets.loaded.items() if embedding.path is not None]
        if page == "Hypernetworks":
            # the files jobs can load, so every card's tag works
            files = self.hypernetworks.files() if self.hypernetworks is not None else []
            return [self._make(page, p.stem, p, f"<hypernet:{p.stem}:{self._multiplier():g}>")
                    for p in files]
        if page == "Checkpoints":
            return [self._make(page, info.model_name, Path(info.filename), "", info.title)
                    for info in self.checkpoints.list()]
        raise ValueError(f"unknown page {page!r}; pages: {', '.join(PAGES)}")

    def find(self, page: str, path: str) -> Card | None:
        return next((card for card in self.cards(page) if str(card.path) == path), None)

    def listing(self, page: str, search: str = "", sort: str = "Name",
                descending: bool = False) -> list[Card]:
        found = [card for card in self.cards(page) if card.matches(search or "")]
        keys = {"Name": lambda card: card.name.lower(),
                "Date modified": lambda card: card.path.stat().st_mtime
                if card.path.exists() else 0.0,
                "Path": lambda card: str(card.path).lower()}
        return sorted(found, key=keys.get(sort, keys["Name"]), reverse=descending)


def toggle_in_prompt(prompt: str, text: str, separator: str = " ") -> str:
    """Add `text` to the prompt, or take it out when it is already there (A1111's card click)."""
    if not text:
        return prompt
    if text in prompt:
        return " ".join(prompt.replace(text, "").split()) if separator == " " \
            else prompt.replace(separator + text, "").replace(text, "")
    return f"{prompt.rstrip()}{separator}{text}" if prompt.strip() else text

